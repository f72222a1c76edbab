"""Timestamps as the orchestration tables store them: BIGINT ``YYYYMMDDHHMMSS`` in UTC.

Pure helpers of the functional core: they convert values and never read the clock. Clocks
themselves (``SystemClock``, ``ManualClock``) read or keep the time and live in
:mod:`lupo_migrate.backends.clocks`; :func:`shown` is :mod:`lupo_migrate.core.stamps`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.core.stamps import MAX_STAMP, MIN_STAMP, shown, stamp_datetime

__all__ = ["from_stamp", "shown", "to_stamp"]


def to_stamp(dt: datetime) -> int:
    """Return *dt* as a ``YYYYMMDDHHMMSS`` integer in UTC; microseconds are dropped.

    Args:
        dt: a timezone-aware datetime (any zone; it is converted to UTC).

    Returns:
        The stamp, e.g. ``20240131235959``.

    Raises:
        InvalidArgumentError: *dt* is not a datetime, or is naive (its zone is unknown, so
            the UTC stamp would be a guess).
    """
    if not isinstance(dt, datetime):
        raise InvalidArgumentError(f"to_stamp() needs a datetime, got {dt!r}.")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidArgumentError(
            f"to_stamp() got the naive datetime {dt.isoformat()}; its time zone is unknown."
            " Pass an aware datetime, e.g. datetime.now(timezone.utc)."
        )
    utc = dt.astimezone(UTC)
    return (
        utc.year * 10_000_000_000
        + utc.month * 100_000_000
        + utc.day * 1_000_000
        + utc.hour * 10_000
        + utc.minute * 100
        + utc.second
    )


def from_stamp(stamp: int) -> datetime:
    """Return the aware UTC datetime a ``YYYYMMDDHHMMSS`` stamp stands for.

    Args:
        stamp: the stamp, as stored.

    Returns:
        The datetime, with ``tzinfo=timezone.utc`` and no microseconds.

    Raises:
        InvalidArgumentError: *stamp* is not an int, or is not a real date and time (month 13,
            second 61, February 30...).
    """
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise InvalidArgumentError(f"from_stamp() needs an int YYYYMMDDHHMMSS, got {stamp!r}.")
    if not MIN_STAMP <= stamp <= MAX_STAMP:
        raise InvalidArgumentError(
            f"{stamp} is not a YYYYMMDDHHMMSS timestamp (expected {MIN_STAMP}..{MAX_STAMP})."
        )
    try:
        return stamp_datetime(stamp)
    except ValueError as exc:
        raise InvalidArgumentError(f"{stamp} is not a YYYYMMDDHHMMSS timestamp: {exc}.") from exc
