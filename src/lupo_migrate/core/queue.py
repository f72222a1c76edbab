"""The run queue's decisions (functional core: no I/O, clock, randomness or logging).

A queue entry asks for one run on one target: the steps pending when it is drained, up to a
step (``upto``) or all of them, with a priority. Entries persist beside the runs (in
``migration_batches`` for the SQLAlchemy storage, see :class:`~lupo_migrate.core.ports.RunQueue`);
this module only decides:

- **order**: the higher ``priority`` first; within one priority the older entry first
  (``enqueued_at``, then ``id``, which grows with every entry) (:func:`order_key`);
- **which entry a worker claims next** (:func:`next_entry`): none of a target while another
  entry of that target is running (one active run per target; the run lock guarantees it
  beneath as well);
- **how an entry changes**: :func:`claim` (queued -> running), :func:`finish` (running ->
  done, with the run and its outcome), :func:`release` (running -> queued: the run could not
  start, or its worker died), :func:`cancel` (queued -> cancelled; a running entry cannot be
  cancelled).

Every change returns a new entry with ``version`` one higher. The shell writes it with a
compare-and-set on the version it read, so of two workers that decided to claim the same
entry, exactly one succeeds; the other reads again.

Statuses: ``queued`` -> ``running`` -> ``done``; ``queued`` -> ``cancelled``; ``running`` ->
``queued`` (released). ``done`` and ``cancelled`` are final.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import DecisionError, InternalError, InvalidArgumentError

__all__ = [
    "ACTIVE",
    "Job",
    "Lease",
    "QueueEntry",
    "QueueStatus",
    "cancel",
    "claim",
    "finish",
    "next_entry",
    "order_key",
    "ordered",
    "orphans",
    "release",
]

#: Priorities an entry may have (a signed 32-bit column would hold them).
MIN_PRIORITY: Final = -1_000_000
MAX_PRIORITY: Final = 1_000_000


class QueueStatus(enum.Enum):
    """Where a queue entry is in its life."""

    #: Waiting to be claimed.
    QUEUED = "queued"
    #: Claimed by a worker, whose run works on the target.
    RUNNING = "running"
    #: Its run ended (``outcome`` says how), or there was nothing to do. Final.
    DONE = "done"
    #: Cancelled by an operator before it was claimed. Final.
    CANCELLED = "cancelled"


#: Statuses of entries that are not finished.
ACTIVE: Final = frozenset({QueueStatus.QUEUED, QueueStatus.RUNNING})


def _priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"a queue priority is a whole number, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidArgumentError(
            f"a queue priority lies between {MIN_PRIORITY} and {MAX_PRIORITY}, got {value};"
            " higher runs first, 0 is the default"
        )
    return value


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class QueueEntry:
    """One queued run request.

    Attributes:
        id: the entry's number (0 until stored); grows with every entry, so it breaks ties
            of age.
        target: the target to run on.
        priority: higher runs first (default 0).
        enqueued_at: when it was queued, ``YYYYMMDDHHMMSS`` UTC.
        enqueued_by: who queued it.
        upto: the step the run goes up to (None: every pending step when it is drained).
        steps: the steps that were pending when it was queued (for display; the plan is
            computed again when it is drained).
        status: see :class:`QueueStatus`.
        version: bumped by every change (the compare-and-set key).
        worker: who claimed it (running, done).
        claimed_at: when it was last claimed.
        finished_at: when it became done or cancelled.
        run_id: the run it produced (None when there was nothing to do or it failed to start).
        outcome: ``completed``, ``rolled_back``, ``failed``, ``nothing_to_do`` or ``error``
            (done); None otherwise.
        detail: why it was released, cancelled or ended in error.
        attempts: how many times it was claimed.
    """

    id: int = 0
    target: str
    priority: int = attrs.field(default=0, converter=_priority)
    enqueued_at: int
    enqueued_by: str
    upto: str | None = None
    steps: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    status: QueueStatus = QueueStatus.QUEUED
    version: int = 0
    worker: str | None = None
    claimed_at: int | None = None
    finished_at: int | None = None
    run_id: str | None = None
    outcome: str | None = None
    detail: str | None = None
    attempts: int = 0

    @classmethod
    def new(
        cls,
        target: str,
        *,
        enqueued_at: int,
        enqueued_by: str,
        priority: int = 0,
        upto: str | None = None,
        steps: Iterable[str] = (),
    ) -> QueueEntry:
        """A queued entry not stored yet (``id`` 0, ``version`` 0)."""
        if not isinstance(target, str) or not 0 < len(target) <= 191:
            raise InvalidArgumentError(f"a target is a str of 1 to 191 characters, got {target!r}")
        if not isinstance(enqueued_by, str) or not enqueued_by:
            raise InvalidArgumentError(f"enqueued_by names who queues, got {enqueued_by!r}")
        return cls(
            target=target,
            priority=priority,
            enqueued_at=enqueued_at,
            enqueued_by=enqueued_by,
            upto=upto,
            steps=steps,
        )


@attrs.frozen(kw_only=True)
class Lease:
    """A named lease in the ephemeral ``locks`` table: one owner until it expires.

    Attributes:
        name: what it guards (``queue:<target>``: draining that target's queue).
        owner: who holds it.
        since: when the owner took it.
        expires: when it lapses unless renewed, ``YYYYMMDDHHMMSS`` UTC.
    """

    name: str
    owner: str
    since: int
    expires: int


@attrs.frozen(kw_only=True)
class Job:
    """A claimed queue entry being worked on, in the ephemeral ``job_queue`` table; it
    expires unless its worker renews it, which tells a dead worker's entry apart.

    Attributes:
        entry_id: the queue entry.
        target: its target.
        worker: who works on it.
        claimed_at: when it was claimed.
        expires: when it lapses unless renewed.
    """

    entry_id: int
    target: str
    worker: str
    claimed_at: int
    expires: int


def order_key(entry: QueueEntry) -> tuple[int, int, int]:
    """The sort key of the queue: higher priority first, then older, then lower id."""
    return (-entry.priority, entry.enqueued_at, entry.id)


def ordered(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    """*entries* in the order they would be drained (finished ones keep their place)."""
    return sorted(entries, key=order_key)


def next_entry(entries: Iterable[QueueEntry], target: str) -> QueueEntry | None:
    """The entry of *target* a worker claims next, or None.

    None when no entry of *target* is queued, or when one of its entries is running (one
    active run per target: the next waits for it to end or be released).
    """
    mine = [e for e in entries if e.target == target]
    if any(e.status is QueueStatus.RUNNING for e in mine):
        return None
    queued = [e for e in mine if e.status is QueueStatus.QUEUED]
    return min(queued, key=order_key) if queued else None


def orphans(
    entries: Iterable[QueueEntry], target: str, live_workers: Iterable[str]
) -> list[QueueEntry]:
    """Running entries of *target* whose worker is not among *live_workers* (its lease
    expired: the worker died or lost touch), oldest claim first."""
    live = set(live_workers)
    lost = [
        e
        for e in entries
        if e.target == target and e.status is QueueStatus.RUNNING and e.worker not in live
    ]
    return sorted(lost, key=lambda e: (e.claimed_at or 0, e.id))


def _changed(entry: QueueEntry, **changes: Any) -> QueueEntry:
    return attrs.evolve(entry, version=entry.version + 1, **changes)


def claim(entry: QueueEntry, worker: str, at: int) -> QueueEntry:
    """*entry* claimed by *worker* at *at*.

    Raises:
        DecisionError: the entry is not queued (another worker claimed it, or it ended).
    """
    if entry.status is not QueueStatus.QUEUED:
        raise DecisionError(
            f"queue entry {entry.id} is {entry.status.value}, not queued, so it cannot be"
            " claimed; read the queue again and claim the next entry"
        )
    return _changed(
        entry,
        status=QueueStatus.RUNNING,
        worker=worker,
        claimed_at=at,
        attempts=entry.attempts + 1,
        detail=None,
    )


def finish(
    entry: QueueEntry,
    *,
    worker: str,
    at: int,
    outcome: str,
    run_id: str | None = None,
    detail: str | None = None,
) -> QueueEntry:
    """*entry*, run by *worker*, done with *outcome* (and the run it produced).

    Raises:
        InternalError: *worker* does not hold the entry (the shell checks before it runs).
    """
    if entry.status is not QueueStatus.RUNNING or entry.worker != worker:
        raise InternalError(
            f"queue entry {entry.id} is {entry.status.value} (worker {entry.worker}) and"
            f" cannot be finished by {worker}; this is a lupo_migrate bug, please report it"
        )
    return _changed(
        entry, status=QueueStatus.DONE, finished_at=at, outcome=outcome, run_id=run_id,
        detail=detail,
    )  # fmt: skip


def release(entry: QueueEntry, *, detail: str) -> QueueEntry:
    """*entry* back in the queue (its run could not start, or its worker died), keeping its
    priority and age, so it is the next claimed again."""
    if entry.status is not QueueStatus.RUNNING:
        raise InternalError(
            f"queue entry {entry.id} is {entry.status.value} and cannot be released; this is a"
            " lupo_migrate bug, please report it"
        )
    return _changed(entry, status=QueueStatus.QUEUED, worker=None, detail=detail)


def cancel(entry: QueueEntry, *, by: str, at: int) -> QueueEntry:
    """*entry* cancelled by *by*.

    Raises:
        DecisionError: the entry is running (its run cannot be stopped from the queue) or
            already finished.
    """
    if entry.status is QueueStatus.RUNNING:
        raise DecisionError(
            f"queue entry {entry.id} is running (claimed by {entry.worker} at"
            f" {entry.claimed_at}) and cannot be cancelled: its run is under way. Let it end;"
            " `lupo-migrate rollback RUN` then undoes it if it completed"
        )
    if entry.status is not QueueStatus.QUEUED:
        raise DecisionError(
            f"queue entry {entry.id} is {entry.status.value} already; only a queued entry can"
            " be cancelled"
        )
    return _changed(
        entry, status=QueueStatus.CANCELLED, finished_at=at, detail=f"cancelled by {by}"
    )
