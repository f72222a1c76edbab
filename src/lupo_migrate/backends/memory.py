"""Complete in-memory implementations of the backend protocols, and two clocks.

These are reference implementations, not mocks: they give every guarantee the protocols in
:mod:`lupo_migrate.typing` document (and pass :mod:`lupo_migrate.testing`), are safe to share
between threads, and are what tests and dry runs use. Nothing survives the process.

- :class:`InMemoryStorage`: runs (compare-and-set on ``Run.version``), the applied-step ledger,
  findings, the statement journal, the rollback log
  (a :class:`~lupo_migrate.typing.DecisionLog`) and the run queue
  (a :class:`~lupo_migrate.typing.RunQueue`).
- :class:`InMemoryLock`: a non-reentrant run lock. Handles built on one
  :class:`InMemoryLockTable` share their state, as two processes share a database lock.
- :class:`InMemoryFreeze`: the write gate, expiring by the injected clock.
- :class:`InMemoryEphemeral`: the ephemeral schema (expiring values, leases, jobs, purge).
- :class:`SystemClock` (real UTC time) and :class:`ManualClock` (moved by hand, for tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Final, final

import attrs

from lupo_migrate._clock import to_stamp
from lupo_migrate._decisions import DecisionRecord
from lupo_migrate._model import (
    AppliedStep,
    Finding,
    FreezeInfo,
    JournalEntry,
    LockInfo,
    Run,
    RunId,
    StepId,
)
from lupo_migrate._queue import ACTIVE, Job, Lease, QueueEntry
from lupo_migrate.errors import (
    ConcurrentUpdateError,
    InvalidArgumentError,
    LockError,
    LockHeldError,
    StorageError,
)
from lupo_migrate.typing import Clock

__all__ = [
    "EPHEMERAL_TABLES",
    "FreezeOverride",
    "InMemoryEphemeral",
    "InMemoryFreeze",
    "InMemoryLock",
    "InMemoryLockTable",
    "InMemoryStorage",
    "ManualClock",
    "SystemClock",
]

#: How long a waiting ``acquire`` sleeps between two looks at the lock, at most (seconds).
_POLL_INTERVAL = 0.01


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


# --------------------------------------------------------------------------- storage


@final
@attrs.define
class InMemoryStorage:
    """Runs, ledger, findings and journal in dictionaries, behind one ``threading.Lock``.

    The values stored are the frozen values given; reads return them (or new containers of
    them), so nothing a caller does to a returned list changes what is stored.
    """

    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _runs: dict[RunId, Run] = attrs.field(factory=dict, init=False)
    _applied: dict[str, dict[StepId, AppliedStep]] = attrs.field(factory=dict, init=False)
    _findings: dict[RunId, list[Finding]] = attrs.field(factory=dict, init=False)
    _journal: dict[int, JournalEntry] = attrs.field(factory=dict, init=False)
    _next_entry: int = attrs.field(default=1, init=False)
    _decisions: list[DecisionRecord] = attrs.field(factory=list, init=False)
    _fingerprints: dict[str, str] = attrs.field(factory=dict, init=False)
    _queue: dict[int, QueueEntry] = attrs.field(factory=dict, init=False)
    #: Where ``run_times`` stamps come from (default: the real time).
    clock: Clock = attrs.field(factory=lambda: SystemClock(), kw_only=True)
    _times: dict[RunId, tuple[int, int]] = attrs.field(factory=dict, init=False)

    def run_times(self, target: str) -> dict[RunId, tuple[int, int | None]]:
        """When each run of *target* was created and last saved (``YYYYMMDDHHMMSS``)."""
        with self._mutex:
            return {
                run_id: (created, updated)
                for run_id, (created, updated) in self._times.items()
                if self._runs[run_id].target == target
            }

    def create_run(self, run: Run) -> None:
        """Store a new run; ``StorageError`` if its id exists."""
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"create_run() needs a Run, got {run!r}.")
        with self._mutex:
            if run.id in self._runs:
                raise StorageError(
                    f"migration_batches: run {run.id} already exists. Use a new run id, or"
                    " save_run() to update it."
                )
            self._runs[run.id] = run
            now = to_stamp(self.clock.now())
            self._times[run.id] = (now, now)

    def get_run(self, run_id: RunId) -> Run | None:
        """The run with this id, or None."""
        with self._mutex:
            return self._runs.get(run_id)

    def save_run(self, run: Run, *, expected_version: int) -> None:
        """Replace the stored run if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the run is missing).
        """
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"save_run() needs a Run, got {run!r}.")
        with self._mutex:
            stored = self._runs.get(run.id)
            found = None if stored is None else stored.version
            if found != expected_version:
                raise ConcurrentUpdateError("migration_batches", run.id, expected_version, found)
            self._runs[run.id] = run  # same key: keeps its place in creation order
            created = self._times.get(run.id, (0, 0))[0]
            self._times[run.id] = (created, to_stamp(self.clock.now()))

    def list_runs(self, target: str | None = None) -> Sequence[Run]:
        """Runs (of *target*, or all), oldest first."""
        with self._mutex:
            return [r for r in self._runs.values() if target is None or r.target == target]

    def latest_run(self, target: str) -> Run | None:
        """The most recently created run of *target*, or None."""
        runs = self.list_runs(target)
        return runs[-1] if runs else None

    def record_applied(self, entry: AppliedStep) -> None:
        """Add (or replace, in place) the ledger row of ``entry.step_id`` on ``entry.target``."""
        if not isinstance(entry, AppliedStep):
            raise InvalidArgumentError(f"record_applied() needs an AppliedStep, got {entry!r}.")
        with self._mutex:
            self._applied.setdefault(entry.target, {})[entry.step_id] = entry

    def remove_applied(self, target: str, step_id: StepId) -> None:
        """Drop a ledger row (the step was rolled back); no error if absent."""
        with self._mutex:
            self._applied.get(target, {}).pop(step_id, None)

    def applied(self, target: str) -> Mapping[StepId, AppliedStep]:
        """The ledger of *target*, by step id, in the order rows were recorded."""
        with self._mutex:
            return dict(self._applied.get(target, {}))

    def record_findings(self, run_id: RunId, findings: Sequence[Finding]) -> None:
        """Append findings to a run's validation log."""
        findings = list(findings)
        for finding in findings:
            if not isinstance(finding, Finding):
                raise InvalidArgumentError(
                    f"record_findings() needs Finding values, got {finding!r}."
                )
        with self._mutex:
            self._findings.setdefault(run_id, []).extend(findings)

    def findings(self, run_id: RunId) -> Sequence[Finding]:
        """A run's findings, in the order recorded."""
        with self._mutex:
            return list(self._findings.get(run_id, ()))

    def journal_intent(
        self,
        run_id: RunId,
        step_id: StepId,
        index: int,
        statement: str,
        at: int,
        *,
        done_at: int | None = None,
    ) -> JournalEntry:
        """Write the intent to run a statement (finished at *done_at*, if given)."""
        with self._mutex:
            entry = JournalEntry(
                id=self._next_entry,
                run_id=run_id,
                step_id=step_id,
                index=index,
                statement=statement,
                started_at=at,
                done_at=done_at,
            )
            self._journal[entry.id] = entry
            self._next_entry += 1
            return entry

    def journal_done(self, entry_id: int, at: int) -> None:
        """Mark a journal entry finished; ``StorageError`` if there is no such entry."""
        with self._mutex:
            entry = self._journal.get(entry_id)
            if entry is None:
                raise StorageError(
                    f"migration_progress: no journal entry {entry_id}; only ids returned by"
                    " journal_intent() can be marked done."
                )
            self._journal[entry_id] = attrs.evolve(entry, done_at=at)

    def journal(self, run_id: RunId) -> Sequence[JournalEntry]:
        """A run's journal entries in order."""
        with self._mutex:
            return [e for e in self._journal.values() if e.run_id == run_id]

    def record_fingerprint(self, target: str, text: str, at: int) -> None:
        """Keep *target*'s schema fingerprint (JSON) as a run left it."""
        with self._mutex:
            self._fingerprints[target] = text

    def fingerprint(self, target: str) -> str | None:
        """The fingerprint kept for *target*, or None."""
        with self._mutex:
            return self._fingerprints.get(target)

    def record_decision(self, decision: DecisionRecord) -> DecisionRecord:
        """Add a rollback-log record; returns it with the id given to it."""
        with self._mutex:
            recorded = attrs.evolve(decision, id=len(self._decisions) + 1)
            self._decisions.append(recorded)
            return recorded

    def decide(
        self, decision_id: int, *, status: str, operator: str, at: int, detail: str | None = None
    ) -> None:
        """Record a decision on a rollback-log record; ``StorageError`` if there is none."""
        with self._mutex:
            if not 0 < decision_id <= len(self._decisions):
                raise StorageError(f"migration_rollback_log: no decision {decision_id}.")
            old = self._decisions[decision_id - 1]
            self._decisions[decision_id - 1] = attrs.evolve(
                old,
                status=status,
                decided_by=operator,
                decided_at=at,
                detail=old.detail if detail is None else detail,
            )

    def decisions(self, run_id: RunId | None = None) -> list[DecisionRecord]:
        """Rollback-log records (of *run_id*, or all), oldest first."""
        with self._mutex:
            return [d for d in self._decisions if run_id is None or d.run_id == run_id]

    def enqueue(self, entry: QueueEntry) -> QueueEntry:
        """Store a new queue entry; returns it with its id."""
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"enqueue() needs a QueueEntry, got {entry!r}.")
        with self._mutex:
            stored = attrs.evolve(entry, id=max(self._queue, default=0) + 1)
            self._queue[stored.id] = stored
            return stored

    def queue_entry(self, entry_id: int) -> QueueEntry | None:
        """The queue entry with this id, or None."""
        with self._mutex:
            return self._queue.get(entry_id)

    def queue_entries(
        self, target: str | None = None, *, active: bool = False
    ) -> Sequence[QueueEntry]:
        """Queue entries (of *target*, or all; only queued and running ones if *active*)."""
        with self._mutex:
            return [
                e
                for e in self._queue.values()
                if (target is None or e.target == target) and (not active or e.status in ACTIVE)
            ]

    def save_entry(self, entry: QueueEntry, *, expected_version: int) -> None:
        """Replace the stored entry if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the entry is missing).
        """
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"save_entry() needs a QueueEntry, got {entry!r}.")
        with self._mutex:
            stored = self._queue.get(entry.id)
            found = None if stored is None else stored.version
            if found != expected_version:
                raise ConcurrentUpdateError(
                    "migration_batches", f"queue:{entry.id}", expected_version, found
                )
            self._queue[entry.id] = entry


