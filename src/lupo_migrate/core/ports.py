"""The seams of lupo_migrate: protocols for handlers, validators and injected backends.

Nobody subclasses anything: a handler, a storage or a lock is any object with these methods.
In-memory implementations live in :mod:`lupo_migrate.backends.memory`; the contract every
implementation must pass is in :mod:`lupo_migrate.testing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lupo_migrate.core.decisions import DecisionRecord
from lupo_migrate.core.model import (
    AppliedStep,
    Finding,
    FreezeInfo,
    JournalEntry,
    LockInfo,
    Run,
    RunId,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate.core.queue import Job, Lease, QueueEntry

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Clock",
    "DecisionLog",
    "Ephemeral",
    "Freeze",
    "Handler",
    "Lock",
    "RunQueue",
    "StepContext",
    "Storage",
    "Target",
    "Validator",
]


@runtime_checkable
class Clock(Protocol):
    """Where time comes from; inject a fake one in tests."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


@runtime_checkable
class StepContext(Protocol):
    """What a handler gets from the orchestrator to apply or undo one step.

    Attributes:
        dialect: the target's SQLAlchemy dialect name (``mysql``, ``mariadb``, ``postgresql``,
            ``sqlite``).
        names: federation, logical schema name (``core``, ``orchestration``, ``ephemeral``) to
            physical name.
        renames: literal schema names in SQL to rewrite (``{"lupopedia": "test"}``).
        connection: the DDL connection (a SQLAlchemy ``Connection``) for handlers that need
            more than :meth:`execute`; None in a dry run.
        files_root: the directory handlers that change files work in (agent files,
            documentation).
    """

    dialect: str
    names: Mapping[str, str]
    renames: Mapping[str, str]
    connection: Any
    files_root: Path | None

    def read_text(self, relpath: str) -> str:
        """The text of a file under the migrations root (LF line ends, no BOM)."""
        ...

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        """Run one statement, journalled: the intent is stored before it is sent, done after.

        Args:
            statement: the SQL, already rendered (placeholders and renames applied).
            index: its 0-based position in the step (the journal key with the step id).
            line: its first line in the file, for error messages.

        Raises:
            StatementError: the database refused it (the journal keeps the intent).
        """
        ...

    def done(self) -> frozenset[int]:
        """Indexes of this step's statements that the journal records as done (for resume)."""
        ...

    def record(self, text: str) -> int:
        """Keep an undo record (what to put back when the step is undone) in the journal.

        It is durable when this returns, unless the handler's work shares the step's
        database transaction (then it commits or rolls back with that work). Returns its
        journal index (from ``UNDO_BASE`` on).
        """
        ...

    def records(self) -> list[tuple[int, str]]:
        """This step's undo records, oldest first (also those of the run that applied it,
        when a completed run is rolled back later)."""
        ...


@runtime_checkable
class Handler(Protocol):
    """Applies and undoes one file type.

    Attributes:
        file_type: the type name steps carry (``doctrine``, ``module``...); unique per registry.
        suffixes: file name endings this handler claims during discovery (``.sql``...).
    """

    @property
    def file_type(self) -> str:
        """The type name steps carry; unique per registry."""
        ...

    @property
    def suffixes(self) -> Sequence[str]:
        """File name endings this handler claims during discovery."""
        ...

    def apply(self, step: Step, context: Any) -> None:
        """Apply *step*; raise to report failure (the shell turns it into a ``Failure``)."""
        ...

    def rollback(self, step: Step, context: Any) -> None:
        """Undo *step* (also a partly applied one), restoring the pre-run state exactly."""
        ...

    def can_rollback(self, step: Step) -> bool:
        """Whether a rollback of *step* can be guaranteed; asked at plan time, never after."""
        ...


@runtime_checkable
class Validator(Protocol):
    """A check: returns findings, never raises for a failed check (every validator runs)."""

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        """The findings for *context*; an empty iterable means the check passed."""
        ...


