"""The imperative shell: the ``Orchestrator`` drives the pure state machine against real backends.

It takes the run lock, feeds events to :func:`lupo_migrate._state.transition`, **persists every
new run before** it carries out the effects, and turns each effect into I/O through injected
backends (storage, lock, freeze, clock, handlers, a target that runs statements). Each effect
that ends in a fact yields one event; after the effects of one transition are carried out the
event is fed back, until the run is back in IDLE.

The orchestrator is database-agnostic: statements reach the database through a ``Target``
(see :class:`Target`), which the SQLAlchemy extension implements.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import attrs

from lupo_migrate import _state as sm
from lupo_migrate._clock import to_stamp
from lupo_migrate._model import (
    AppliedStep,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate._names import normalise
from lupo_migrate._planner import plan as plan_steps
from lupo_migrate._registry import HandlerRegistry
from lupo_migrate._validation import (
    all_of,
    checksums_unchanged,
    dependencies_applied,
    table_budget,
)
from lupo_migrate.errors import (
    InternalError,
    LupoMigrateError,
    MigrationFileError,
    StatementError,
    StepError,
    StorageError,
    TargetBlockedError,
)
from lupo_migrate.typing import Clock, Freeze, Lock, Storage, Validator

__all__ = ["Orchestrator", "RunResult", "Target", "default_owner"]

logger = logging.getLogger("lupo_migrate")
logger.addHandler(logging.NullHandler())


class Target(Protocol):
    """Where statements run: the shell side of a database (see ``ext.sqlalchemy.target``)."""

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


@attrs.frozen(kw_only=True)
class RunResult:
    """What a call to :meth:`Orchestrator.apply` did.

    Attributes:
        run: the run as it ended (None when there was nothing to do).
        plan: the plan it ran (empty when nothing was pending).
        applied: ids of the steps applied and kept.
        findings: every finding recorded.
    """

    run: Run | None
    plan: Plan
    applied: tuple[StepId, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def nothing_to_do(self) -> bool:
        """Whether every step was applied already."""
        return self.run is None

    @property
    def outcome(self) -> Outcome | None:
        """The run's outcome, or None when nothing ran."""
        return self.run.outcome if self.run is not None else None


@attrs.define
class _Context:
    """The ``StepContext`` handed to handlers: journalled statements on the step's connection."""

    storage: Storage
    clock: Clock
    target: Target
    root: Path
    run_id: str
    step: Step
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
    #: Called with each statement before it runs (pre-images of what it touches).
    before: Callable[[str], None] | None = None

    def read_text(self, relpath: str) -> str:
        real = os.path.realpath(os.path.join(self.root, relpath))
        if not real.startswith(_real_root(self.root)):
            raise StepError(self.step.id, relpath, "path leaves the migrations root")
        with open(real, "rb") as file:
            return normalise(file.read().decode("utf-8"))

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        started = to_stamp(self.clock.now())
        # A statement that commits with its journal row gets one row, written after it ran;
        # one that may commit on its own (MySQL DDL) is announced first (write-ahead).
        if self.before is not None:
            self.before(statement)
        after = self.shared and (self.target.transactional_ddl or _in_transaction(statement))
        entry = None
        if not after:
            entry = self.storage.journal_intent(
                self.run_id, self.step.id, index, statement, started
            )
        try:
            self.target.execute(self.connection, statement)
        except StorageError:
            raise  # a journal or ledger write that travelled with the statement failed
        except Exception as exc:
            raise StatementError(
                self.step.id,
                self.step.path,
                index=index,
                line=line,
                statement=statement,
                reason=_reason(exc),
            ) from exc
        self.executed += 1
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


@functools.lru_cache(maxsize=8)
def _real_root(root: Path) -> str:
    """*root* with symbolic links resolved, ending in a separator (for prefix checks)."""
    return os.path.join(os.path.realpath(root), "")


# Statements that never commit on their own, on any database: plain DML. (MySQL commits
# before DDL, LOCK TABLES, START TRANSACTION and more; anything not listed here is treated
# as possibly committing.)
_DML = re.compile(
    r"(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*(?![!+])[\s\S]*?\*/)*"
    r"(?i:insert|update|delete|replace)\b"
)


def _in_transaction(statement: str) -> bool:
    """Whether *statement* is plain DML, which commits or rolls back with its transaction."""
    return _DML.match(statement) is not None