# --------------------------------------------------------------------------- lock


@final
@attrs.define
class InMemoryLockTable:
    """The shared state of in-memory locks: who holds which lock name.

    Give one table to several :class:`InMemoryLock` handles to make them contend, as two
    processes contend for one database lock.
    """

    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    #: lock name -> (holder, token of that acquisition)
    _held: dict[str, tuple[LockInfo, object]] = attrs.field(factory=dict, init=False)

    def try_take(self, name: str, owner: str, at: int) -> tuple[LockInfo, object] | LockInfo:
        """Take *name* for *owner* if free: ``(info, token)``; else the current holder."""
        with self._mutex:
            held = self._held.get(name)
            if held is not None:
                return held[0]
            taken = (LockInfo(name=name, owner=owner, since=at, heartbeat=at), object())
            self._held[name] = taken
            return taken

    def release(self, name: str, token: object) -> None:
        """Free *name* if it is still held by the acquisition *token* stands for."""
        with self._mutex:
            held = self._held.get(name)
            if held is not None and held[1] is token:
                del self._held[name]

    def holder(self, name: str) -> LockInfo | None:
        """Who holds *name*, or None."""
        with self._mutex:
            held = self._held.get(name)
            return None if held is None else held[0]

    def beat(self, name: str, owner: str, at: int) -> None:
        """Record a heartbeat of *owner* on *name*; ``LockError`` if it is not the holder."""
        with self._mutex:
            held = self._held.get(name)
            if held is None or held[0].owner != owner:
                who = "nobody" if held is None else repr(held[0].owner)
                raise LockError(
                    f"heartbeat on run lock {name!r} by {owner!r}, but it is held by {who}."
                    " The lock was lost: stop the run and let crash recovery take over."
                )
            self._held[name] = (attrs.evolve(held[0], heartbeat=at), held[1])

    def break_lock(self, name: str) -> LockInfo | None:
        """Free *name* whoever holds it (an operator override); returns who held it."""
        with self._mutex:
            held = self._held.pop(name, None)
            return None if held is None else held[0]


