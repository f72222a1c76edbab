"""The run queue's shell: enqueue, list, cancel and drain, as functions of a ``Wiring``.

The decisions (order, which entry is next, how an entry changes) are the functional core's,
:mod:`lupo_migrate.core.queue`; here they are carried out against the storage's
:class:`~lupo_migrate.core.ports.RunQueue` and the :class:`~lupo_migrate.core.ports.Ephemeral`
schema.

Draining a target's queue (:func:`drain`):

1. Take the lease ``queue:<target>`` in the ephemeral ``locks`` table: one drainer per
   target at a time (another one waits up to ``wait`` seconds, then gives up with
   ``LockHeldError``). A background thread renews it, and the job below, every third of
   its time to live while the drainer works, long runs included.
2. Release the orphans: entries left running by a worker whose job (ephemeral
   ``job_queue``) expired. Such a worker died, or lost touch for longer than its lease; its
   entry goes back to the queue with its priority and age, so it is claimed first again (a
   run it left half-done blocks the target until ``recover``: see 4).
3. Claim the next entry (``core.queue.next_entry``: priority, then age) with a compare-and-set
   on its version, so no entry is ever claimed twice; record the job (entry, worker,
   expiry) in ``job_queue``.
4. Run it: ``Orchestrator.apply(steps, upto=entry.upto)``; the run lock makes it the only
   active run of the target. The entry ends ``done`` with the run's id and outcome
   (``completed``, ``rolled_back``, ``failed``), ``nothing_to_do``, or ``error`` (the run
   was refused, e.g. an edited file). When the run cannot start now (another run holds the
   target, a dead run waits for ``recover``, a blocked target) the entry goes back to the
   queue and draining stops, saying why.
5. Go on with the next entry until the queue is empty, *limit* entries ran, or a run did
   not complete (unless *keep_going*); then give the lease up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from lupo_migrate.core import queue as _queue
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import (
    ConcurrentUpdateError,
    ConfigurationError,
    InvalidArgumentError,
    LockError,
    LockHeldError,
    LupoMigrateError,
    TargetBlockedError,
    UnknownTargetError,
    WritesFrozenError,
)
from lupo_migrate.core.ports import Ephemeral, RunQueue
from lupo_migrate.core.queue import Job, QueueEntry, QueueStatus
from lupo_migrate.run.shared import Apply, RunResult

if TYPE_CHECKING:
    from lupo_migrate.core.model import Step
    from lupo_migrate.run.wiring import Wiring

__all__ = ["DrainReport", "Drained", "cancel", "drain", "enqueue", "entries", "lease_name"]

logger = logging.getLogger("lupo_migrate")

#: How long a drainer's lease and job last unless renewed (renewed every third of it).
DEFAULT_LEASE: Final = timedelta(seconds=60)
#: Outcomes after which draining goes on without ``keep_going``.
_FINE: Final = frozenset({"completed", "nothing_to_do"})
#: Errors that say the target cannot run now: the entry keeps its place, draining stops.
_NOT_NOW: Final = (LockHeldError, TargetBlockedError, WritesFrozenError)
_CLAIM_ATTEMPTS: Final = 50
_POLL: Final = 0.05


@attrs.frozen
class Drained:
    """One entry a drain worked on: the entry as it was left, and its run's result."""

    entry: QueueEntry
    result: RunResult | None = None


@attrs.frozen
class DrainReport:
    """What :func:`drain` did.

    Attributes:
        drained: the entries claimed, in the order they ran.
        stopped: why draining stopped with entries left (None: the queue was empty, or
            *limit* entries ran).
    """

    drained: tuple[Drained, ...] = ()
    stopped: str | None = None


def lease_name(target: str) -> str:
    """The ephemeral lease a drainer of *target* holds."""
    return f"queue:{target}"


def _queue_of(orch: Wiring) -> RunQueue:
    storage: Any = orch.storage
    if not isinstance(storage, RunQueue):
        raise ConfigurationError(
            f"the storage {storage!r} keeps no run queue (it lacks enqueue, queue_entry,"
            " queue_entries and save_entry: the RunQueue protocol of lupo_migrate.core.ports);"
            " use SqlAlchemyStorage or InMemoryStorage"
        )
    return storage


def _now(orch: Wiring) -> int:
    return to_stamp(orch.clock.now())


