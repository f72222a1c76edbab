"""Tests for lupo_migrate.core.clock: BIGINT YYYYMMDDHHMMSS stamps in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.core.clock import from_stamp, to_stamp
from lupo_migrate.errors import InvalidArgumentError


class TestToStamp:
    def test_utc_datetime_becomes_digits(self) -> None:
        """An aware UTC datetime reads as its digits."""
        assert to_stamp(datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC)) == 20240131235958

    def test_other_zones_are_converted_to_utc(self) -> None:
        """A datetime in another zone is stamped in UTC."""
        cet = timezone(timedelta(hours=1))
        assert to_stamp(datetime(2024, 1, 1, 0, 30, tzinfo=cet)) == 20231231233000

    def test_microseconds_are_dropped(self) -> None:
        """Sub-second precision is truncated, not rounded."""
        dt = datetime(2024, 5, 6, 7, 8, 9, 999_999, tzinfo=UTC)
        assert to_stamp(dt) == 20240506070809

    def test_naive_datetime_is_rejected(self) -> None:
        """A naive datetime raises, since its zone is unknown."""
        with pytest.raises(InvalidArgumentError, match="naive datetime 2024-01-01T00:00:00"):
            to_stamp(datetime(2024, 1, 1))

    def test_non_datetime_is_rejected(self) -> None:
        """Something other than a datetime raises InvalidArgumentError, a TypeError."""
        with pytest.raises(TypeError, match="needs a datetime"):
            to_stamp("2024-01-01")  # type: ignore[arg-type]


class TestFromStamp:
    def test_stamp_becomes_aware_utc(self) -> None:
        """A stamp reads back as an aware UTC datetime."""
        dt = from_stamp(20240229120000)
        assert dt == datetime(2024, 2, 29, 12, tzinfo=UTC)
        assert dt.tzinfo is UTC

    @pytest.mark.parametrize(
        "stamp", [20241301000000, 20230229000000, 20240101240000, 20240101006000, 123, -1]
    )
    def test_invalid_stamp_is_rejected_with_its_value(self, stamp: int) -> None:
        """A number that is no real date and time raises, naming the value."""
        with pytest.raises(InvalidArgumentError, match=str(stamp)):
            from_stamp(stamp)

    @pytest.mark.parametrize("stamp", ["20240101000000", 2.0e13, True, None])
    def test_non_int_is_rejected(self, stamp: object) -> None:
        """Only ints are stamps."""
        with pytest.raises(InvalidArgumentError, match="needs an int"):
            from_stamp(stamp)  # type: ignore[arg-type]

    def test_extremes(self) -> None:
        """The first and last representable seconds round-trip."""
        for stamp in (10101000000, 99991231235959):
            assert to_stamp(from_stamp(stamp)) == stamp

    @given(
        st.datetimes(
            min_value=datetime(1, 1, 1),
            max_value=datetime(9999, 12, 31),
            timezones=st.just(UTC),
        )
    )
    def test_round_trip(self, dt: datetime) -> None:
        """from_stamp(to_stamp(dt)) is dt without its microseconds."""
        assert from_stamp(to_stamp(dt)) == dt.replace(microsecond=0)

    @given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
    def test_order_is_kept(self, a: datetime, b: datetime) -> None:
        """Stamps sort like the datetimes they stand for (to the second)."""
        a, b = a.replace(microsecond=0), b.replace(microsecond=0)
        assert (to_stamp(a) < to_stamp(b)) == (a < b)
