"""Timestamps as the orchestration tables store them: BIGINT ``YYYYMMDDHHMMSS`` in UTC.

Pure helpers of the functional core: they convert values and never read the clock. Clocks
themselves (``SystemClock``, ``ManualClock``) are shell objects and live in
:mod:`lupo_migrate.backends.memory`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lupo_migrate.errors import InvalidArgumentError

__all__ = ["from_stamp", "shown", "to_stamp"]

_MIN_STAMP = 10101000000  # 0001-01-01 00:00:00
_MAX_STAMP = 99991231235959  # 9999-12-31 23:59:59


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
    if not _MIN_STAMP <= stamp <= _MAX_STAMP:
        raise InvalidArgumentError(
            f"{stamp} is not a YYYYMMDDHHMMSS timestamp (expected {_MIN_STAMP}..{_MAX_STAMP})."
        )
    date, time = divmod(stamp, 1_000_000)
    year, month_day = divmod(date, 10_000)
    month, day = divmod(month_day, 100)
    hour, minute_second = divmod(time, 10_000)
    minute, second = divmod(minute_second, 100)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArgumentError(f"{stamp} is not a YYYYMMDDHHMMSS timestamp: {exc}.") from exc


def shown(stamp: int) -> str:
    """A stamp as users read it: ``20261206012654`` -> ``2026-12-06 01:26:54 UTC`` (the stamp
    itself when it is not a valid one)."""
    try:
        return from_stamp(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (InvalidArgumentError, ValueError, TypeError):
        return str(stamp)