def enqueue(
    orch: Wiring,
    steps: Sequence[Step],
    *,
    priority: int = 0,
    upto: str | None = None,
    by: str = "operator",
) -> QueueEntry:
    """:meth:`Orchestrator.enqueue <lupo_migrate.Orchestrator.enqueue>` (documented there)."""
    queue = _queue_of(orch)
    if upto is not None and upto not in {s.id for s in steps}:
        raise UnknownTargetError(upto, [s.id for s in steps])
    plan = orch.pending(steps, upto=upto)  # refuses a cycle or an unknown dependency now
    entry = QueueEntry.new(
        orch.target_name,
        enqueued_at=_now(orch),
        enqueued_by=by,
        priority=priority,
        upto=upto,
        steps=[s.id for s in plan.steps],
    )
    return queue.enqueue(entry)


def entries(orch: Wiring, *, finished: bool = False) -> list[QueueEntry]:
    """:meth:`Orchestrator.queue <lupo_migrate.Orchestrator.queue>` (documented there)."""
    found = _queue_of(orch).queue_entries(orch.target_name, active=not finished)
    running = [e for e in found if e.status is QueueStatus.RUNNING]
    queued = _queue.ordered(e for e in found if e.status is QueueStatus.QUEUED)
    ended = [e for e in found if e.status not in _queue.ACTIVE]
    return [*running, *queued, *ended]


def cancel(orch: Wiring, entry_id: int, *, by: str = "operator") -> QueueEntry:
    """:meth:`Orchestrator.cancel_queued <lupo_migrate.Orchestrator.cancel_queued>`."""
    queue = _queue_of(orch)
    for _ in range(_CLAIM_ATTEMPTS):
        entry = queue.queue_entry(entry_id)
        if entry is None or entry.target != orch.target_name:
            raise InvalidArgumentError(
                f"there is no queue entry {entry_id} of target {orch.target_name};"
                " `lupo-migrate queue` lists them"
            )
        cancelled = _queue.cancel(entry, by=by, at=_now(orch))
        try:
            queue.save_entry(cancelled, expected_version=entry.version)
        except ConcurrentUpdateError:
            continue  # claimed (or cancelled) meanwhile: look again
        return cancelled
    raise LockError(  # pragma: no cover - only under a storm of concurrent changes
        f"queue entry {entry_id} kept changing while it was being cancelled; try again"
    )


