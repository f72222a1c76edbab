"""The imperative shell: the ``Orchestrator`` drives the pure state machine against real backends.

It takes the run lock, feeds events to :func:`lupo_migrate._state.transition`, **persists every
new run before** it carries out the effects, and turns each effect into I/O through injected
backends (storage, lock, freeze, clock, handlers, a target that runs statements). Each effect
that ends in a fact yields one event; after the effects of one transition are carried out the
event is fed back, until the run is back in IDLE.

The orchestrator is database-agnostic: statements reach the database through a ``Target``
(see :class:`Target`), which the SQLAlchemy extension implements.

This module drives runs and carries out effects. Recovering dead runs (``_recovery``), what
operators do with ended runs (``_operations``) and the checks around a run (``_checking``)
live in modules of their own, as functions of the orchestrator; ``_runtime`` holds what they
share.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from lupo_migrate import _checking, _observing, _operations, _recovery
from lupo_migrate import _state as sm
from lupo_migrate._clock import from_stamp, to_stamp
from lupo_migrate._decisions import (
    DecisionRecord,
)
from lupo_migrate._keepalive import KeepAlive
from lupo_migrate._model import (
    UNDO_BASE,
    AppliedStep,
    Classification,
    Failure,
    FailureKind,
    Finding,
    LockInfo,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate._observing import Watch
from lupo_migrate._planner import plan as plan_steps
from lupo_migrate._registry import HandlerRegistry
from lupo_migrate._runtime import (
    RunResult,
    _failure,
    _family,
    _in_transaction,
    _read_under,
    _reason,
    _Rollback,
    _rollback_failure,
    _StepCheckFailed,
)
from lupo_migrate._validation import (
    EXPLICIT_DOWN,
    checksums_unchanged,
    performance_probes,
)
from lupo_migrate.errors import (
    BlockedError,
    ConnectionLostError,
    InternalError,
    InvalidArgumentError,
    LockError,
    LupoMigrateError,
    MigrationFileError,
    StatementError,
    StorageError,
    TargetBlockedError,
)
from lupo_migrate.handlers._lint import risky_statements
from lupo_migrate.handlers._touch import touches
from lupo_migrate.typing import Clock, DecisionLog, Freeze, Lock, Storage, Validator

if TYPE_CHECKING:
    from lupo_migrate._checklist import Item as ChecklistItem
    from lupo_migrate._draining import DrainReport
    from lupo_migrate._metrics import HistoryStats
    from lupo_migrate._queue import QueueEntry
    from lupo_migrate.alerts import AlertSink
    from lupo_migrate.observe import Event
    from lupo_migrate.typing import Ephemeral

__all__ = ["Orchestrator", "RunResult", "Target", "default_owner"]

logger = logging.getLogger("lupo_migrate")
logger.addHandler(logging.NullHandler())


class Target(Protocol):
    """Where statements run: the shell side of a database (see ``ext.sqlalchemy.target``).

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


