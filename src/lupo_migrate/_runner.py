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

import contextlib
import functools
import logging
import os
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from lupo_migrate import _state as sm
from lupo_migrate._clock import from_stamp, to_stamp
from lupo_migrate._decisions import (
    ACCEPTED,
    AVAILABLE,
    FINAL,
    PURGED,
    ROLLED_BACK,
    DecisionRecord,
    is_open,
    scope_steps,
    status_at,
)
from lupo_migrate._fingerprint import Fingerprint
from lupo_migrate._keepalive import KeepAlive
from lupo_migrate._model import (
    AppliedStep,
    Classification,
    Failure,
    FailureKind,
    Finding,
    LockInfo,
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
    BEFORE,
    DATA_AFTER,
    DATA_BEFORE,
    EFFECTS,
    ESTIMATES,
    EXPLICIT_DOWN,
    FINGERPRINT,
    NO_ROLLBACK,
    PROBES_AFTER,
    PROBES_BEFORE,
    RECORDED,
    UNKNOWN,
    all_of,
    backup_limit,
    checksums_unchanged,
    declared_effects,
    dependencies_applied,
    expected_existence,
    performance_probes,
    rollback_available,
    schema_drift,
    table_budget,
    touched_keys,
    untouched_unchanged,
)
from lupo_migrate.errors import (
    BlockedError,
    ConnectionLostError,
    DecisionError,
    InternalError,
    InvalidArgumentError,
    LockError,
    LupoMigrateError,
    MigrationFileError,
    StatementError,
    StepError,
    StorageError,
    TargetBlockedError,
)
from lupo_migrate.handlers._lint import STATEMENTS, column_effects, risky_statements
from lupo_migrate.handlers._touch import touches
from lupo_migrate.typing import Clock, DecisionLog, Freeze, Lock, Storage, Validator

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
    #: Called with each statement (and the step's connection) before it runs: pre-images of
    #: what it touches.
    before: Callable[[str, Any], None] | None = None

    #: Seconds to wait for other sessions holding a table a DDL statement changes (None: do
    #: not look; the DDL's own short lock wait still bounds how long it queues).
    wait_bound: float | None = None

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
        log = self._require_log()
        now = to_stamp(self.clock.now())
        runs = {r.id for r in self.history()}
        return [
            attrs.evolve(r, status=status_at(r, now))
            for r in log.decisions(run_id)
            if r.run_id in runs
        ]

    def find_run(self, prefix: str) -> Run:
        """The target's run whose id is *prefix* or starts with it (``DecisionError`` if none
        or several)."""
        runs = [r for r in self.history() if r.id.startswith(prefix)] if prefix else []
        exact = [r for r in runs if r.id == prefix]
        if exact or len(runs) == 1:
            return (exact or runs)[0]
        if not runs:
            raise DecisionError(
                f"no run {prefix!r} on target {self.target_name}; `lupo-migrate history`"
                " lists the runs"
            )
        raise DecisionError(
            f"{prefix!r} names {len(runs)} runs ({', '.join(r.id[:12] for r in runs[:5])});"
            " give more of the id"
        )

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
        log = self._require_log()
        of = self.find_run(run_id)
        if of.outcome is not Outcome.COMPLETED:
            state = of.outcome.value if of.outcome else of.phase.value
            raise DecisionError(f"run {of.id} is {state}: only a completed run can be rolled back")
        record = self._open_record(log, of, scope)
        ledger = self.storage.applied(self.target_name)
        later = [
            r.id
            for r in self.history()[[r.id for r in self.history()].index(of.id) + 1 :]
            if any(ledger.get(s) is not None and ledger[s].run_id == r.id for s in r.applied)
        ]
        if later:
            raise DecisionError(
                f"run {later[-1]} applied steps after run {of.id}; roll it back first"
                f" (`lupo-migrate rollback {later[-1][:12]}`), then this one"
            )
        mine = [s for s in of.applied if s in ledger and ledger[s].run_id == of.id]
        undo = [s for s in record.scope if s in mine]
        if not undo:
            raise DecisionError(f"nothing of run {of.id} is applied any more: nothing to undo")
        by_id = {s.id: s for s in steps}
        missing = [s for s in undo if s not in by_id]
        if missing:
            raise DecisionError(
                f"the files of {', '.join(missing)} are not in the migrations directory;"
                " restore them to roll the run back"
            )
        plan = Plan(steps=[by_id[s] for s in undo])
        run = attrs.evolve(Run.new(uuid.uuid4().hex, plan, target=self.target_name), applied=undo)
        others = tuple(s for s in mine if s not in undo)
        with ExitStack() as stack:
            self._hold(stack)
            stack.callback(self._flush)
            stack.callback(self._close_pre_images)
            stack.callback(setattr, self, "_rolling", None)
            self._rolling = _Rollback(of=of, scope=scope, operator=operator, others=others)
            run = self._start(run, plan, by_id)
            self._record_schema(run, when=Outcome.ROLLED_BACK)
            if run.outcome is Outcome.ROLLED_BACK:
                now = to_stamp(self.clock.now())
                done = [r for r in log.decisions(of.id) if is_open(r, now)]
                if scope is not None:  # the material stays for the rest of the run
                    done = [r for r in done if r.classification is scope]
                for r in done:
                    log.decide(
                        r.id,
                        status=ROLLED_BACK,
                        operator=operator,
                        at=now,
                        detail=f"by run {run.id}",
                    )
        return RunResult(run=run, plan=plan, findings=tuple(self.storage.findings(run.id)))

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
        dead = self.crashed()
        if dead is None:
            with self.lock.acquire(self.owner, timeout=self.lock_timeout):
                orphan = self._lift_orphan_freeze()
            if orphan is not None:  # died after freezing, before its run was recorded
                return RunResult(run=None, plan=Plan())
            raise DecisionError(f"no run of target {self.target_name} died; nothing to recover")
        plan, by_id = self._plan_of(dead, steps, resume=resume)
        with ExitStack() as stack:
            self._hold(stack)  # the dead run's freeze is an orphan now
            stack.callback(self._flush)
            stack.callback(self._close_pre_images)
            run = self._guarded(
                lambda: self._take_over(dead, plan, by_id, operator=operator, resume=resume),
                dead.id,
                plan,
                by_id,
            )
        return RunResult(
            run=run,
            plan=plan,
            applied=run.applied if run.outcome is Outcome.COMPLETED else (),
            findings=tuple(self.storage.findings(run.id)),
        )

    def _take_over(
        self,
        dead: Run,
        plan: Plan,
        by_id: Mapping[StepId, Step],
        *,
        operator: str,
        resume: bool,
        note: Finding | None = None,
    ) -> Run:
        """Carry on (*resume*) or roll back a run whose process, or connection, died, with
        the run lock held: from what storage and the live schema say, not from memory."""
        self._recovering = dead
        try:
            self._done = {k: v for k, v in self._done.items() if k[0] != dead.id}
            self._reconcile(dead)
            went_on = resume or dead.phase is sm.Phase.ROLLING_BACK
            if note is None:
                note = self._recovery_note(dead, operator, went_on)
            self.storage.record_findings(dead.id, [note])
            if dead.phase is sm.Phase.IDLE:  # died before it started: start it (then undo)
                if resume:
                    self._recovering = None  # a plain start
                run = self._drive(dead, sm.LockAcquired(self.owner), plan, by_id)
            elif went_on:
                if dead.phase in (sm.Phase.PREPARING, sm.Phase.VALIDATING_PRE):
                    self._recovering = None  # nothing ran: it prepares again, as a new run
                else:
                    self._pre = self._kept_pre_images(dead, resume=resume)
                if resume and dead.phase in _RESUMED_WITH_FACTS:
                    self._facts = self._resumed_facts(plan)
                run = self._drive(dead, sm.Resumed(self.owner), plan, by_id)
            else:
                self._pre = self._kept_pre_images(dead)
                failure = Failure(kind=FailureKind.CRASH, message=note.message)
                run = self._drive(dead, sm.RollbackRequested(failure), plan, by_id)
            log = self._decision_log
            if log is not None and run.outcome is Outcome.ROLLED_BACK:
                now = to_stamp(self.clock.now())
                for record in log.decisions(dead.id):  # it died completing: records went in
                    if is_open(record, now):
                        log.decide(record.id, status=ROLLED_BACK, operator=operator, at=now)
            return run
        finally:
            self._recovering = None

    def _start(self, run: Run, plan: Plan, by_id: Mapping[StepId, Step]) -> Run:
        """Record a new run and drive it from its start, the run lock held."""
        self.storage.create_run(run)
        return self._guarded(
            lambda: self._drive(run, sm.LockAcquired(self.owner), plan, by_id),
            run.id,
            plan,
            by_id,
        )

    def _guarded(
        self,
        drive: Callable[[], Run],
        run_id: str,
        plan: Plan,
        by_id: Mapping[StepId, Step],
    ) -> Run:
        """Drive a run; when the connection drops during a statement, look at what the
        storage and the live schema say and roll the run back from there (never sending the
        statement again), on fresh connections. Up to three drops; then the run is left for
        ``recover``."""
        for attempt in range(3):
            try:
                return drive()
            except ConnectionLostError as lost:
                logger.error("run %s: %s", run_id, lost)
                discard = getattr(self.target, "discard", None)
                if discard is not None:
                    discard()
                self._pre = None
                stored = self.storage.get_run(run_id)
                if stored is None or stored.ended or attempt == 2:
                    raise
                why = Finding(
                    severity=Severity.ERROR,
                    message=f"run {run_id}: {lost}",
                    path=lost.path,
                    code="connection-lost",
                    kind=FailureKind.STEP_FAILED_PARTWAY,
                    step_id=lost.step_id,
                )
                drive = functools.partial(
                    self._take_over,
                    stored,
                    plan,
                    by_id,
                    operator="lupo_migrate",
                    resume=False,
                    note=why,
                )
        raise InternalError("unreachable")  # pragma: no cover

    def _plan_of(
        self, dead: Run, steps: Sequence[Step], *, resume: bool
    ) -> tuple[Plan, dict[StepId, Step]]:
        """The dead run's steps, from *steps*. Resuming, an applied file edited since is
        refused, and so is an in-flight file whose statements that ran read differently now
        (the journal's statement indexes must mean what they meant)."""
        by_id = {s.id: s for s in steps}
        missing = [s for s in dead.steps if s not in by_id]
        if missing:
            raise DecisionError(
                f"the files of {', '.join(missing)} are not in the migrations directory;"
                " restore them to recover the run"
            )
        plan = Plan(steps=[by_id[s] for s in dead.steps])
        if resume and dead.phase is not sm.Phase.ROLLING_BACK:
            edited = self.verify(plan.steps)
            if edited:
                raise MigrationFileError(edited)
            if dead.in_flight is not None:
                self._same_statements(dead, by_id[dead.in_flight])
        return plan, {s.id: s for s in plan.steps}

    def _same_statements(self, dead: Run, step: Step) -> None:
        listing = getattr(self.registry.lookup(step.file_type), "statements", None)
        ran = [e for e in self.storage.journal(dead.id) if e.step_id == step.id]
        if listing is None or not ran:
            return
        listed = self._listed(listing, step, _read_under(self.root, step.path, step))
        now = {stmt.index: stmt.text for stmt in listed}
        changed = sorted(e.index for e in ran if now.get(e.index) != e.statement)
        if changed:
            raise DecisionError(
                f"{step.path}: step {step.id} was edited after run {dead.id} began it"
                f" (statement {changed[0] + 1} reads differently now); it cannot be resumed."
                " Restore the file, or `lupo-migrate recover` without --resume to roll back"
            )

    @staticmethod
    def _recovery_note(dead: Run, operator: str, went_on: bool) -> Finding:
        at = f" at step {dead.in_flight}" if dead.in_flight else ""
        what = (
            "goes on rolling it back"
            if dead.phase is sm.Phase.ROLLING_BACK
            else "resumes it"
            if went_on
            else "rolls it back"
        )
        return Finding(
            severity=Severity.INFO,
            message=f"run {dead.id} died in {dead.phase.value}{at}; {operator} {what}",
            code="recovered",
        )

    def _reconcile(self, dead: Run) -> None:
        """Which of the dead run's statements ran, from its journal and the live schema."""
        told: list[Finding] = []
        for entry in self.storage.journal(dead.id):
            ran = entry.done_at is not None or self._took_effect(entry.statement)
            if entry.done_at is None:
                short = " ".join(entry.statement.split())[:120]
                told.append(
                    Finding(
                        severity=Severity.INFO,
                        message=f"statement {entry.index + 1} of {entry.step_id} was in flight"
                        f" ({short}): the live schema shows it {'ran' if ran else 'did not run'}",
                        code="in-flight",
                        step_id=entry.step_id,
                    )
                )
            if ran:
                self._done.setdefault((dead.id, entry.step_id), set()).add(entry.index)
                if entry.done_at is None:
                    self.storage.journal_done(entry.id, to_stamp(self.clock.now()))
        if told:
            self.storage.record_findings(dead.id, told)

    def _took_effect(self, statement: str) -> bool:
        """Whether a statement announced but not marked finished left its mark: what it
        creates, drops or renames is as it says. DML never does (it rolled back with its
        journal row); a statement whose effects cannot be told counts as run."""
        if _in_transaction(statement) or self.target.transactional_ddl:
            return False
        family = _family(self.target)
        effects = [
            ("?", t.kind, t.name, t.action, t.new_name) for t in touches(statement, dialect=family)
        ]
        effects += [
            ("?", "column", f"{table}.{column}", action, None if new is None else f"{table}.{new}")
            for table, action, column, new in column_effects(statement, family)
        ]
        expected = expected_existence(effects)
        exists = getattr(self.target, "existing", None)
        if not expected or exists is None:
            return True
        found = exists(sorted(expected))
        return all((key in found) == there for key, there in expected.items())

    def _kept_pre_images(self, dead: Run, *, resume: bool = False) -> Any:
        """The dead run's pre-images as it saved them, with what its journal says it touched.
        Resuming, they go on recording: what the run has not touched yet is as it was before
        the run, so it is read from the live schema (see ``PreImages.resume``)."""
        make = getattr(self.target, "pre_images", None)
        pre = make(dead.id) if make is not None else None
        if pre is None or not pre.load():
            return None
        for entry in self.storage.journal(dead.id):
            pre.note(entry.statement)
        if resume:
            pre.resume()
        return pre

    def _resumed_facts(self, plan: Plan) -> dict[str, Any]:
        """What post-validation compares, for a run resumed after its process died: the
        plan's effects again, the schema before the run from the pre-images (what the run
        has not touched is read live), and the rows of untouched tables as they are now (the
        dead run's own readings died with it). Probes are not timed: their baseline is gone."""
        facts = self._plan_effects(plan)
        fingerprint = getattr(self._pre, "fingerprint", None)
        if fingerprint is not None:
            facts[BEFORE] = fingerprint
        estimates = getattr(self.target, "row_estimates", None)
        if estimates is not None:
            touched = touched_keys(facts[EFFECTS])
            rows = estimates()
            facts[ESTIMATES] = rows
            facts[DATA_BEFORE] = self.target.table_data(  # type: ignore[attr-defined]
                sorted(
                    name
                    for name, count in rows.items()
                    if f"table:{name}" not in touched and count <= self.integrity_limit
                )
            )
        return facts

    def accept(
        self, run_id: str, *, scope: Classification | None = None, operator: str = "operator"
    ) -> list[DecisionRecord]:
        """Keep a completed run's changes: its open decisions (of *scope*, or all, and then the
        run's own rollback material) become final now; ``purge`` drops their backups."""
        log = self._require_log()
        of = self.find_run(run_id)
        now = to_stamp(self.clock.now())
        chosen = [
            r
            for r in log.decisions(of.id)
            if is_open(r, now) and (scope is None or r.classification is scope)
        ]
        if not chosen:
            what = "decision" if scope is None else f"class {scope.value} decision"
            raise DecisionError(f"run {of.id} has no open {what} to accept")
        for r in chosen:
            log.decide(r.id, status=ACCEPTED, operator=operator, at=now)
        return [
            attrs.evolve(r, status=ACCEPTED, decided_by=operator, decided_at=now) for r in chosen
        ]

    def purge(self) -> list[tuple[str, tuple[str, ...]]]:
        """Close the windows that have passed and drop the backups no open record needs.

        Returns:
            (run id, dropped backup tables) for each run whose rollback material went.
        """
        log = self._require_log()
        now = to_stamp(self.clock.now())
        records = self.decisions()
        for r in records:
            if r.status == FINAL and r.decided_at is None:
                log.decide(r.id, status=FINAL, operator="window", at=now)
        purged: list[tuple[str, tuple[str, ...]]] = []
        by_run: dict[str, list[DecisionRecord]] = {}
        for r in records:
            by_run.setdefault(r.run_id, []).append(r)
        drop = getattr(self.target, "drop_backups", None)
        for run_id, rows in by_run.items():
            if any(is_open(r, now) for r in rows):
                continue
            material = [r for r in rows if r.classification is None and r.status != PURGED]
            if not material:
                continue
            dropped = tuple(drop(run_id)) if drop is not None else ()
            for r in material:
                log.decide(
                    r.id,
                    status=PURGED,
                    operator="purge",
                    at=now,
                    detail=f"{r.detail or ''}; purged (was {r.status}):"
                    f" {', '.join(dropped) or 'no backup tables'}",
                )
            purged.append((run_id, dropped))
        return purged

    def resolve(self, *, operator: str, note: str = "") -> Run:
        """Clear the block a failed rollback left, after an operator fixed the target by hand."""
        latest = self.status()
        if latest is None or not latest.blocked:
            raise DecisionError(
                f"target {self.target_name} is not blocked; there is nothing to resolve"
            )
        run, _ = self._advance(latest, sm.Resolved(operator, note))
        self.storage.record_findings(
            run.id,
            [
                Finding(
                    severity=Severity.INFO,
                    message=f"resolved by {operator}: {note or 'no note'}",
                    code="resolved",
                )
            ],
        )
        return run

    def _require_log(self) -> DecisionLog:
        log = self._decision_log
        if log is None:
            raise DecisionError(
                f"the storage {type(self.storage).__name__} keeps no rollback log"
                " (record_decision, decide, decisions): decisions need one"
            )
        return log

    def _open_record(
        self, log: DecisionLog, of: Run, scope: Classification | None
    ) -> DecisionRecord:
        now = to_stamp(self.clock.now())
        rows = [r for r in log.decisions(of.id) if r.classification is scope]
        if not rows:
            what = "rollback record" if scope is None else f"class {scope.value} decision"
            raise DecisionError(
                f"run {of.id} has no {what}; `lupo-migrate decisions` lists what can be rolled back"
            )
        record = rows[-1]
        if not is_open(record, now):
            status = status_at(record, now)
            when = f" at {record.deadline}" if status == FINAL else ""
            by = f" by {record.decided_by}" if record.decided_by else ""
            raise DecisionError(
                f"run {of.id}: the {record.label} rollback is {status}{by}{when}; the run's"
                " changes stay. Write a new migration to change them"
            )
        return record

    def _hold(self, stack: ExitStack) -> None:
        """Take the run lock, keep it (and the freeze) alive while the run works, and freeze
        writes. Another owner's freeze is then an orphan (only a run freezes, and a run holds
        the lock all along: its process died between the two): it is lifted, and that is
        recorded."""
        stack.enter_context(self.lock.acquire(self.owner, timeout=self.lock_timeout))
        keeper = KeepAlive(self.lock, self.freeze, self.owner, self.freeze_ttl)
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
                self._keep_rollback_material(run)
                self._record_schema(run, when=None)
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
                self._record_decision(run, decision, findings, by_id)
            case sm.RaiseAlert(level=level, message=message):
                log = logger.error if level is sm.AlertLevel.CRITICAL else logger.info
                log("%s", message)
                keep = getattr(self.storage, "record_alert", None)  # migration_alerts
                if keep is not None:
                    keep(run.id, level.value, message, now)
            case _:  # pragma: no cover - every effect type is matched above
                raise InternalError(f"no shell action for effect {effect!r}")
        return None

    def _record_decision(
        self,
        run: Run,
        decision: Any,
        findings: Sequence[Finding],
        by_id: Mapping[StepId, Step],
    ) -> None:
        """A B/C/D decision: its scope's steps and its deadline go to the rollback log."""
        now = self.clock.now()
        window = decision.window or timedelta(0)
        applied = [by_id[s] for s in run.applied if s in by_id]
        scope = scope_steps(
            decision.classification, [f.step_id for f in findings if f.step_id], applied
        )
        logger.warning(
            "run %s: class %s decision pending for %s (%d finding(s)); scope: %s",
            run.id,
            decision.classification.value,
            window,
            len(findings),
            ", ".join(scope),
        )
        log = self._decision_log
        if log is None:
            return
        record = DecisionRecord(
            run_id=run.id,
            classification=decision.classification,
            scope=scope,
            recorded_at=to_stamp(now),
            window_seconds=int(window.total_seconds()),
            deadline=to_stamp(now + window),
            detail="; ".join(str(f) for f in findings)[:2000],
        )
        self._recorded.append(log.record_decision(record))

    def _validate(self, run: Run, stage: Stage, plan: Plan) -> sm.Event:
        validators: list[Validator] = list(self.validators)
        facts: dict[str, Any] = {}
        if stage is Stage.PRE:
            validators[:0] = [dependencies_applied()]
            if self.table_budget is not None:
                validators.append(table_budget(self.table_budget))
                facts.update(self.target.facts())
            limit = getattr(self.target, "backup_limit", None)
            if limit is not None and self._restores:
                validators.append(backup_limit(limit))
            validators += [
                rollback_available(),
                schema_drift(fail=self.drift == "error"),
                risky_statements(
                    forbid=self.forbid, ignore=self.lint_ignore, dialect=_family(self.target)
                ),
            ]
        else:
            validators += [
                declared_effects(),
                untouched_unchanged(),
                performance_probes(self.probe_threshold),
            ]
        try:
            facts.update(self._measure(stage, plan))
        except LupoMigrateError as error:
            failure = Finding(
                severity=Severity.ERROR,
                message=f"{stage.value}-validation could not measure the target: {error}",
                code="measure-failed",
                kind=FailureKind.CRITICAL_VALIDATION,
            )
            self.storage.record_findings(run.id, [failure])
            return sm.ValidationFailed(stage, (failure,))
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

    def _measure(self, stage: Stage, plan: Plan) -> dict[str, Any]:
        """The facts the schema, data and probe validators compare (see ``_validation``).

        PRE reads the plan's statements and what they touch, the live and the recorded
        fingerprints, the rows of the tables the plan leaves alone and the probe times; POST
        reads them again (the statements' effects are kept from PRE).
        """
        if stage is Stage.PRE:
            self._facts = self._plan_effects(plan)
            self._facts[PROBES_BEFORE] = self._time_probes()
        facts = dict(self._facts)
        if stage is Stage.POST:
            facts[PROBES_AFTER] = self._time_probes()
        read = getattr(self.target, "fingerprint", None)
        if read is None:
            return facts
        taken = getattr(self._pre, "fingerprint", None)  # read a moment ago (MySQL)
        core = getattr(self.target, "core_schema", None)
        live = taken if stage is Stage.PRE and taken is not None and core is None else read()
        if stage is Stage.PRE:
            facts[FINGERPRINT] = live
            kept = getattr(self.storage, "fingerprint", None)
            text = kept(self.target_name) if kept is not None and self.drift != "off" else None
            facts[RECORDED] = None if text is None else Fingerprint.from_json(text)
            touched = touched_keys(facts[EFFECTS])
            estimates = self.target.row_estimates()  # type: ignore[attr-defined]
            facts[ESTIMATES] = estimates
            untouched = sorted(
                name
                for name, rows in estimates.items()
                if f"table:{name}" not in touched and rows <= self.integrity_limit
            )
            facts[DATA_BEFORE] = self.target.table_data(untouched)  # type: ignore[attr-defined]
            self._facts = {**facts, BEFORE: live}
        else:
            facts[FINGERPRINT] = live
            before = facts.get(DATA_BEFORE) or {}
            facts[DATA_AFTER] = self.target.table_data(  # type: ignore[attr-defined]
                [n for n in before if f"table:{n}" in live.objects]
            )
            self._after = live
        return facts

    def _time_probes(self) -> dict[str, float | None]:
        timer = getattr(self.target, "time_query", None)
        if timer is None:
            return {}
        return {name: timer(sql) for name, sql in self.probes.items()}

    def _plan_effects(self, plan: Plan) -> dict[str, Any]:
        """The plan's statements (from handlers that can list them) and what they touch."""
        statements: list[tuple[str, str, int | None, str]] = []
        explicit: set[str] = set()
        effects: list[tuple[str, str, str, str, str | None]] = []
        unknown: list[tuple[str, str]] = []
        family = _family(self.target)
        core = self.target.names.get("core")
        no_rollback: list[tuple[str, str]] = []
        kept = self._restores  # pre-images put back what a step touched
        for step in plan.steps:
            handler = self.registry.lookup(step.file_type)
            listing = getattr(handler, "statements", None)
            if listing is None:
                if step.file_type != "documentation":
                    unknown.append((step.id, step.file_type))
                if not handler.can_rollback(step):
                    no_rollback.append((step.id, f"its {step.file_type} handler cannot undo it"))
                continue
            info = None
            try:
                text = _read_under(self.root, step.path, step)
                listed = self._listed(listing, step, text)
                inspect = getattr(handler, "inspect", None)
                if inspect is not None:
                    info = inspect(
                        step,
                        text,
                        dialect=self.target.dialect,
                        read_text=lambda rel, step=step: _read_under(self.root, rel, step),
                    )
                    if info.down_source in ("section", "twin"):
                        explicit.add(step.id)
            except (LupoMigrateError, OSError, UnicodeDecodeError):
                unknown.append((step.id, "unreadable"))  # the step itself will say why
                continue
            mine: list[str] = []
            for stmt in listed:
                statements.append((step.id, step.path, stmt.line, stmt.text))
                for touch in touches(stmt.text, dialect=family):
                    if touch.kind == "unknown":
                        unknown.append((step.id, touch.name))
                        mine.append(touch.name)
                    elif touch.schema in (None, core):
                        effects.append(
                            (step.id, touch.kind, touch.name, touch.action, touch.new_name)
                        )
                for table, action, column, new in column_effects(stmt.text, family):
                    renamed = None if new is None else f"{table}.{new}"
                    effects.append((step.id, "column", f"{table}.{column}", action, renamed))
            invertible = info.invertible if info is not None else handler.can_rollback(step)
            if not invertible and not (kept and not mine):
                why = (
                    f"statements whose effects cannot be told: {', '.join(mine)}"
                    if kept
                    else "; ".join(getattr(info, "reasons", ())) or "no down section"
                )
                no_rollback.append((step.id, why))
        return {
            NO_ROLLBACK: tuple(no_rollback),
            STATEMENTS: tuple(statements),
            EFFECTS: tuple(effects),
            UNKNOWN: tuple(unknown),
            EXPLICIT_DOWN: frozenset(explicit),
        }

    def _listed(self, listing: Callable[..., Any], step: Step, text: str) -> Any:
        """A handler's statements of *step*, rendered for this target."""
        return listing(
            step,
            text,
            dialect=self.target.dialect,
            names=self.target.names,
            renames=self.target.renames,
        )

    def _record_schema(self, run: Run, *, when: Outcome | None) -> None:
        """Keep the schema as a run that ended *when* (None: that is completing) left it: the
        next run's drift reference.

        A run that failed and rolled back leaves the reference alone: the schema is as it
        was, and a drift found before it must not become the reference by the way.
        """
        keep = getattr(self.storage, "record_fingerprint", None)
        read = getattr(self.target, "fingerprint", None)
        after, self._after = self._after, None
        if keep is None or read is None or run.outcome is not when:
            return
        if after is None:
            after = read()
        keep(self.target_name, after.to_json(), to_stamp(self.clock.now()))

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
        self._pre = pre
        if findings:
            self.storage.record_findings(run.id, findings)
        label = "the whole run" if rolling.scope is None else f"class {rolling.scope.value} scope"
        failure = Failure(
            kind=FailureKind.OPERATOR_ABORT,
            message=f"{rolling.operator} rolls back {label} of run {rolling.of.id}:"
            f" {', '.join(run.applied)}",
        )
        return sm.RollbackRequested(failure, classification=rolling.scope)

    def _close_pre_images(self) -> None:
        """Forget the run's pre-images; backups that are still there stay (an interrupted
        run's are what ``recover`` needs)."""
        pre, self._pre = self._pre, None
        if pre is not None and pre.backups:
            logger.warning("backup tables kept: %s", ", ".join(pre.backups))

    def _keep_rollback_material(self, run: Run) -> None:
        """A completed run stays rollbackable: its pre-images are kept, and the rollback log
        records until when (the longest of ``keep_rollback`` and its decisions' windows)."""
        pre, self._pre = self._pre, None
        log = self._decision_log
        if log is None:
            if pre is not None:
                pre.drop_backups()
            return
        recorded = list(self._recorded)
        if self._recovering is not None:  # resumed: the dead process may have recorded some
            recorded += log.decisions(run.id)
            if any(r.classification is None for r in recorded):
                return  # it died after keeping the material, before it completed
        kept = pre.save() if pre is not None else None
        now = self.clock.now()
        deadline = max([to_stamp(now + self.keep_rollback)] + [r.deadline or 0 for r in recorded])
        where = (
            f"pre-images and backups kept in {kept}"
            if kept is not None
            else "no pre-images (handler rollbacks only)"
        )
        log.record_decision(
            DecisionRecord(
                run_id=run.id,
                classification=None,
                scope=run.applied,
                recorded_at=to_stamp(now),
                window_seconds=int(self.keep_rollback.total_seconds()),
                deadline=deadline,
                status=AVAILABLE,
                detail=f"the run can be rolled back as a whole; {where}",
            )
        )

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
            connection=connection,
            dialect=self.target.dialect,
            names=self.target.names,
            renames=self.target.renames,
        )

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
        scope = ExitStack()
        try:
            connection = scope.enter_context(self.target.step_session())
            shared = scope.enter_context(self._bound(connection))
            handler.apply(step, self._context(run, step, connection, shared=shared))
            self._check_step(run, step, connection)
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
            self._settle(run, step)
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

    def _check_step(self, run: Run, step: Step, connection: Any) -> None:
        """The during-validation of a step that ran: what its statements create, drop or
        rename is (or is not) there (looked up where several statements change one object or
        one statement's effects are unknown; a lone DDL statement that succeeded did what it
        says); and where it turned foreign key checks off, the foreign keys of the tables it
        touched still hold.

        Raises:
            _StepCheckFailed: a check failed (its findings are recorded).
        """
        mine = self._by_step(EFFECTS).get(step.id, [])
        findings: list[Finding] = []
        expected = {k: v for k, v in expected_existence(mine).items() if k[:7] != "column:"}
        exists = getattr(self.target, "existing", None)
        # A DDL statement that succeeded had its effect; the step's net effect can differ only
        # where several of its statements change one object, or one's effects are unknown.
        changes = Counter(
            key
            for _, kind, name, action, new in mine
            if action in ("create", "drop", "rename")
            for key in (f"{kind}:{name}", *([f"{kind}:{new}"] if new else []))
        )
        unsure = step.id in self._by_step(UNKNOWN)
        if not unsure and all(count == 1 for count in changes.values()):
            expected = {}
        if expected and exists is not None:
            found = exists(sorted(expected), connection)
            for key, there in sorted(expected.items()):
                if (key in found) != there:
                    kind, _, name = key.partition(":")
                    findings.append(
                        Finding(
                            severity=Severity.ERROR,
                            message=f"after {step.id}: {kind} {name} should"
                            f" {'exist' if there else 'be gone'}, but"
                            f" {'is missing' if there else 'still exists'}",
                            path=step.path,
                            code="step-effect",
                            kind=FailureKind.CRITICAL_VALIDATION,
                            step_id=step.id,
                        )
                    )
        orphans = getattr(self.target, "orphans", None)
        texts = [sql for _sid, _p, _l, sql in self._by_step(STATEMENTS).get(step.id, [])]
        if orphans is not None and any(_CHECKS_OFF.search(sql) for sql in texts):
            tables = sorted(
                {e[2] for e in mine if e[1] == "table"}
                | {e[4] for e in mine if e[1] == "table" and e[4]}
            )
            for table, key, count in orphans(tables, connection):
                findings.append(
                    Finding(
                        severity=Severity.ERROR,
                        message=f"after {step.id}: {count} row(s) of {table} break foreign key"
                        f" {key} (the step turned foreign key checks off)",
                        path=step.path,
                        code="foreign-key-broken",
                        kind=FailureKind.DATA_INTEGRITY,
                        step_id=step.id,
                    )
                )
        if findings:
            self.storage.record_findings(run.id, findings)
            raise _StepCheckFailed("; ".join(f.message for f in findings))

    def _by_step(self, fact: str) -> dict[StepId, list[Any]]:
        """A per-step fact of the plan (rows whose first field is the step), by step: built
        once per run, not scanned once per step."""
        rows = self._facts.get(fact, ())
        cached = self._indexes.get(fact)
        if cached is not None and cached[0] is rows:
            return cached[1]
        index: dict[StepId, list[Any]] = {}
        for row in rows:
            index.setdefault(row[0], []).append(row)
        self._indexes[fact] = (rows, index)
        return index

    @contextlib.contextmanager
    def _bound(self, connection: Any) -> Iterator[bool]:
        """The storage writing through the step's connection, where it can (same database):
        its journal rows commit with the step, and SQLite's one writer is not waited for."""
        bind = getattr(self.storage, "bound", None)
        if bind is None:
            yield False
        else:
            with bind(connection) as shared:
                yield bool(shared)

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

    def _pre_images_cover(self, step: Step) -> bool:
        """Whether verifying the rollback puts back everything *step* changed."""
        pre = self._pre
        if pre is None or pre.unknown or not pre.restores:
            return False
        only = None if self._rolling is None else self._rolling.only
        return only is None or bool(pre.keys_of([step.id]) <= only)

    def _undo_step(self, run: Run, step: Step, *, partial: bool) -> sm.Event:
        if partial:
            ran = self._done.get((run.id, step.id))
            if self.target.transactional_ddl or not ran:
                # Rolled back with its transaction, or nothing of it ran: nothing to undo.
                return sm.StepRolledBack(step.id)
        handler = self.registry.lookup(step.file_type)
        try:
            with self.target.step_session() as connection, self._bound(connection) as shared:
                handler.rollback(step, self._context(run, step, connection, shared=shared))
        except ConnectionLostError:
            raise  # outcome unknown: see _guarded
        except (LupoMigrateError, OSError) as error:
            if self._pre_images_cover(step):
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