def _reason(exc: BaseException) -> str:
    """The database's own message, without SQLAlchemy's statement echo and links."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.split("\n[SQL:")[0].strip()


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
        freeze_ttl: how long a freeze lasts if the orchestrator dies without thawing.
        lock_timeout: seconds to wait for the run lock before ``LockHeldError``.
        owner: the lock owner (default: host, pid and a random part).
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
    # Statement indexes done, by (run, step): filled as statements finish; a resumed run
    # would load it from the journal once.
    _done: dict[tuple[str, StepId], set[int]] = attrs.field(factory=dict, init=False, repr=False)
    # The applied step's connection scope, kept open until its StepApplied is persisted.
    _open_step: ExitStack | None = attrs.field(default=None, init=False, repr=False)
    # The run's pre-images where the target keeps them (MySQL: see ext.sqlalchemy._preimage).
    _pre: Any = attrs.field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ queries

    def pending(self, steps: Sequence[Step], *, upto: StepId | None = None) -> Plan:
        """The plan of the steps not applied yet (the ledger decides)."""
        return plan_steps(steps, upto=upto, applied=tuple(self.storage.applied(self.target_name)))

    def status(self) -> Run | None:
        """The target's latest run, or None."""
        return self.storage.latest_run(self.target_name)

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
        plan = self.pending(steps, upto=upto)
        if not plan.steps:
            return RunResult(run=None, plan=plan)
        by_id = {s.id: s for s in plan.steps}
        run = Run.new(uuid.uuid4().hex, plan, target=self.target_name)
        with ExitStack() as stack:
            stack.enter_context(self.lock.acquire(self.owner, timeout=self.lock_timeout))
            stack.callback(self._flush)
            stack.callback(self._forget_pre_images)
            self.storage.create_run(run)
            run = self._drive(run, sm.LockAcquired(self.owner), plan, by_id)
        return RunResult(
            run=run,
            plan=plan,
            applied=run.applied,
            findings=tuple(self.storage.findings(run.id)),
        )

    def _advance(self, run: Run, event: sm.Event) -> tuple[Run, tuple[sm.Effect, ...]]:
        new, effects = sm.transition(run, event)
        self.storage.save_run(new, expected_version=run.version)  # persisted before effects
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
            if not all(isinstance(fx, sm.ApplyStep) for fx in effects):
                self._flush()  # only consecutive steps may leave writes pending
            events = [e for e in (self._carry_out(run, fx, plan, by_id) for fx in effects) if e]
            if len(events) > 1:  # pragma: no cover - a table bug
                raise InternalError(f"effects {effects} produced several events {events}")
            event = events[0] if events else None
            if event is None and run.phase is sm.Phase.COMPLETING:
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
                self.freeze.freeze(self.owner, ttl=self.freeze_ttl)
            case sm.ThawWrites():
                self.freeze.thaw(self.owner)
            case sm.ReleaseLock():
                pass  # the lock's ``with`` block in apply() releases it on the way out
            case sm.RecordPreImages():
                return self._start_pre_images(run)
            case sm.Validate(stage=stage):
                return self._validate(run, stage, plan)
            case sm.ApplyStep(step_id=step_id):
                return self._apply_step(run, by_id[step_id], now)
            case sm.UndoStep(step_id=step_id, partial=partial):
                return self._undo_step(run, by_id[step_id], partial=partial)
            case sm.VerifyRollback():
                return self._verify_rollback(run)
            case sm.RecordHistory() | sm.RecordOutcome() | sm.RecordResolution():
                pass  # the persisted run and the ledger rows are the history
            case sm.RecordDecision(decision=decision, findings=findings):
                logger.warning(
                    "run %s: class %s decision pending for %s (%d finding(s))",
                    run.id,
                    decision.classification.value,
                    decision.window,
                    len(findings),
                )
            case sm.RaiseAlert(level=level, message=message):
                log = logger.error if level is sm.AlertLevel.CRITICAL else logger.info
                log("%s", message)
            case _:  # pragma: no cover - every effect type is matched above
                raise InternalError(f"no shell action for effect {effect!r}")
        return None

    def _validate(self, run: Run, stage: Stage, plan: Plan) -> sm.Event:
        validators: list[Validator] = list(self.validators)
        facts: Mapping[str, Any] = {}
        if stage is Stage.PRE:
            validators[:0] = [dependencies_applied()]
            if self.table_budget is not None:
                validators.append(table_budget(self.table_budget))
        if self.table_budget is not None:
            facts = self.target.facts()
        context = ValidationContext(
            stage=stage,
            plan=plan,
            run=run,
            applied=self.storage.applied(self.target_name),
            facts=facts,
        )
        findings = tuple(all_of(*validators)(context))
        if findings:
            self.storage.record_findings(run.id, findings)
        if any(f.severity.fails for f in findings):
            return sm.ValidationFailed(stage, findings)
        return sm.ValidationPassed(stage, findings)

    def _start_pre_images(self, run: Run) -> sm.Event:
        """Read the fingerprint pre-images are taken from (where the target keeps them)."""
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

    def _forget_pre_images(self) -> None:
        """A run that ended without a rollback needs its backups no more (decisions that
        would roll a completed run back keep theirs once they are persisted)."""
        pre, self._pre = self._pre, None
        if pre is not None:
            pre.drop_backups()

    def _verify_rollback(self, run: Run) -> sm.Event:
        """Compare what the run touched with its pre-images; put back what differs; record."""
        pre, self._pre = self._pre, None
        if pre is None:
            return sm.RollbackVerified()
        self._flush()
        try:
            report = pre.restore()
        except LupoMigrateError as error:
            return sm.RollbackFailed(_rollback_failure(f"restoring the pre-images failed: {error}"))
        summary = (
            f"rollback compared {report.checked} touched object(s) with their pre-images;"
            f" restored {len(report.restored)}, dropped {len(report.dropped)}"
        )
        findings = [Finding(severity=Severity.INFO, message=summary, code="rollback-verified")]
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
        pre.drop_backups()
        return sm.RollbackVerified()

    def _context(self, run: Run, step: Step, connection: Any, *, shared: bool = False) -> _Context:
        finished = self._done.setdefault((run.id, step.id), set())
        return _Context(
            before=None if self._pre is None else self._pre.before,
            shared=shared,
            finished=finished,
            storage=self.storage,
            clock=self.clock,
            target=self.target,
            root=self.root,
            run_id=run.id,
            step=step,
            connection=connection,
            dialect=self.target.dialect,
            names=self.target.names,
            renames=self.target.renames,
        )

    def _apply_step(self, run: Run, step: Step, now: int) -> sm.Event:
        handler = self.registry.lookup(step.file_type)
        scope = ExitStack()
        try:
            connection = scope.enter_context(self.target.step_session())
            bind = getattr(self.storage, "bound", None)
            shared = bool(scope.enter_context(bind(connection))) if bind is not None else False
            handler.apply(step, self._context(run, step, connection, shared=shared))
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
        except (LupoMigrateError, OSError, UnicodeDecodeError) as error:
            scope.__exit__(type(error), error, error.__traceback__)  # roll the step back
            self._settle(run, step)
            return sm.StepFailed(step.id, _failure(step, error))
        except BaseException as error:
            scope.__exit__(type(error), error, error.__traceback__)
            raise
        # Left open: the StepApplied transition is persisted in the same transaction, and
        # _drive commits both together before the next effect (see _finish_step).
        self._open_step = scope
        return sm.StepApplied(step.id)

    def _settle(self, run: Run, step: Step) -> None:
        """After a failed step was rolled back: keep as done only what the database kept.

        Where DDL is transactional nothing of the step remains. On MySQL the rollback undoes
        the step's writes since the last implicit commit (its DDL commits what came before):
        the journal, written on the same connection, was rolled back with them, so a statement
        that finished and whose intent the journal still holds did persist. Its done mark may
        have been rolled back with the rest; it is written again.
        """
        done = self._done.setdefault((run.id, step.id), set())
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

    def _undo_step(self, run: Run, step: Step, *, partial: bool) -> sm.Event:
        if partial:
            ran = self._done.get((run.id, step.id))
            if self.target.transactional_ddl or not ran:
                # Rolled back with its transaction, or nothing of it ran: nothing to undo.
                return sm.StepRolledBack(step.id)
        handler = self.registry.lookup(step.file_type)
        try:
            with self.target.step_session() as connection:
                handler.rollback(step, self._context(run, step, connection))
        except (LupoMigrateError, OSError) as error:
            if self._pre is not None and not self._pre.unknown:
                # No down section or inverse, but every object the step touched has a
                # pre-image: verifying the rollback puts them back (see _verify_rollback).
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


def _rollback_failure(message: str) -> Failure:
    return Failure(kind=FailureKind.DATA_INTEGRITY, message=message, critical=True)


def _failure(step: Step, error: BaseException) -> Failure:
    return Failure(kind=FailureKind.STEP_FAILED_PARTWAY, message=str(error), step_id=step.id)