def default_owner() -> str:
    """A lock owner naming this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@attrs.define
class _Context:
    """The ``StepContext`` handed to handlers: journalled statements on the step's connection."""

    storage: Storage
    clock: Clock
    target: Target
    root: Path
    run_id: str
    step: Step
    target_name: str
    connection: Any
    dialect: str
    names: Mapping[str, str]
    renames: Mapping[str, str]
    #: Indexes of this step's statements the journal records as done (kept up to date here,
    #: so the journal is read once per run, not once per step).
    finished: set[int] = attrs.field(factory=set)
    executed: int = 0
    #: Whether the storage writes through the step's own connection (same transaction).
    shared: bool = False
    #: Called with each statement (and the step's connection) before it runs: pre-images of
    #: what it touches.
    before: Callable[[str, Any], None] | None = None

    #: Seconds to wait for other sessions holding a table a DDL statement changes (None: do
    #: not look; the DDL's own short lock wait still bounds how long it queues).
    wait_bound: float | None = None
    #: The directory agent-file and documentation steps change.
    files_root: Path | None = None
    #: Told of each statement that ran: (step id, index, seconds waited for the database).
    observe: Callable[[StepId, int, float], None] | None = None

    def record(self, text: str) -> int:
        """Keep an undo record of this step in the journal, finished at once; its index.

        Written through the storage's own transaction unless the storage shares the step's
        (then it commits with what it undoes): handlers whose work is outside the database
        (files) run unshared, so a record is durable before the change it undoes.
        """
        index = UNDO_BASE + sum(1 for i in self.finished if i >= UNDO_BASE)
        while index in self.finished:
            index += 1
        at = to_stamp(self.clock.now())
        self.storage.journal_intent(self.run_id, self.step.id, index, text, at, done_at=at)
        self.finished.add(index)
        return index

    def records(self) -> list[tuple[int, str]]:
        """This step's undo records, oldest first: those of the run that applied it (for a
        completed run rolled back later) and of this run."""
        runs = [self.run_id]
        applied = self.storage.applied(self.target_name).get(self.step.id)
        if applied is not None and applied.run_id != self.run_id:
            runs.insert(0, applied.run_id)
        return [
            (entry.index, entry.statement)
            for run_id in runs
            for entry in self.storage.journal(run_id)
            if entry.step_id == self.step.id and entry.index >= UNDO_BASE
        ]

    def read_text(self, relpath: str) -> str:
        return _read_under(self.root, relpath, self.step)

    def _await_holders(self, statement: str, index: int) -> None:
        """Before DDL on existing tables: wait (up to ``wait_bound``) for the other sessions
        whose transactions hold them; the DDL is not sent meanwhile, so nothing queues behind
        it. Still held then: ``BlockedError`` naming them (transient: nothing ran)."""
        holders = getattr(self.target, "holders", None)
        if holders is None or self.wait_bound is None or _in_transaction(statement):
            return
        tables = sorted(
            {
                t.name
                for t in touches(statement, dialect=_family(self.target))
                if t.kind == "table" and t.action != "create" and t.schema is None
            }
        )
        if not tables:
            return
        began = time.monotonic()
        while True:
            found = holders(tables, self.connection)
            if not found:  # None: the server cannot tell; the DDL's lock wait bounds it
                return
            waited = time.monotonic() - began
            if waited >= self.wait_bound:
                raise BlockedError(
                    self.step.id, self.step.path, sessions=found, waited=waited, index=index
                )
            time.sleep(min(_LOOK, self.wait_bound - waited))

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        self._await_holders(statement, index)
        started = to_stamp(self.clock.now())
        # A statement that commits with its journal row gets one row, written after it ran;
        # one that may commit on its own (MySQL DDL) is announced first (write-ahead).
        if self.before is not None:
            self.before(statement, self.connection)
        after = self.shared and (self.target.transactional_ddl or _in_transaction(statement))
        entry = None
        if not after:
            entry = self.storage.journal_intent(
                self.run_id, self.step.id, index, statement, started
            )
        began = time.perf_counter()
        try:
            self.target.execute(self.connection, statement)
        except StorageError:
            raise  # a journal or ledger write that travelled with the statement failed
        except Exception as exc:
            suspects = getattr(self.target, "lock_wait_suspects", None)
            named = suspects(exc, self.connection) if suspects is not None else None
            if named is not None:  # it gave up waiting for a lock: nothing of it ran
                raise BlockedError(
                    self.step.id,
                    self.step.path,
                    sessions=named or ("no other open transaction is left",),
                    waited=float(getattr(self.target, "lock_wait_timeout", 0)),
                    index=index,
                ) from exc
            lost = getattr(self.target, "connection_lost", None)
            if lost is not None and lost(exc):
                raise ConnectionLostError(
                    self.step.id,
                    self.step.path,
                    index=index,
                    statement=statement,
                    reason=_reason(exc),
                ) from exc
            raise StatementError(
                self.step.id,
                self.step.path,
                index=index,
                line=line,
                statement=statement,
                reason=_reason(exc),
            ) from exc
        self.executed += 1
        if self.observe is not None:
            self.observe(self.step.id, index, time.perf_counter() - began)
        done = to_stamp(self.clock.now())
        if entry is None:
            self.storage.journal_intent(
                self.run_id, self.step.id, index, statement, started, done_at=done
            )
        else:
            self.storage.journal_done(entry.id, done)
        self.finished.add(index)

    def done(self) -> frozenset[int]:
        return frozenset(self.finished)