@runtime_checkable
class Storage(Protocol):
    """Where runs, the applied-step ledger, findings and the statement journal persist.

    Guarantees every implementation gives (checked by ``lupo_migrate.testing.check_storage``):
    writes are durable when the method returns; ``save_run`` is a compare-and-set on
    ``Run.version``; values read back equal the values written.
    """

    def create_run(self, run: Run) -> None:
        """Store a new run; ``StorageError`` if its id exists."""
        ...

    def get_run(self, run_id: RunId) -> Run | None:
        """The run with this id, or None."""
        ...

    def save_run(self, run: Run, *, expected_version: int) -> None:
        """Replace the stored run if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the run is missing).
        """
        ...

    def list_runs(self, target: str | None = None) -> Sequence[Run]:
        """Runs (of *target*, or all), oldest first."""
        ...

    def latest_run(self, target: str) -> Run | None:
        """The most recently created run of *target*, or None."""
        ...

    def record_applied(self, entry: AppliedStep) -> None:
        """Add (or replace) the ledger row of ``entry.step_id`` on ``entry.target``."""
        ...

    def remove_applied(self, target: str, step_id: StepId) -> None:
        """Drop a ledger row (the step was rolled back); no error if absent."""
        ...

    def applied(self, target: str) -> Mapping[StepId, AppliedStep]:
        """The ledger of *target*, by step id, in the order rows were recorded."""
        ...

    def record_findings(self, run_id: RunId, findings: Sequence[Finding]) -> None:
        """Append findings to a run's validation log."""
        ...

    def findings(self, run_id: RunId) -> Sequence[Finding]:
        """A run's findings, in the order recorded."""
        ...

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
        """Write the intent to run a statement, before it is sent; returns the entry.

        With *done_at*, the statement has run already and the entry is written finished: the
        orchestrator does so for a statement that commits with its journal row (same
        transaction), where an intent written first would tell nothing more.
        """
        ...

    def journal_done(self, entry_id: int, at: int) -> None:
        """Mark a journal entry finished."""
        ...

    def journal(self, run_id: RunId) -> Sequence[JournalEntry]:
        """A run's journal entries in order."""
        ...


@runtime_checkable
class DecisionLog(Protocol):
    """The rollback log (``migration_rollback_log``): decisions, windows, rollback material.

    Optional beside :class:`Storage`: a storage that has these methods lets completed runs be
    rolled back, accepted and purged (both shipped storages have them).
    """

    def record_decision(self, decision: DecisionRecord) -> DecisionRecord:
        """Add a record; returns it with the id given to it."""
        ...

    def decide(
        self, decision_id: int, *, status: str, operator: str, at: int, detail: str | None = None
    ) -> None:
        """Record a decision on a record (``StorageError`` if there is no such record)."""
        ...

    def decisions(self, run_id: RunId | None = None) -> Sequence[DecisionRecord]:
        """Records (of *run_id*, or all), oldest first."""
        ...


@runtime_checkable
class Lock(Protocol):
    """The run lock of one target: one owner at a time, holder and heartbeat recorded."""

    name: str

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the lock for the ``with`` block.

        Raises:
            LockHeldError: another owner holds it and *timeout* seconds passed.
        """
        ...

    def holder(self) -> LockInfo | None:
        """Who holds the lock now, or None when it is free."""
        ...

    def heartbeat(self, owner: str) -> None:
        """Record that *owner*, the holder, is alive; ``LockError`` if it is not the holder."""
        ...


@runtime_checkable
class Freeze(Protocol):
    """The application write gate: frozen while a run works, thawed by itself on expiry."""

    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        """Block writes until :meth:`thaw` or until *ttl* passes; re-freezing extends it."""
        ...

    def thaw(self, owner: str) -> None:
        """Lift *owner*'s freeze; no error if there is none."""
        ...

    def status(self) -> FreezeInfo | None:
        """The active (unexpired) freeze, or None."""
        ...

    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        """Lift any freeze whoever holds it, recording who and why; returns what was lifted."""
        ...