@final
@attrs.define
class InMemoryLock:
    """A non-reentrant run lock kept in memory.

    A second ``acquire`` while the lock is held fails even for the same owner: one run, one
    lock. Time stamps (``since``, ``heartbeat``) come from *clock*; waiting uses real time.

    Args:
        name: the lock name (one per target).
        clock: where stamps come from.
        table: shared state; handles built on the same table contend. A fresh one by default.
    """

    name: str
    clock: Clock = attrs.field(factory=SystemClock)
    table: InMemoryLockTable = attrs.field(factory=InMemoryLockTable, kw_only=True)

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the lock for the ``with`` block; released on exit, also on an exception.

        Args:
            owner: who takes it (recorded as the holder).
            timeout: seconds to wait for a holder to let go, polling; 0 tries once.

        Raises:
            LockHeldError: someone (maybe *owner* itself) holds it after *timeout* seconds.
        """
        if not isinstance(owner, str) or not owner:
            raise InvalidArgumentError(f"a lock owner is a non-empty str, got {owner!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgumentError(f"timeout is seconds >= 0, got {timeout!r}.")
        return self._held(owner, float(timeout))

    @contextmanager
    def _held(self, owner: str, timeout: float) -> Iterator[LockInfo]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.table.try_take(self.name, owner, to_stamp(self.clock.now()))
            if isinstance(got, tuple):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeldError(self.name, got.owner, got.since)
            time.sleep(min(_POLL_INTERVAL, remaining))
        info, token = got
        try:
            yield info
        finally:
            self.table.release(self.name, token)

    def holder(self) -> LockInfo | None:
        """Who holds the lock now, or None when it is free."""
        return self.table.holder(self.name)

    def heartbeat(self, owner: str) -> None:
        """Record that *owner*, the holder, is alive; ``LockError`` if it is not the holder."""
        self.table.beat(self.name, owner, to_stamp(self.clock.now()))

    def break_lock(self) -> LockInfo | None:
        """Free the lock whoever holds it (crash repair by an operator); returns the holder."""
        return self.table.break_lock(self.name)


# --------------------------------------------------------------------------- freeze


@attrs.frozen(kw_only=True)
class FreezeOverride:
    """A record of an emergency thaw: who, why, when, and what freeze it lifted."""

    operator: str
    reason: str
    at: int
    lifted: FreezeInfo | None


@final
@attrs.define
class InMemoryFreeze:
    """The application write gate, kept in memory, expiring by the injected clock.

    One owner at a time: :meth:`freeze` by another owner while a freeze is active raises
    :class:`~lupo_migrate.errors.LockHeldError` (``name`` is ``"write freeze"``).

    Attributes:
        clock: where time comes from (expiry is judged by it).
        overrides: every emergency thaw, oldest first.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    overrides: list[FreezeOverride] = attrs.field(factory=list, init=False)
    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _current: FreezeInfo | None = attrs.field(default=None, init=False)

    def _active(self, now: int) -> FreezeInfo | None:
        current = self._current
        if current is not None and now >= current.expires:
            self._current = current = None
        return current

    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        """Block writes until :meth:`thaw` or until *ttl* passes; re-freezing extends it.

        Raises:
            InvalidArgumentError: *ttl* is not a positive timedelta.
            LockHeldError: another owner's freeze is active.
        """
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
        now = self.clock.now()
        stamp = to_stamp(now)
        with self._mutex:
            current = self._active(stamp)
            if current is not None and current.owner != owner:
                raise LockHeldError("write freeze", current.owner, current.since)
            since = stamp if current is None else current.since
            self._current = FreezeInfo(owner=owner, since=since, expires=to_stamp(now + ttl))
            return self._current

    def thaw(self, owner: str) -> None:
        """Lift *owner*'s freeze; no error if there is none (another owner's stays)."""
        with self._mutex:
            if self._current is not None and self._current.owner == owner:
                self._current = None

    def status(self) -> FreezeInfo | None:
        """The active (unexpired) freeze, or None."""
        stamp = to_stamp(self.clock.now())
        with self._mutex:
            return self._active(stamp)

    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        """Lift any freeze, recording who and why in :attr:`overrides`; returns what was lifted."""
        stamp = to_stamp(self.clock.now())
        with self._mutex:
            lifted = self._active(stamp)
            self._current = None
            self.overrides.append(
                FreezeOverride(operator=operator, reason=reason, at=stamp, lifted=lifted)
            )
            return lifted