@attrs.define
class Orchestrator:
    """Applies plans to one target safely: the shell around the pure state machine.

    Every collaborator is injected, so hosts can embed it anywhere and tests can use the
    in-memory backends.

    Args:
        storage: where runs, the ledger, findings and the journal persist.
        lock: the target's run lock.
        freeze: the application write gate.
        clock: the time source.
        registry: the handlers by file type.
        target: runs statements (see :class:`Target`).
        root: the migrations directory (handlers read files relative to it).
        target_name: the name runs and ledger rows are recorded under.
        table_budget: the core table limit checked before a run (None: unchecked).
        validators: extra validators, run before and after (they see ``context.stage``).
        freeze_ttl: how long a freeze lasts if the orchestrator dies without thawing; a run
            extends it between steps once a third of it has gone.
        lock_timeout: seconds to wait for the run lock before ``LockHeldError``.
        owner: the lock owner (default: host, pid and a random part).
        keep_rollback: how long a completed run can be rolled back as a whole (``rollback``)
            when no pending decision keeps it longer; its backups are kept as long.
        drift: ``error`` (a schema changed since the last run refuses the run), ``warn`` or
            ``off``.
        forbid: lint rules whose findings refuse the run (``foreign-key``, ``trigger``...).
        lint_ignore: lint rules not reported.
        probes: performance probes, name to query, timed before and after a run.
        probe_threshold: the slowdown factor beyond which a probe is a class B finding.
        integrity_limit: tables the run does not touch are checksummed before and after it
            when they hold at most this many rows (by the catalog's estimate).
        long_transaction_wait: seconds a DDL statement waits, before it is sent, for other
            sessions whose open transactions hold its tables (where the target can tell);
            then the step fails as transient (``BlockedError``), naming them. None: no look.
        statement_wait: seconds recovery waits for a statement a dead run left running on
            the server (MySQL/MariaDB) before it reads the schema.
        files_root: the directory agent-file and documentation steps change (default: the
            migrations directory's parent).
        observers: called with every :class:`lupo_migrate.observe.Event` of a run (a
            :class:`lupo_migrate.observe.Metrics`, say); one that raises is left out.
        alert_sinks: where alerts go besides ``migration_alerts`` (see
            :mod:`lupo_migrate.alerts`); escalation alerts a run slower than its history.
    """

    storage: Storage
    lock: Lock
    freeze: Freeze
    clock: Clock
    registry: HandlerRegistry
    target: Target
    root: Path
    target_name: str = "default"
    table_budget: int | None = 77
    validators: Sequence[Validator] = ()
    freeze_ttl: timedelta = timedelta(hours=1)
    lock_timeout: float = 0.0
    owner: str = attrs.field(factory=default_owner)
    on_event: Callable[[Run, object], None] | None = None
    keep_rollback: timedelta = timedelta(hours=24)
    drift: str = "error"
    forbid: Sequence[str] = ()
    lint_ignore: Sequence[str] = ()
    probes: Mapping[str, str] = attrs.field(factory=dict)
    probe_threshold: float = 2.0
    integrity_limit: int = 10_000
    long_transaction_wait: float | None = 30.0
    statement_wait: float = 120.0
    files_root: Path | None = None
    observers: Sequence[Callable[[Event], None]] = ()
    alert_sinks: Sequence[AlertSink] = ()
    # The run being watched for observers and escalation (see _observing).
    _watch: Watch | None = attrs.field(default=None, init=False, repr=False)
    # Statement indexes done, by (run, step): filled as statements finish; a resumed run
    # would load it from the journal once.
    _done: dict[tuple[str, StepId], set[int]] = attrs.field(factory=dict, init=False, repr=False)
    # The applied step's connection scope, kept open until its StepApplied is persisted.
    _open_step: ExitStack | None = attrs.field(default=None, init=False, repr=False)
    # The run's pre-images where the target keeps them (MySQL: see ext.sqlalchemy._preimage).
    _pre: Any = attrs.field(default=None, init=False, repr=False)
    # Set while an operator's rollback of a completed run is driven (see rollback()).
    _rolling: _Rollback | None = attrs.field(default=None, init=False, repr=False)
    # The heartbeat and freeze renewals of the run being driven (see _hold()).
    _keeper: KeepAlive | None = attrs.field(default=None, init=False, repr=False)
    # Facts measured at PRE for POST, and the fingerprint POST read.
    _facts: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    _after: Any = attrs.field(default=None, init=False, repr=False)
    # Per-step indexes of the facts (see _by_step), with the rows they were built from.
    _indexes: dict[str, tuple[Any, dict[StepId, list[Any]]]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    # The dead run being recovered (see recover()).
    _recovering: Run | None = attrs.field(default=None, init=False, repr=False)
    # Records of pending decisions written by the run being driven.
    _recorded: list[DecisionRecord] = attrs.field(factory=list, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.drift not in ("error", "warn", "off"):
            raise InvalidArgumentError(f"drift must be error, warn or off, got {self.drift!r}")
        risky_statements(forbid=self.forbid, ignore=self.lint_ignore)  # names the unknown
        performance_probes(self.probe_threshold)
        adopt = getattr(self.target, "adopt_statement_lock", None)
        if adopt is not None:
            # Named after the run lock, so two targets never share one, and recover (which
            # waits for a dead run's statement still running) works for every embedding.
            adopt(str(getattr(self.lock, "server_name", None) or self.target_name))

    # ------------------------------------------------------------------ queries

    def pending(self, steps: Sequence[Step], *, upto: StepId | None = None) -> Plan:
        """The plan of the steps not applied yet (the ledger decides)."""
        return plan_steps(steps, upto=upto, applied=tuple(self.storage.applied(self.target_name)))

    def status(self) -> Run | None:
        """The target's latest run, or None."""
        return self.storage.latest_run(self.target_name)

    def crashed(self) -> Run | None:
        """The target's latest run if it died: it has not ended and nobody holds the run lock
        (a run that works holds it all along). None otherwise."""
        latest = self.status()
        if latest is None or latest.ended or self.lock.holder() is not None:
            return None
        return latest

    def hung(self, after: timedelta = timedelta(seconds=60)) -> LockInfo | None:
        """Who holds the run lock without having recorded a heartbeat for longer than *after*
        (a working run records one every ``HEARTBEAT`` seconds, long statements included):
        its process is stopped or cut off, yet its lock is not free. None otherwise."""
        held = self.lock.holder()
        if held is None or from_stamp(held.heartbeat) + after >= self.clock.now():
            return None
        return held

    def history(self) -> Sequence[Run]:
        """The target's runs, oldest first."""
        return self.storage.list_runs(self.target_name)

    def verify(self, steps: Sequence[Step]) -> tuple[Finding, ...]:
        """Findings for applied files whose checksum changed since they were applied."""
        context = ValidationContext(
            stage=Stage.PRE,
            plan=Plan(steps=steps),
            run=Run(id="verify", target=self.target_name),
            applied=self.storage.applied(self.target_name),
        )
        return tuple(checksums_unchanged()(context))

    # ------------------------------------------------------------------ commands

    def apply(self, steps: Sequence[Step], *, upto: StepId | None = None) -> RunResult:
        """Apply every pending step (up to *upto*) as one run.

        Returns:
            The result; ``nothing_to_do`` when every step is applied already.

        Raises:
            MigrationFileError: an applied file was edited (accept it or restore it first).
            TargetBlockedError: a failed rollback blocks the target until ``resolve``.
            LockHeldError: another run holds the target.
            PlanError: the steps cannot be ordered.
        """
        edited = self.verify(steps)
        if edited:
            raise MigrationFileError(edited)
        latest = self.status()
        if latest is not None and latest.blocked:
            raise TargetBlockedError(
                latest.id,
                latest.phase.name,
                "LockAcquired",
                ["Resolved"],
                reason="A rollback failed earlier and the target is blocked; fix it by hand,"
                " then `lupo-migrate resolve`.",
            )
        dead = self.crashed() if latest is not None and not latest.ended else None
        if dead is not None:
            raise TargetBlockedError(
                dead.id,
                dead.phase.name,
                "LockAcquired",
                ["RollbackRequested"],
                reason=f"run {dead.id} died in {dead.phase.value}"
                + (f" at step {dead.in_flight}" if dead.in_flight else "")
                + "; `lupo-migrate recover` rolls it back to where it started.",
            )
        plan = self.pending(steps, upto=upto)
        if not plan.steps:
            return RunResult(run=None, plan=plan)
        by_id = {s.id: s for s in plan.steps}
        run = Run.new(uuid.uuid4().hex, plan, target=self.target_name)
        with ExitStack() as stack:
            self._hold(stack)
            stack.callback(self._flush)
            stack.callback(self._close_pre_images)
            self._recorded = []
            run = self._start(run, plan, by_id)
        return RunResult(
            run=run,
            plan=plan,
            applied=run.applied,
            findings=tuple(self.storage.findings(run.id)),
        )

    # ------------------------------------------------------------------ decisions

    def decisions(self, run_id: str | None = None) -> list[DecisionRecord]:
        """The rollback log of this target (or of one run), oldest first; the stored status
        of a record past its deadline reads ``final`` (see ``_decisions.status_at``)."""
        return _operations.decisions(self, run_id)

    def checklist(self, run_id: str) -> tuple[ChecklistItem, ...]:
        """The doctrine's execution checklist (pre, during, post) of a run, each item ticked
        from what was recorded (see ``lupo_migrate._checklist``).

        Raises:
            DecisionError: no run, or several, start with *run_id*.
        """
        return _observing.checklist(self, self.find_run(run_id))

    def stats(self) -> HistoryStats:
        """History analytics of this target: runs by outcome, rollback frequency, duration
        trend, failures by error type and by file type."""
        return _observing.stats(self)

    def find_run(self, prefix: str) -> Run:
        """The target's run whose id is *prefix* or starts with it (``DecisionError`` if none
        or several)."""
        return _operations.find_run(self, prefix)

    def rollback(
        self,
        run_id: str,
        steps: Sequence[Step],
        *,
        scope: Classification | None = None,
        operator: str = "operator",
    ) -> RunResult:
        """Roll back a completed run as a whole (*scope* None), or the scope of one of its
        pending decisions (B, C or D), while the window is open.

        The rollback is a run of its own (recorded in history, frozen and locked like any
        run): its steps are undone newest first, then everything they touched is compared with
        the pre-images kept since the run, and what differs is put back.

        Raises:
            DecisionError: no such run; it did not complete; the window closed or the scope was
                decided; a later run applied steps since (roll that back first); a step's file
                is missing.
            LockHeldError: another run holds the target.
        """
        return _operations.rollback(self, run_id, steps, scope=scope, operator=operator)

    def recover(
        self, steps: Sequence[Step], *, operator: str = "operator", resume: bool = False
    ) -> RunResult:
        """Roll back the run that died (see :meth:`crashed`) to where it started, or with
        *resume* carry it on to the end.

        The journal tells which statements ran: finished ones are undone (or, resuming, not
        run again); one announced but not marked finished is looked up in the live schema
        (DDL commits by itself on MySQL; DML rolled back with its transaction, journal row and
        all). The run's pre-images, kept as it went, put back what its steps' downs do not,
        and the result is compared and recorded as for any rollback. A run that died rolling
        back goes on rolling back, *resume* or not.

        Returns:
            The recovered run; ``run`` None when no run had died but a process left its write
            freeze behind (it died before recording its run): the freeze was lifted.

        Raises:
            DecisionError: no run died, or a step's file is missing or was edited.
            LockHeldError: another run holds the target.
        """
        return _recovery.recover(self, steps, operator=operator, resume=resume)

    # ------------------------------------------------------------------ queue
    # Thin wrappers: the queue's shell is lupo_migrate._draining, its decisions
    # lupo_migrate._queue.

    def enqueue(
        self,
        steps: Sequence[Step],
        *,
        priority: int = 0,
        upto: StepId | None = None,
        by: str = "operator",
    ) -> QueueEntry:
        """Queue a run of the pending steps (up to *upto*) on this target.

        The plan is checked now (an unknown *upto*, a cycle or an unknown dependency is
        refused) and computed again when the entry is drained. Higher *priority* runs first;
        within one priority the older entry.

        Raises:
            UnknownTargetError: *upto* names no step.
            InvalidArgumentError: *priority* is not a whole number within +-1,000,000.
            PlanError: the steps cannot be ordered.
        """
        from lupo_migrate import _draining

        return _draining.enqueue(self, steps, priority=priority, upto=upto, by=by)

    def queue(self, *, finished: bool = False) -> list[QueueEntry]:
        """This target's queue: the running entry, then the queued ones in the order they will
        run; with *finished*, the done and cancelled ones after them (oldest first)."""
        from lupo_migrate import _draining

        return _draining.entries(self, finished=finished)

    def cancel_queued(self, entry_id: int, *, by: str = "operator") -> QueueEntry:
        """Cancel a queued entry of this target.

        Raises:
            DecisionError: the entry is running (its run cannot be stopped from the queue) or
                already ended.
            InvalidArgumentError: this target has no such entry.
        """
        from lupo_migrate import _draining

        return _draining.cancel(self, entry_id, by=by)

    def drain(
        self,
        steps: Sequence[Step],
        *,
        ephemeral: Ephemeral,
        worker: str | None = None,
        limit: int | None = None,
        wait: float = 0.0,
        lease: timedelta = timedelta(seconds=60),
        keep_going: bool = False,
    ) -> DrainReport:
        """Run this target's queued entries one at a time, by priority then age.

        One drainer per target at a time: it holds the lease ``queue:<target>`` in the
        *ephemeral* ``locks`` table (renewed while it works). Each entry is claimed with a
        compare-and-set (never twice), recorded as a job in ``job_queue`` (renewed too) and
        run with :meth:`apply`; an entry a dead worker left running is queued again first.
        Draining stops when the queue is empty, after *limit* entries, when a run does not
        complete (unless *keep_going*), or when the target cannot run now (the entry then
        keeps its place). See ``lupo_migrate._draining``.

        Args:
            steps: the migration files, as for :meth:`apply`.
            ephemeral: the ephemeral schema every drainer of this target shares.
            worker: who drains (recorded; default: this orchestrator's owner).
            limit: the most entries to run (None: all).
            wait: seconds to wait for another drainer's lease.
            lease: how long the lease and job last unless renewed.
            keep_going: go on after a run that did not complete.

        Raises:
            LockHeldError: another drainer holds the lease after *wait* seconds.
        """
        from lupo_migrate import _draining

        return _draining.drain(
            self,
            steps,
            ephemeral=ephemeral,
            worker=worker,
            limit=limit,
            wait=wait,
            lease=lease,
            keep_going=keep_going,
        )

    def _start(self, run: Run, plan: Plan, by_id: Mapping[StepId, Step]) -> Run:
        """Record a new run and drive it from its start, the run lock held."""
        self.storage.create_run(run)
        _observing.started(self, run, plan)
        run = _recovery.guarded(
            self,
            lambda: self._drive(run, sm.LockAcquired(self.owner), plan, by_id),
            run.id,
            plan,
            by_id,
        )
        _observing.run_ended(self, run)
        return run

    def accept(
        self, run_id: str, *, scope: Classification | None = None, operator: str = "operator"
    ) -> list[DecisionRecord]:
        """Keep a completed run's changes: its open decisions (of *scope*, or all, and then the
        run's own rollback material) become final now; ``purge`` drops their backups."""
        return _operations.accept(self, run_id, scope=scope, operator=operator)

    def purge(self) -> list[tuple[str, tuple[str, ...]]]:
        """Close the windows that have passed and drop the backups no open record needs.

        Returns:
            (run id, dropped backup tables) for each run whose rollback material went.
        """
        return _operations.purge(self)

    def resolve(self, *, operator: str, note: str = "") -> Run:
        """Clear the block a failed rollback left, after an operator fixed the target by hand."""
        return _operations.resolve(self, operator=operator, note=note)

    def _hold(self, stack: ExitStack) -> None:
        """Take the run lock, keep it (and the freeze) alive while the run works, and freeze
        writes. Another owner's freeze is then an orphan (only a run freezes, and a run holds
        the lock all along: its process died between the two): it is lifted, and that is
        recorded."""
        stack.enter_context(self.lock.acquire(self.owner, timeout=self.lock_timeout))
        keeper = KeepAlive(
            self.lock,
            self.freeze,
            self.owner,
            self.freeze_ttl,
            watch=functools.partial(_observing.escalate_now, self),
        )
        stack.callback(setattr, self, "_keeper", None)
        stack.enter_context(keeper.running())
        self._keeper = keeper
        orphan = self._lift_orphan_freeze()
        if orphan is not None:
            logger.warning("lifted the orphaned write freeze of %s", orphan.owner)
        keeper.freeze_writes()

    def _lift_orphan_freeze(self) -> Any:
        frozen = self.freeze.status()
        if frozen is None or frozen.owner == self.owner:
            return None
        return self.freeze.emergency_thaw(
            self.owner, f"orphaned: {frozen.owner} froze writes and died (the run lock was free)"
        )

    def _renew_freeze(self) -> None:
        """Between steps: the lock's heartbeat and the freeze's lease, when due (see
        ``_keepalive``); a lock that is gone raises ``LockError``: no further statement runs."""
        if self._keeper is not None:
            self._keeper.tick()

    def _advance(self, run: Run, event: sm.Event) -> tuple[Run, tuple[sm.Effect, ...]]:
        new, effects = sm.transition(run, event)
        self.storage.save_run(new, expected_version=run.version)  # persisted before effects
        _observing.transition(self, run, new, event)
        if self.on_event is not None:
            self.on_event(new, event)
        logger.debug("run %s: %s -> %s", run.id, type(event).__name__, new.phase.value)
        return new, effects

    def _drive(self, run: Run, first: sm.Event, plan: Plan, by_id: Mapping[StepId, Step]) -> Run:
        event: sm.Event | None = first
        while event is not None:
            try:
                run, effects = self._advance(run, event)
            except BaseException as error:
                self._finish_step(error)
                raise
            self._finish_step()
            self._renew_freeze()
            if not all(isinstance(fx, sm.ApplyStep) for fx in effects):
                self._flush()  # only consecutive steps may leave writes pending
            events = [e for e in (self._carry_out(run, fx, plan, by_id) for fx in effects) if e]
            if len(events) > 1:  # pragma: no cover - a table bug
                raise InternalError(f"effects {effects} produced several events {events}")
            event = events[0] if events else None
            if event is None and run.phase is sm.Phase.COMPLETING:
                # What keeps the run rollbackable, and the next run's drift reference, are
                # recorded before the run is: a process that dies in between leaves a run
                # that is not ended (recover rolls it back), never one that cannot be.
                _operations.keep_rollback_material(self, run)
                _checking.record_schema(self, run, when=None)
                event = sm.Completed()
        if not run.ended:  # pragma: no cover - a table bug
            raise InternalError(f"run {run.id} stopped in {run.phase.name} with no event")
        return run

    # ------------------------------------------------------------------ effects

    def _carry_out(
        self, run: Run, effect: sm.Effect, plan: Plan, by_id: Mapping[StepId, Step]
    ) -> sm.Event | None:
        now = to_stamp(self.clock.now())
        match effect:
            case sm.FreezeWrites():
                if self._keeper is not None:
                    self._keeper.freeze_writes()
            case sm.ThawWrites():
                if self._keeper is not None:
                    self._keeper.thaw()
                else:
                    self.freeze.thaw(self.owner)
            case sm.ReleaseLock():
                pass  # the lock's ``with`` block in apply() releases it on the way out
            case sm.RecordPreImages():
                return self._start_pre_images(run)
            case sm.Validate(stage=stage):
                return _checking.validate(self, run, stage, plan)
            case sm.ApplyStep(step_id=step_id):
                return self._apply_step(run, by_id[step_id], now)
            case sm.UndoStep(step_id=step_id, partial=partial):
                return self._undo_step(run, by_id[step_id], partial=partial)
            case sm.VerifyRollback():
                return self._verify_rollback(run)
            case sm.RecordHistory() | sm.RecordOutcome() | sm.RecordResolution():
                pass  # the persisted run and the ledger rows are the history
            case sm.RecordDecision(decision=decision, findings=findings):
                _operations.record_decision(self, run, decision, findings, by_id)
            case sm.RaiseAlert(level=level, message=message):
                log = logger.error if level is sm.AlertLevel.CRITICAL else logger.info
                log("%s", message)
                _observing.alert(self, run, level.value, message)  # migration_alerts, sinks
            case _:  # pragma: no cover - every effect type is matched above
                raise InternalError(f"no shell action for effect {effect!r}")
        return None

    def _start_pre_images(self, run: Run) -> sm.Event:
        """Read the fingerprint pre-images are taken from (where the target keeps them)."""
        if self._rolling is not None:
            return self._load_pre_images(run, self._rolling)
        if self._recovering is not None:  # died before it started: nothing ran
            return sm.RollbackRequested(
                Failure(kind=FailureKind.CRASH, message=f"run {run.id} died before it started")
            )
        make = getattr(self.target, "pre_images", None)
        self._pre = make(run.id) if make is not None else None
        if self._pre is not None:
            try:
                self._pre.start()
            except LupoMigrateError as error:
                self._pre = None
                failure = Failure(kind=FailureKind.STORAGE_UNREACHABLE, message=str(error))
                return sm.PreparationFailed(failure)
        return sm.Prepared()

    def _load_pre_images(self, run: Run, rolling: _Rollback) -> sm.Event:
        """An operator's rollback: the completed run's kept pre-images, restricted to what
        only the steps in scope touched."""
        self._pre, findings = self._rollback_pre_images(run, rolling)
        if findings:
            self.storage.record_findings(run.id, findings)
        label = "the whole run" if rolling.scope is None else f"class {rolling.scope.value} scope"
        failure = Failure(
            kind=FailureKind.OPERATOR_ABORT,
            message=f"{rolling.operator} rolls back {label} of run {rolling.of.id}:"
            f" {', '.join(run.applied)}",
        )
        return sm.RollbackRequested(failure, classification=rolling.scope)

    def _rollback_pre_images(self, run: Run, rolling: _Rollback) -> tuple[Any, list[Finding]]:
        """The pre-images *rolling.of* kept, for rolling back *run*'s steps (sets
        ``rolling.only``), and the warnings to record; None when it kept none."""
        make = getattr(self.target, "pre_images", None)
        pre = make(rolling.of.id) if make is not None else None
        findings: list[Finding] = []
        if pre is not None and not pre.load():
            pre = None
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    message=f"run {rolling.of.id} kept no pre-images; its steps are undone by"
                    " their down sections and derived inverses only, not verified",
                    code="rollback-unverifiable",
                )
            )
        if pre is not None and rolling.others:
            mine, theirs = pre.keys_of(run.applied), pre.keys_of(rolling.others)
            rolling.only = mine - theirs
            if mine & theirs:
                findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        message="objects steps outside the scope changed too are undone by"
                        " down sections and inverses only, not compared with their"
                        f" pre-images: {', '.join(sorted(mine & theirs))}",
                        code="rollback-unverifiable",
                    )
                )
        return pre, findings

    def _close_pre_images(self) -> None:
        """Forget the run's pre-images; backups that are still there stay (an interrupted
        run's are what ``recover`` needs)."""
        pre, self._pre = self._pre, None
        if pre is not None and pre.backups:
            logger.warning("backup tables kept: %s", ", ".join(pre.backups))

    @property
    def _restores(self) -> bool:
        """Whether this run's pre-images put objects back (not only compare them)."""
        return self._pre is not None and bool(getattr(self._pre, "restores", True))

    @property
    def _decision_log(self) -> DecisionLog | None:
        return self.storage if isinstance(self.storage, DecisionLog) else None

    def _verify_rollback(self, run: Run) -> sm.Event:
        """Compare what the run touched with its pre-images; put back what differs; record."""
        pre, self._pre = self._pre, None
        if pre is None:
            return sm.RollbackVerified()
        self._flush()
        only = None if self._rolling is None else self._rolling.only
        try:
            report = pre.restore(only)
        except LupoMigrateError as error:
            return sm.RollbackFailed(_rollback_failure(f"restoring the pre-images failed: {error}"))
        summary = (
            f"rollback compared {report.checked} touched object(s) with their pre-images;"
            f" restored {len(report.restored)}, dropped {len(report.dropped)}"
        )
        findings = [Finding(severity=Severity.INFO, message=summary, code="rollback-verified")]
        if report.checked == 0 and not pre.unknown and report.verified:
            findings = []  # nothing was touched (refused before it ran): nothing to say
        if pre.unknown:
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    message="statements with effects not known from their text ran and were"
                    f" not compared: {', '.join(sorted(set(pre.unknown)))}",
                    code="rollback-unverifiable",
                )
            )
        if not report.verified:
            lines = [str(d) for d in report.differences] + [
                f"table {name}: rows {a.rows} -> {b.rows}, checksum {a.checksum} -> {b.checksum}"
                for name, (a, b) in report.data.items()
            ]
            findings[0] = Finding(
                severity=Severity.ERROR,
                message="rollback did not restore the pre-image: " + "; ".join(lines[:20]),
                code="rollback-mismatch",
                kind=FailureKind.DATA_INTEGRITY,
            )
            self.storage.record_findings(run.id, findings)
            kept = ", ".join(pre.backups) or "none"
            message = f"{findings[0].message} (backup tables kept for a manual fix: {kept})"
            return sm.RollbackFailed(_rollback_failure(message))
        self.storage.record_findings(run.id, findings)
        if only is None:  # a partial rollback leaves material the rest may still need
            pre.drop_backups()
        return sm.RollbackVerified()

    def _context(self, run: Run, step: Step, connection: Any, *, shared: bool = False) -> _Context:
        finished = self._done.setdefault((run.id, step.id), set())
        return _Context(
            # An operator's rollback works from kept pre-images: nothing more to record.
            before=None if self._pre is None or self._rolling else self._pre.before,
            shared=shared,
            finished=finished,
            wait_bound=self.long_transaction_wait,
            storage=self.storage,
            clock=self.clock,
            target=self.target,
            root=self.root,
            run_id=run.id,
            step=step,
            target_name=self.target_name,
            files_root=self.files_root if self.files_root is not None else self.root.parent,
            observe=None if not self.observers else functools.partial(self._statement_ran, run),
            connection=connection,
            dialect=self.target.dialect,
            names=self.target.names,
            renames=self.target.renames,
        )

    def _statement_ran(self, run: Run, step_id: StepId, index: int, seconds: float) -> None:
        _observing.emit(self, run, "statement", step=step_id, index=index, seconds=seconds)

    def _apply_step(self, run: Run, step: Step, now: int) -> sm.Event:
        alive = getattr(self.lock, "alive", None)
        if alive is not None and not alive():
            # The run lock went (its connection killed): stop before anything more runs; the
            # run stays as it is, reported as dead and recoverable.
            raise LockError(
                f"run {run.id} lost its run lock before step {step.id}; nothing more ran."
                " `lupo-migrate recover` rolls it back."
            )
        handler = self.registry.lookup(step.file_type)
        if self._pre is not None:
            self._pre.step = step.id
            # A step with a down of its own needs no copy of a table over the backup limit.
            self._pre.trust_down = step.id in self._facts.get(EXPLICIT_DOWN, ())
        apart = not _transactional(handler)
        if apart:
            # Its undo records are written apart from the step's transaction: what earlier
            # steps left pending (MySQL: the run's state row too) is committed first.
            self._flush()
        scope = ExitStack()
        try:
            connection = scope.enter_context(self.target.step_session())
            shared = scope.enter_context(self._bound(connection, handler))
            handler.apply(step, self._context(run, step, connection, shared=shared))
            _checking.check_step(self, run, step, connection)
            if apart:
                # Its database writes commit before the ledger says it is applied (the
                # ledger and the run's state are written apart from them).
                scope.close()
                self._flush()
            self.storage.record_applied(
                AppliedStep(
                    step_id=step.id,
                    target=self.target_name,
                    checksum=step.checksum,
                    run_id=run.id,
                    applied_at=now,
                    path=step.path,
                    file_type=step.file_type,
                )
            )
        except ConnectionLostError as error:  # outcome unknown: see _guarded
            scope.__exit__(type(error), error, error.__traceback__)
            raise
        except (LupoMigrateError, OSError, UnicodeDecodeError) as error:
            scope.__exit__(type(error), error, error.__traceback__)  # roll the step back
            self._settle(run, step, handler)
            failure = _failure(step, error)
            if isinstance(error, _StepCheckFailed):
                failure = attrs.evolve(failure, kind=FailureKind.CRITICAL_VALIDATION, critical=True)
            return sm.StepFailed(step.id, failure)
        except BaseException as error:
            scope.__exit__(type(error), error, error.__traceback__)
            raise
        # Left open: the StepApplied transition is persisted in the same transaction, and
        # _drive commits both together before the next effect (see _finish_step).
        self._open_step = scope
        return sm.StepApplied(step.id)

    @contextlib.contextmanager
    def _bound(self, connection: Any, handler: Any) -> Iterator[bool]:
        """The storage writing through the step's connection, where it can (same database):
        its journal rows commit with the step, and SQLite's one writer is not waited for.
        Not for a handler whose work is outside the database (``transactional = False``):
        its undo records must be durable before the change they undo."""
        bind = getattr(self.storage, "bound", None)
        if bind is None or not _transactional(handler):
            yield False
        else:
            with bind(connection) as shared:
                yield bool(shared)

    def _settle(self, run: Run, step: Step, handler: Any) -> None:
        """After a failed step was rolled back: keep as done only what the database kept.

        Where DDL is transactional nothing of the step remains. On MySQL the rollback undoes
        the step's writes since the last implicit commit (its DDL commits what came before):
        the journal, written on the same connection, was rolled back with them, so a statement
        that finished and whose intent the journal still holds did persist. Its done mark may
        have been rolled back with the rest; it is written again.
        """
        done = self._done.setdefault((run.id, step.id), set())
        if not _transactional(handler):
            return  # its work (files) stays: its undo records say what to put back
        if self.target.transactional_ddl:
            done.clear()
            return
        kept = {
            entry.index: entry
            for entry in self.storage.journal(run.id)
            if entry.step_id == step.id and entry.index in done
        }
        done.intersection_update(kept)
        for entry in kept.values():
            if entry.done_at is None:
                self.storage.journal_done(entry.id, to_stamp(self.clock.now()))

    def _flush(self) -> None:
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()

    def _finish_step(self, error: BaseException | None = None) -> None:
        scope, self._open_step = self._open_step, None
        if scope is not None:
            if error is None:
                scope.close()
            else:
                scope.__exit__(type(error), error, error.__traceback__)

    def _pre_images_cover(self, step: Step) -> bool:
        """Whether verifying the rollback puts back everything *step* changed."""
        pre = self._pre
        if pre is None or pre.unknown or not pre.restores:
            return False
        only = None if self._rolling is None else self._rolling.only
        return only is None or bool(pre.keys_of([step.id]) <= only)

    def _undo_step(self, run: Run, step: Step, *, partial: bool) -> sm.Event:
        handler = self.registry.lookup(step.file_type)
        if partial:
            ran = self._done.get((run.id, step.id))
            if (self.target.transactional_ddl and _transactional(handler)) or not ran:
                # Rolled back with its transaction, or nothing of it ran: nothing to undo.
                return sm.StepRolledBack(step.id)
        try:
            with (
                self.target.step_session() as connection,
                self._bound(connection, handler) as shared,
            ):
                handler.rollback(step, self._context(run, step, connection, shared=shared))
        except ConnectionLostError:
            raise  # outcome unknown: see _guarded
        except (LupoMigrateError, OSError) as error:
            if _transactional(handler) and self._pre_images_cover(step):
                # No down section or inverse, but every object the step touched has a
                # pre-image: verifying the rollback puts them back (see _verify_rollback).
                # (Pre-images are of the database: not of files.)
                logger.info("run %s: %s is undone from pre-images (%s)", run.id, step.id, error)
                self.storage.remove_applied(self.target_name, step.id)
                return sm.StepRolledBack(step.id)
            return sm.RollbackFailed(
                Failure(
                    kind=FailureKind.DATA_INTEGRITY,
                    message=f"undoing {step.id} failed: {error}"
                    + (f" (rolling back because: {run.failure.message})" if run.failure else ""),
                    step_id=step.id,
                )
            )
        self.storage.remove_applied(self.target_name, step.id)
        return sm.StepRolledBack(step.id)


def _transactional(handler: Any) -> bool:
    """Whether a handler's work is in the step's database transaction (the default); one
    that changes files says ``transactional = False``."""
    return bool(getattr(handler, "transactional", True))


#: Seconds between two looks for the sessions holding a table (see _Context._await_holders);
#: MySQL's INNODB_TRX is refreshed only when last read over 0.1 s ago.
_LOOK: Final = 0.2
