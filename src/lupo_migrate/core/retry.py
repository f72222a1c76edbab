"""How long a run pauses before it tries again a step that gave up waiting for a lock.

A DDL statement waits a short while for its table's lock (``lock_wait_timeout`` on
MySQL/MariaDB, ``lock_timeout`` on PostgreSQL) so that the application's queries, which queue
behind a waiting DDL, are never held longer than that. When the wait runs out, the statement
ran nothing; the step is rolled back and tried again after a pause that doubles each time, with
some randomness so that several runs do not retry in step (GitLab's ``with_lock_retries`` and
strong_migrations do the same). Pure: the randomness comes in as an argument.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MOST_PAUSE", "lock_retry_pause"]

#: The longest pause between two tries, in seconds.
MOST_PAUSE: Final = 30.0


def lock_retry_pause(attempt: int, base: float, draw: float) -> float:
    """Seconds to pause after try number *attempt* (1 for the first) gave up: *base* doubled
    for each try before, at most :data:`MOST_PAUSE`, then stretched by up to a quarter by
    *draw* (a number in [0, 1)).

    >>> [lock_retry_pause(n, 1.0, 0.0) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 8.0]
    >>> lock_retry_pause(10, 1.0, 0.5)
    33.75
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt}")
    if base < 0 or not 0.0 <= draw < 1.0:
        raise ValueError(f"base must be at least 0 and draw in [0, 1), not {base}, {draw}")
    return min(base * 2.0 ** min(attempt - 1, 32), MOST_PAUSE) * (1.0 + draw / 4.0)