# --------------------------------------------------------------------------- ephemeral

#: The ephemeral tables holding named values (``put``/``get``).
EPHEMERAL_TABLES: Final = ("sessions", "cache", "temp_data")


def _check_table(table: str) -> None:
    if table not in EPHEMERAL_TABLES:
        raise InvalidArgumentError(
            f"{table!r} is not an ephemeral table for values; use one of"
            f" {', '.join(EPHEMERAL_TABLES)} (leases and jobs have methods of their own)."
        )


def _ttl(ttl: object) -> timedelta:
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
    return ttl


@final
@attrs.define
class InMemoryEphemeral:
    """The ephemeral schema in memory: values, leases and jobs that expire by *clock*.

    Expired rows read as absent at once and stay until :meth:`purge` removes them, as in a
    database.

    Args:
        clock: where time comes from (expiry is judged by it).
    """

    clock: Clock = attrs.field(factory=SystemClock)
    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _values: dict[str, dict[str, tuple[str, int]]] = attrs.field(
        factory=lambda: {t: {} for t in EPHEMERAL_TABLES}, init=False
    )
    _leases: dict[str, Lease] = attrs.field(factory=dict, init=False)
    _jobs: dict[int, Job] = attrs.field(factory=dict, init=False)

    def _now(self) -> int:
        return to_stamp(self.clock.now())

    def _until(self, ttl: timedelta) -> int:
        return to_stamp(self.clock.now() + _ttl(ttl))

    def put(self, table: str, name: str, value: str, *, ttl: timedelta) -> int:
        """Keep *value* under *name* in *table* for *ttl*; returns its expiry stamp."""
        _check_table(table)
        expires = self._until(ttl)
        with self._mutex:
            self._values[table][name] = (value, expires)
        return expires

    def get(self, table: str, name: str) -> str | None:
        """The unexpired value under *name* in *table*, or None."""
        _check_table(table)
        now = self._now()
        with self._mutex:
            found = self._values[table].get(name)
        return found[0] if found is not None and found[1] > now else None

    def take(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Take (or, holding it, renew) the lease *name*; ``LockHeldError`` if another owner
        holds it unexpired."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            held = self._leases.get(name)
            if held is not None and held.expires > now and held.owner != owner:
                raise LockHeldError(name, held.owner, held.since)
            live = held is not None and held.expires > now
            since = held.since if live and held is not None else now
            lease = Lease(name=name, owner=owner, since=since, expires=expires)
            self._leases[name] = lease
            return lease

    def renew(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Extend *owner*'s lease; ``LockError`` if it does not hold it any more."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            held = self._leases.get(name)
            if held is None or held.owner != owner or held.expires <= now:
                raise LockError(
                    f"lease {name!r} of {owner!r} was lost (it expired and was taken over or"
                    " purged); stop the work it guarded."
                )
            lease = attrs.evolve(held, expires=expires)
            self._leases[name] = lease
            return lease

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if *owner* holds it."""
        with self._mutex:
            held = self._leases.get(name)
            if held is not None and held.owner == owner:
                del self._leases[name]

    def lease(self, name: str) -> Lease | None:
        """The unexpired lease *name*, or None."""
        now = self._now()
        with self._mutex:
            held = self._leases.get(name)
        return held if held is not None and held.expires > now else None

    def start_job(self, job: Job) -> None:
        """Record that ``job.worker`` works on ``job.entry_id``."""
        with self._mutex:
            self._jobs[job.entry_id] = job

    def renew_jobs(self, worker: str, *, ttl: timedelta) -> int:
        """Extend every unexpired job of *worker*; returns how many."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            mine = [j for j in self._jobs.values() if j.worker == worker and j.expires > now]
            for job in mine:
                self._jobs[job.entry_id] = attrs.evolve(job, expires=expires)
            return len(mine)

    def end_job(self, entry_id: int) -> None:
        """Forget the job of *entry_id*."""
        with self._mutex:
            self._jobs.pop(entry_id, None)

    def jobs(self, target: str | None = None) -> Sequence[Job]:
        """The unexpired jobs (of *target*, or all), by entry id."""
        now = self._now()
        with self._mutex:
            return sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.expires > now and (target is None or j.target == target)
                ),
                key=lambda j: j.entry_id,
            )

    def purge(self) -> Mapping[str, int]:
        """Delete every row expired now; the number deleted per table."""
        now = self._now()
        counts: dict[str, int] = {}
        with self._mutex:
            for table, values in self._values.items():
                gone = [k for k, (_, expires) in values.items() if expires <= now]
                for key in gone:
                    del values[key]
                counts[table] = len(gone)
            jobs = [k for k, j in self._jobs.items() if j.expires <= now]
            for entry_id in jobs:
                del self._jobs[entry_id]
            counts["job_queue"] = len(jobs)
            leases = [k for k, lease in self._leases.items() if lease.expires <= now]
            for key in leases:
                del self._leases[key]
            counts["locks"] = len(leases)
        return counts
