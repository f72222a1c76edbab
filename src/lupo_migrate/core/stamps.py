"""Stamps read for people: ``YYYYMMDDHHMMSS`` integers as dates, raising only Python's own
errors (functional core: no I/O).

The exceptions of :mod:`lupo_migrate.core.errors` show stamps with :func:`shown`;
:mod:`lupo_migrate.core.clock` builds its checked conversions, which raise lupo_migrate's
``InvalidArgumentError``, on :func:`stamp_datetime`. Apart so that neither imports the other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

__all__ = ["MAX_STAMP", "MIN_STAMP", "shown", "stamp_datetime"]

MIN_STAMP: Final = 10101000000  # 0001-01-01 00:00:00
MAX_STAMP: Final = 99991231235959  # 9999-12-31 23:59:59


def stamp_datetime(stamp: int) -> datetime:
    """The aware UTC datetime *stamp* stands for.

    Raises:
        TypeError: *stamp* is not an int (a bool is not one).
        ValueError: *stamp* is out of range or not a real date and time.
    """
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise TypeError(f"a stamp is an int YYYYMMDDHHMMSS, got {stamp!r}")
    if not MIN_STAMP <= stamp <= MAX_STAMP:
        raise ValueError(f"{stamp} is out of range")
    date, time = divmod(stamp, 1_000_000)
    year, month_day = divmod(date, 10_000)
    month, day = divmod(month_day, 100)
    hour, minute_second = divmod(time, 10_000)
    minute, second = divmod(minute_second, 100)
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def shown(stamp: int) -> str:
    """A stamp as users read it: ``20261206012654`` -> ``2026-12-06 01:26:54 UTC`` (the stamp
    itself when it is not a valid one)."""
    try:
        return stamp_datetime(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, TypeError):
        return str(stamp)