@attrs.define
class _Renewal:
    """Renews the drain lease and the worker's jobs from a thread, every third of *ttl*."""

    ephemeral: Ephemeral
    name: str
    worker: str
    ttl: timedelta
    lost: LupoMigrateError | None = None
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> _Renewal:
        self._thread = threading.Thread(target=self._loop, name="lupo-drain-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            try:
                self.ephemeral.renew(self.name, self.worker, ttl=self.ttl)
                self.ephemeral.renew_jobs(self.worker, ttl=self.ttl)
            except LupoMigrateError as exc:
                self.lost = exc
                return


def _take(ephemeral: Ephemeral, name: str, worker: str, ttl: timedelta, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            ephemeral.take(name, worker, ttl=ttl)
            return
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(_POLL)


def drain(
    orch: Wiring,
    steps: Sequence[Step],
    *,
    apply: Apply,
    ephemeral: Ephemeral,
    worker: str | None = None,
    limit: int | None = None,
    wait: float = 0.0,
    lease: timedelta = DEFAULT_LEASE,
    keep_going: bool = False,
) -> DrainReport:
    """:meth:`Orchestrator.drain <lupo_migrate.Orchestrator.drain>` (documented there); each
    entry runs through *apply* (the orchestrator's)."""
    queue = _queue_of(orch)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgumentError(f"limit is a number of entries >= 0, got {limit!r}")
    if not isinstance(lease, timedelta) or lease < timedelta(seconds=1):
        raise InvalidArgumentError(f"lease must be a timedelta of 1 s or more, got {lease!r}")
    who = worker or orch.owner
    name = lease_name(orch.target_name)
    _take(ephemeral, name, who, lease, wait)
    drained: list[Drained] = []
    stopped: str | None = None
    try:
        with _Renewal(ephemeral, name, who, lease) as renewal:
            while limit is None or len(drained) < limit:
                if renewal.lost is not None:
                    stopped = f"the drain lease was lost: {renewal.lost}"
                    break
                entry, busy = _claim_next(orch, queue, ephemeral, who, lease)
                if entry is None:
                    stopped = busy
                    break
                done, stop = _run(orch, apply, queue, ephemeral, steps, entry, who, keep_going)
                drained.append(done)
                if stop is not None:
                    stopped = stop
                    break
    finally:
        ephemeral.release(name, who)
    return DrainReport(drained=tuple(drained), stopped=stopped)


def _claim_next(
    orch: Wiring, queue: RunQueue, ephemeral: Ephemeral, worker: str, lease: timedelta
) -> tuple[QueueEntry | None, str | None]:
    """(the entry claimed, None), or (None, why not when entries are left)."""
    target = orch.target_name
    for _ in range(_CLAIM_ATTEMPTS):
        active = queue.queue_entries(target, active=True)
        live = [job.worker for job in ephemeral.jobs(target)]
        lost = _queue.orphans(active, target, live)
        for entry in lost:
            released = _queue.release(
                entry,
                detail=f"its worker {entry.worker} stopped renewing its job (died, or lost"
                " touch); queued again",
            )
            logger.warning("queue entry %s: %s", entry.id, released.detail)
            with contextlib.suppress(ConcurrentUpdateError):  # it moved: read again
                queue.save_entry(released, expected_version=entry.version)
        if lost:
            continue
        following = _queue.next_entry(active, target)
        if following is None:
            running = [e for e in active if e.status is QueueStatus.RUNNING]
            if running:
                return None, (
                    f"queue entry {running[0].id} is running on {running[0].worker}; the next"
                    " waits for it"
                )
            return None, None
        now = _now(orch)
        claimed = _queue.claim(following, worker, now)
        try:
            queue.save_entry(claimed, expected_version=following.version)
        except ConcurrentUpdateError:
            continue  # another worker won it: read again
        expires = to_stamp(orch.clock.now() + lease)
        ephemeral.start_job(
            Job(entry_id=claimed.id, target=target, worker=worker, claimed_at=now, expires=expires)
        )
        return claimed, None
    return None, "the queue kept changing while an entry was being claimed; drain again"


def _run(
    orch: Wiring,
    apply: Apply,
    queue: RunQueue,
    ephemeral: Ephemeral,
    steps: Sequence[Step],
    entry: QueueEntry,
    worker: str,
    keep_going: bool,
) -> tuple[Drained, str | None]:
    """Run a claimed entry; (what became of it, why draining stops or None)."""
    try:
        try:
            result = apply(steps, upto=entry.upto)
        except _NOT_NOW as exc:
            left = _save(queue, entry, _queue.release(entry, detail=f"could not start: {exc}"))
            return Drained(left), f"queue entry {entry.id} could not start: {exc}"
        except LupoMigrateError as exc:
            ended = _queue.finish(
                entry, worker=worker, at=_now(orch), outcome="error", detail=str(exc)
            )
            left = _save(queue, entry, ended)
            return Drained(left), None if keep_going else f"queue entry {entry.id}: {exc}"
        except BaseException:
            _save(queue, entry, _queue.release(entry, detail="its worker stopped with an error"))
            raise
        run = result.run
        outcome = "nothing_to_do" if run is None else (run.outcome.value if run.outcome else "?")
        why = run.failure.message if run is not None and run.failure is not None else None
        ended = _queue.finish(
            entry,
            worker=worker,
            at=_now(orch),
            outcome=outcome,
            run_id=None if run is None else run.id,
            detail=why,
        )
        left = _save(queue, entry, ended)
        stop = None
        if outcome not in _FINE and not keep_going:
            stop = f"queue entry {entry.id}: run {ended.run_id} ended {outcome}"
        return Drained(left, result), stop
    finally:
        ephemeral.end_job(entry.id)


def _save(queue: RunQueue, claimed: QueueEntry, changed: QueueEntry) -> QueueEntry:
    """Write *changed* over *claimed*. If another drainer released the entry meanwhile
    (it took this worker for dead), what this worker did is recorded all the same when the
    entry is still queued; otherwise the stored entry is left alone (and returned)."""
    try:
        queue.save_entry(changed, expected_version=claimed.version)
        return changed
    except ConcurrentUpdateError:
        current = queue.queue_entry(claimed.id)
        if current is None or current.status is not QueueStatus.QUEUED:
            logger.warning(
                "queue entry %s changed while its run worked; it is left %s",
                claimed.id,
                "missing" if current is None else current.status.value,
            )
            return current if current is not None else changed
        again = attrs.evolve(changed, version=current.version + 1)
        queue.save_entry(again, expected_version=current.version)
        return again
