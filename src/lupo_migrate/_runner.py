"""The imperative shell: the ``Orchestrator`` drives the pure state machine against real backends.

It takes the run lock, feeds events to :func:`lupo_migrate._state.transition`, **persists every
new run before** it carries out the effects, and turns each effect into I/O through injected
backends (storage, lock, freeze, clock, handlers, a target that runs statements). Each effect
that ends in a fact yields one event; after the effects of one transition are carried out the
event is fed back, until the run is back in IDLE.

The orchestrator is database-agnostic: statements reach the database through a ``Target``
(see ``_context``, with the context handlers run statements through), which the SQLAlchemy
extension implements.

This module holds the orchestrator's state and public API. The loop that drives a run and
carries out effects (``_driving``), carrying out one step (``_stepping``), recovering dead runs
(``_recovery``), what operators do with ended runs (``_operations``), the checks around a run
(``_checking``) and undoing steps with their pre-images (``_undoing``) live in modules of their
own, as functions of the orchestrator; ``_runtime`` holds what they share. The queue commands
are a base class (``_queue_commands``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate import _chain, _checking, _driving, _observing, _operations, _recovery, _undoing
from lupo_migrate._clock import from_stamp
from lupo_migrate._context import Target
from lupo_migrate._decisions import DecisionRecord
from lupo_migrate._keepalive import KeepAlive
from lupo_migrate._model import (
    Classification,
    Finding,
    LockInfo,
    Plan,
    Run,
    Stage,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate._observing import Watch
from lupo_migrate._planner import plan as plan_steps
from lupo_migrate._queue_commands import QueueCommands
from lupo_migrate._registry import HandlerRegistry
from lupo_migrate._runtime import RunResult, _Rollback
from lupo_migrate._undo_plan import RollbackPreview
from lupo_migrate._validation import (
    applied_files_present,
    checksums_unchanged,
    performance_probes,
)
from lupo_migrate.errors import InvalidArgumentError, MigrationFileError, TargetBlockedError
from lupo_migrate.handlers._lint import risky_statements
from lupo_migrate.typing import Clock, DecisionLog, Freeze, Lock, Storage, Validator

if TYPE_CHECKING:
    from lupo_migrate._checklist import Item as ChecklistItem
    from lupo_migrate._metrics import HistoryStats
    from lupo_migrate.alerts import AlertSink
    from lupo_migrate.observe import Event

__all__ = ["Orchestrator", "RunResult", "Target", "default_operator", "default_owner"]

logger = logging.getLogger("lupo_migrate")
logger.addHandler(logging.NullHandler())


def default_owner() -> str:
    """A lock owner naming this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def default_operator() -> str:
    """Who starts runs when nobody says: the OS user (``getpass.getuser``), or ``unknown``
    where the process has none (a container's numeric uid with no passwd entry)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


@attrs.define
class Orchestrator(QueueCommands):
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
        table_budget: the core table limit (None, the default: unchecked), checked before a
            run and after each step that creates a table.
        validators: extra validators, run before and after (they see ``context.stage``).
        freeze_ttl: how long a freeze lasts if the orchestrator dies without thawing; a run
            extends it between steps once a third of it has gone.
        lock_timeout: seconds to wait for the run lock before ``LockHeldError``.
        owner: the lock owner (default: host, pid and a random part).
        operator: who starts this orchestrator's runs, recorded with each run (``status``
            and ``history`` show it); default: the OS user.
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
        allow_irreversible: steps that may run without a guaranteed way back (the operator
            says so; recorded as a warning). Otherwise such a step refuses the run, unless
            its header says ``irreversible``.
        out_of_order: apply pending versioned files whose version is lower than the highest
            applied one (Flyway's ``outOfOrder``); otherwise ``apply`` refuses them
            (``OutOfOrderError``) before anything runs.
    """

    storage: Storage
    lock: Lock
    freeze: Freeze
    clock: Clock
    registry: HandlerRegistry
    target: Target
    root: Path
    target_name: str = "default"
    table_budget: int | None = None
    validators: Sequence[Validator] = ()
    freeze_ttl: timedelta = timedelta(hours=1)
    lock_timeout: float = 0.0
    owner: str = attrs.field(factory=default_owner)
    operator: str = attrs.field(factory=default_operator)
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
    allow_irreversible: Sequence[StepId] = ()
    out_of_order: bool = False
    # The run being watched for observers and escalation (see _observing).
    _watch: Watch | None = attrs.field(default=None, init=False, repr=False)
    # Statement indexes done, by (run, step): filled as statements finish; a resumed run
    # would load it from the journal once.
    _done: dict[tuple[str, StepId], set[int]] = attrs.field(factory=dict, init=False, repr=False)
    # The applied step's connection scope, kept open until its StepApplied is persisted.
    _open_step: ExitStack | None = attrs.field(default=None, init=False, repr=False)
    # The run's pre-images where the target keeps them (MySQL: see ext.sqlalchemy._preimage).
    _pre: Any = attrs.field(default=None, init=False, repr=False)
    # Whether the run's pre-images know what its statements need kept (see apply_step).
    _planned: bool = attrs.field(default=False, init=False, repr=False)
    # (run id, a bound on the core schema's tables) for the table budget (see _stepping).
    _table_bound: tuple[str, int] | None = attrs.field(default=None, init=False, repr=False)
    # Set while an operator's rollback of a completed run is driven (see rollback()).
    _rolling: _Rollback | None = attrs.field(default=None, init=False, repr=False)
    # The heartbeat and freeze renewals of the run being driven (see _hold()).
    _keeper: KeepAlive | None = attrs.field(default=None, init=False, repr=False)
    # Facts measured at PRE for POST, and the fingerprint POST read.
    _facts: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    _after: Any = attrs.field(default=None, init=False, repr=False)
    # Per-step indexes of the facts (see _by_step), with the rows they were built from.
    _indexes: dict[str, tuple[Any, dict[StepId, Sequence[Any]]]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    # The dead run being recovered (see recover()).
    _recovering: Run | None = attrs.field(default=None, init=False, repr=False)
    # Records of pending decisions written by the run being driven.
    _recorded: list[DecisionRecord] = attrs.field(factory=list, init=False, repr=False)
    # Why the run being driven should stop (see request_stop()); None: it goes on.
    _stop: str | None = attrs.field(default=None, init=False, repr=False)

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

    def request_stop(self, reason: str) -> None:
        """Ask the run being applied to stop cleanly: no further step starts, and the run
        rolls back to where it began (class A, an operator's abort saying *reason*), as if
        its next step had failed before its first statement. The statement running now
        finishes first. Safe to call from a signal handler or another thread; a run applied
        after this one starts afresh.

        The command line calls it on the first Ctrl-C (SIGINT) or SIGTERM of ``apply``.
        """
        self._stop = reason

    # ------------------------------------------------------------------ queries

    def pending(self, steps: Sequence[Step], *, upto: StepId | None = None) -> Plan:
        """The plan of the steps not applied yet (the ledger decides; a repeatable file
        changed since it was applied is pending again)."""
        ledger = self.storage.applied(self.target_name)
        return plan_steps(steps, upto=upto, applied=_chain.settled(steps, ledger))

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

    def missing_files(self, steps: Sequence[Step]) -> tuple[Finding, ...]:
        """WARNING findings for applied steps whose file is not among *steps* (deleted or
        moved since it was applied, or the wrong directory)."""
        context = ValidationContext(
            stage=Stage.PRE,
            plan=Plan(steps=steps),
            run=Run(id="verify", target=self.target_name),
            applied=self.storage.applied(self.target_name),
        )
        return tuple(applied_files_present()(context))

    # ------------------------------------------------------------------ commands

    def apply(self, steps: Sequence[Step], *, upto: StepId | None = None) -> RunResult:
        """Apply every pending step (up to *upto*) as one run.

        Returns:
            The result; ``nothing_to_do`` when every step is applied already (then with a
            warning among its findings when tables the last run left are gone and ``drift``
            is ``warn``).

        Raises:
            SchemaDriftError: nothing is pending, but tables the last run left are gone
                (``drift`` ``error``); nothing was applied.
            MigrationFileError: an applied file was edited (accept it or restore it first).
            TargetBlockedError: a failed rollback blocks the target until ``resolve``.
            LockHeldError: another run holds the target.
            PlanError: the steps cannot be ordered.
            OutOfOrderError: a pending versioned file is older than one applied, and
                ``out_of_order`` is off.
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
                reason=f"run {latest.id} failed and its rollback did not finish, so the"
                " target is blocked; put the database right by hand (`lupo-migrate status`"
                " and `show` tell what is left), then `lupo-migrate resolve`.",
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
                + " (its process stopped: killed, interrupted, or it lost its connection),"
                " and application writes may still be frozen; `lupo-migrate recover` rolls"
                " it back to where it began (`recover --resume` carries it on).",
            )
        plan = self.pending(steps, upto=upto)
        if not self.out_of_order:
            _chain.check_order(plan.steps, steps, self.storage.applied(self.target_name))
        if not plan.steps:
            # Nothing pending: still, the tables the last run left must be there.
            return RunResult(run=None, plan=plan, findings=_checking.check_left(self))
        by_id = {s.id: s for s in plan.steps}
        run = Run.new(uuid.uuid4().hex, plan, target=self.target_name, started_by=self.operator)
        with ExitStack() as stack:
            _driving.hold(self, stack)
            stack.callback(self._flush)
            stack.callback(_undoing.close_pre_images, self)
            self._recorded = []
            run = _driving.start(self, run, plan, by_id)
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
        conflicts: str | None = None,
    ) -> RunResult:
        """Roll back a completed run as a whole (*scope* None), or the scope of one of its
        pending decisions (B, C or D), while the window is open.

        The rollback is a run of its own (recorded in history, frozen and locked like any
        run). It undoes the run's own changes and nothing else: its steps are undone newest
        first (schema changes by their inverses), then the rows the run inserted, changed or
        deleted are put back by key from what was kept before the run; rows the application
        wrote since are kept. Before anything is touched, with writes frozen, the rows the
        run changed are compared with what is there now (see :meth:`preview_rollback`):
        a row the application changed again, or data written since into a table the run
        created, stops the rollback unless *conflicts* says which side wins.

        Args:
            conflicts: ``keep`` (the application's version of each conflicting row stays)
                or ``undo`` (the run's changes are undone anyway, and what the application
                wrote over them is lost); None: refuse when there is any.

        Raises:
            DecisionError: no such run; it did not complete; the window closed or the scope was
                decided; a later run applied steps since (roll that back first); a step's file
                is missing.
            RollbackConflictError: rows or data written since would be overwritten or lost
                (and *conflicts* is None), or what the run changed was changed again; nothing
                was touched. Its ``preview`` says what.
            LockHeldError: another run holds the target.
        """
        return _operations.rollback(
            self, run_id, steps, scope=scope, operator=operator, conflicts=conflicts
        )

    def downgrade(
        self,
        to: StepId,
        steps: Sequence[Step],
        *,
        operator: str = "operator",
        lose_data: bool = False,
    ) -> RunResult:
        """Go back to *to* at any time (Alembic's ``downgrade ID``, Sqitch's ``revert
        --to``): every applied step that *to* does not need is undone, newest first, by its
        down section, ``.down.sql`` twin or derived inverse, as a run of its own.

        Before anything runs, with writes frozen, what the downs would lose is counted (rows
        of tables they drop or empty, values of columns they drop): any of it refuses the
        downgrade unless *lose_data*. No window applies and nothing kept is needed; the
        completed runs whose steps it undoes can no longer be rolled back by their records.

        A down that fails stops the downgrade. When nothing of it stayed (its transaction
        rolled back, or none of its statements ran), the steps already undone are applied
        again by an ordinary run, and the result is a ``DowngradeResult`` whose ``again`` is
        that run: the target is where the downgrade began. Otherwise (MySQL DDL of the down
        committed before a later statement failed) the target is blocked, as a rollback that
        could not finish.

        Raises:
            DecisionError: *to* is not applied; a step to undo has no file or no way back;
                something would be lost (named, with how many rows) and *lose_data* is not
                set. Nothing was touched.
            LockHeldError: another run holds the target.
        """
        from lupo_migrate import _downgrade

        return _downgrade.downgrade(self, to, steps, operator=operator, lose_data=lose_data)

    def preview_rollback(
        self, run_id: str, steps: Sequence[Step], *, scope: Classification | None = None
    ) -> RollbackPreview:
        """What :meth:`rollback` would do, read now and touching nothing (no lock, no
        freeze): the steps undone and how, the run's rows that go back, the tables whose
        other rows stay, the conflicts, and what would be lost (``--dry-run``).

        Raises:
            DecisionError: as :meth:`rollback`.
        """
        return _operations.preview_rollback(self, run_id, steps, scope=scope)

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

    @property
    def _decision_log(self) -> DecisionLog | None:
        return self.storage if isinstance(self.storage, DecisionLog) else None

    def _flush(self) -> None:
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()
