"""The clocks: :class:`SystemClock` (real UTC time) and :class:`ManualClock` (moved by hand).

Every backend takes its clock from here (``backends.memory`` re-exports both).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import final

import attrs

from lupo_migrate.core.errors import InvalidArgumentError


def _aware(dt: object, what: str) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidArgumentError(
            f"{what} needs a timezone-aware datetime, got {dt!r}."
            " Use e.g. datetime(2024, 1, 1, tzinfo=timezone.utc)."
        )
    return dt.astimezone(UTC)


def _start_time(dt: object) -> datetime:
    return _aware(dt, "ManualClock")


# --------------------------------------------------------------------------- clocks


@final
@attrs.define
class SystemClock:
    """The real time, ``datetime.now(timezone.utc)``."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        return datetime.now(UTC)


@final
@attrs.define
class ManualClock:
    """A clock that moves only when told: :meth:`advance` and :meth:`set`.

    Args:
        start: the time it shows at first (aware; converted to UTC).
    """

    _now: datetime = attrs.field(
        default=datetime(2024, 1, 1, tzinfo=UTC),
        converter=_start_time,
        alias="start",
    )

    def now(self) -> datetime:
        """The time it shows, aware, in UTC."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by *delta* (not negative; use :meth:`set` to go back) and return now."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise InvalidArgumentError(
                f"ManualClock.advance() needs a timedelta >= 0, got {delta!r}."
            )
        self._now += delta
        return self._now

    def set(self, dt: datetime) -> None:
        """Show *dt* from now on (aware; may go back in time)."""
        self._now = _aware(dt, "ManualClock.set()")