#: Seconds between two looks for the sessions holding a table (see _Context._await_holders);
#: MySQL's INNODB_TRX is refreshed only when last read over 0.1 s ago.
_LOOK: Final = 0.2

#: Phases whose resumed effect needs what the dead run measured before it migrated.
_RESUMED_WITH_FACTS: Final = frozenset(
    {sm.Phase.MIGRATING, sm.Phase.VALIDATING_POST, sm.Phase.COMPLETING}
)


class _StepCheckFailed(LupoMigrateError):
    """A step ran, but its during-validation failed."""


#: Statements that turn foreign key checks off (MySQL, SQLite, PostgreSQL's replica role).
_CHECKS_OFF = re.compile(
    r"foreign_key_checks\s*=\s*(?:0|off|false)|foreign_keys\s*=\s*(?:0|off|false|no)"
    r"|session_replication_role\s*=\s*'?replica",
    re.IGNORECASE,
)


@attrs.define
class _Rollback:
    """An operator's rollback of a completed run, while it is driven."""

    of: Run
    scope: Classification | None
    operator: str
    #: Steps of the run that stay applied (outside the scope).
    others: tuple[StepId, ...] = ()
    #: The objects whose pre-images may be put back (None: every touched object).
    only: set[str] | None = None


#: Seconds between two heartbeats of the run lock while a run works (a SQLite lease lasts 60).


def _family(target: Target) -> str:
    """The dialect family statements are written in (``mysql`` for MariaDB too)."""
    return "mysql" if target.dialect in ("mysql", "mariadb") else target.dialect


def _read_under(root: Path, relpath: str, step: Step) -> str:
    """The text of *relpath* under *root* (LF line ends, no BOM), for *step*."""
    real = os.path.realpath(os.path.join(root, relpath))
    if not real.startswith(_real_root(root)):
        raise StepError(step.id, relpath, "path leaves the migrations root")
    with open(real, "rb") as file:
        return normalise(file.read().decode("utf-8"))


def _rollback_failure(message: str) -> Failure:
    return Failure(kind=FailureKind.DATA_INTEGRITY, message=message, critical=True)


def _failure(step: Step, error: BaseException) -> Failure:
    return Failure(kind=FailureKind.STEP_FAILED_PARTWAY, message=str(error), step_id=step.id)