@runtime_checkable
class RunQueue(Protocol):
    """The run queue (``migration_batches`` holds runs and the queue): entries that ask for a
    run, each changed by a compare-and-set on its version.

    Optional beside :class:`Storage`: a storage with these methods lets runs be queued and
    drained (both shipped storages have them). Which entry is next, and how an entry changes,
    is decided by the functional core (``lupo_migrate.core.queue``), not here.
    """

    def enqueue(self, entry: QueueEntry) -> QueueEntry:
        """Store a new entry; returns it with its id (ids grow with every entry)."""
        ...

    def queue_entry(self, entry_id: int) -> QueueEntry | None:
        """The entry with this id, or None."""
        ...

    def queue_entries(
        self, target: str | None = None, *, active: bool = False
    ) -> Sequence[QueueEntry]:
        """Entries (of *target*, or all; only queued and running ones if *active*), by id."""
        ...

    def save_entry(self, entry: QueueEntry, *, expected_version: int) -> None:
        """Replace the stored entry if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the entry is missing).
        """
        ...


@runtime_checkable
class Ephemeral(Protocol):
    """The ephemeral schema: rows that expire (``sessions``, ``cache``, ``temp_data``,
    ``job_queue``, ``locks``), removed by :meth:`purge`.

    Every row has an expiry stamp; an expired row reads as absent at once, and :meth:`purge`
    deletes it later. Purging is safe while other processes read, write and purge: it only
    ever deletes rows expired at its own *now*, one statement at a time.
    """

    def put(self, table: str, name: str, value: str, *, ttl: timedelta) -> int:
        """Keep *value* under *name* in ``sessions``, ``cache`` or ``temp_data`` for *ttl*
        (replacing what was there); returns its expiry stamp."""
        ...

    def get(self, table: str, name: str) -> str | None:
        """The unexpired value under *name* in *table*, or None."""
        ...

    def take(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Take the lease *name* for *ttl* (renewing it, if *owner* holds it already).

        Raises:
            LockHeldError: another owner holds it, unexpired.
        """
        ...

    def renew(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Extend *owner*'s lease by *ttl* from now.

        Raises:
            LockError: *owner* does not hold it any more (it expired and was taken or purged).
        """
        ...

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if *owner* holds it; no error otherwise."""
        ...

    def lease(self, name: str) -> Lease | None:
        """The unexpired lease *name*, or None."""
        ...

    def start_job(self, job: Job) -> None:
        """Record that ``job.worker`` works on queue entry ``job.entry_id`` (replacing any
        earlier record of that entry)."""
        ...

    def renew_jobs(self, worker: str, *, ttl: timedelta) -> int:
        """Extend every job of *worker* by *ttl* from now; returns how many."""
        ...

    def end_job(self, entry_id: int) -> None:
        """Forget the job of *entry_id*; no error if there is none."""
        ...

    def jobs(self, target: str | None = None) -> Sequence[Job]:
        """The unexpired jobs (of *target*, or all), by entry id."""
        ...

    def purge(self) -> Mapping[str, int]:
        """Delete every row expired now; returns the number deleted per table."""
        ...


class Target(Protocol):
    """Where statements run: the shell side of a database (see ``backends.sqlalchemy.target``).

    A target may offer more, looked up by name when present (``SqlAlchemyTarget`` has them
    all): ``fingerprint``, ``table_data``, ``row_estimates``, ``existing`` and ``orphans``
    (the checks), ``pre_images`` and ``drop_backups`` (verified rollbacks), ``flush`` (held
    writes), ``holders`` and ``lock_wait_suspects`` (sessions blocking DDL),
    ``connection_lost`` and ``discard`` (a connection that dropped), ``time_query`` (probes).
    """

    @property
    def dialect(self) -> str:
        """The dialect name handlers see (``mysql``, ``mariadb``, ``postgresql``, ``sqlite``)."""
        ...

    @property
    def names(self) -> Mapping[str, str]:
        """Federation: logical schema name to physical name."""
        ...

    @property
    def renames(self) -> Mapping[str, str]:
        """Literal schema names in SQL to rewrite."""
        ...

    @property
    def transactional_ddl(self) -> bool:
        """Whether DDL is transactional (PostgreSQL, SQLite): a failed step leaves nothing."""
        ...

    def step_session(self) -> AbstractContextManager[Any]:
        """A connection for one step, in a transaction where DDL is transactional.

        Leaving the block commits; an exception rolls back (where the database can).
        """
        ...

    def execute(self, connection: Any, statement: str) -> None:
        """Run one statement on *connection*; raise with the database's message if refused."""
        ...

    def facts(self) -> Mapping[str, Any]:
        """Measured facts for validators, e.g. ``core_tables`` (the core table count)."""
        ...
