"""The imperative shell: the ``Orchestrator`` drives the pure state machine against real backends.

It takes the run lock, feeds events to :func:`lupo_migrate.core.state.transition`, **persists every
new run before** it carries out the effects, and turns each effect into I/O through injected
backends (storage, lock, freeze, clock, handlers, a target that runs statements). Each effect
that ends in a fact yields one event; after the effects of one transition are carried out the
event is fed back, until the run is back in IDLE.

The orchestrator is database-agnostic: statements reach the database through a ``Target``
(:mod:`lupo_migrate.core.ports`), which the SQLAlchemy backend implements.

This module holds the public commands. What the orchestrator is made of (its collaborators,
settings, the state of the run being driven, the read-only queries) is its base class
:class:`~lupo_migrate.run.wiring.Wiring`; the commands call down to the parts of
:mod:`lupo_migrate.run`, each a function of a ``Wiring``: starting and recovering runs
(``run.launch``), the loop that carries out effects (``run.drive``), one step (``run.step``),
the checks around a run (``run.checks``), undoing with pre-images (``run.undo``), what
operators do with ended runs (``run.operations``), downgrades (``run.downgrade``) and the
queue (``run.queue``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from lupo_migrate.core import chain
from lupo_migrate.core.decisions import DecisionRecord
from lupo_migrate.core.errors import MigrationFileError, TargetBlockedError
from lupo_migrate.core.model import Classification, Run, Step, StepId
from lupo_migrate.core.ports import Target
from lupo_migrate.core.undo_plan import RollbackPreview
from lupo_migrate.run import checks as _checking
from lupo_migrate.run import drive, launch, operations
from lupo_migrate.run import observers as _observing
from lupo_migrate.run import undo as _undoing
from lupo_migrate.run.shared import RunResult
from lupo_migrate.run.wiring import Wiring, default_operator, default_owner

if TYPE_CHECKING:
    from lupo_migrate.core.checklist import Item as ChecklistItem
    from lupo_migrate.core.history_stats import HistoryStats
    from lupo_migrate.core.ports import Ephemeral
    from lupo_migrate.core.queue import QueueEntry
    from lupo_migrate.run.queue import DrainReport

__all__ = ["Orchestrator", "RunResult", "Target", "default_operator", "default_owner"]

logger = logging.getLogger("lupo_migrate")
logger.addHandler(logging.NullHandler())


@attrs.define
class Orchestrator(Wiring):
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
        lock_retries: times a step is tried again after one of its statements gave up
            waiting for a lock (the target's short lock wait); it is rolled back first, so
            nothing waits behind it meanwhile. 0: the step fails at once (``BlockedError``).
        lock_retry_backoff: seconds paused before the first retry; doubled for each next
            one (at most 30 s), stretched by up to a quarter at random.
        online: how MySQL/MariaDB ``ALTER TABLE`` and ``CREATE INDEX`` are sent (see
            :mod:`lupo_migrate.sql.online`): ``auto`` (``ALGORITHM=INSTANT``, else
            ``INPLACE, LOCK=NONE``, else an online copy of a table of ``copy_min_rows`` or
            more, else as written), ``inplace`` (never blocking writes: refused otherwise),
            ``instant``, ``copy`` (always an online copy: :mod:`lupo_migrate.sql.online_copy`)
            or ``off``. A file's ``-- online:`` header wins.
        copy_chunk_time: seconds each chunk of an online copy should take (a chunk commits
            with the copy's checkpoint: a copy killed loses at most the one under way).
        copy_max_threads: an online copy waits while the server's ``Threads_running`` is
            above this (0: never).
        copy_min_rows: in ``auto``, a table with fewer rows (the catalog's estimate) is
            altered as written rather than copied online.
        copy_replicas: URLs of replicas an online copy watches: it waits before each chunk
            while one lags more than ``copy_max_lag`` seconds, or does not replicate.
        copy_max_lag: see ``copy_replicas``.
        copy_executor: what makes an online copy: ``lupo`` (lupo_migrate's own) or
            ``pt-online-schema-change`` (Percona's tool, when installed: see
            :mod:`lupo_migrate.sql.pt_osc`).
        copy_swap_back: after lupo_migrate's own copy cuts over, keep the old table current
            (triggers on the table write each change into it too, for the decision window),
            so that rolling the step back swaps the old table back at once, every row
            written since carried over, instead of copying the table again (see
            :mod:`lupo_migrate.sql.online_copy`). Off by default: the triggers stay on the
            table until the run's backups are purged.
        statement_wait: seconds recovery waits for a statement a dead run left running on
            the server (MySQL/MariaDB) before it reads the schema.
        files_root: the directory agent-file and documentation steps change (default: the
            migrations directory's parent).
        observers: called with every :class:`lupo_migrate.observe.Event` of a run (a
            :class:`lupo_migrate.observe.Metrics`, say); one that raises is left out.
        alert_sinks: where alerts go besides ``migration_alerts`` (see
            :mod:`lupo_migrate.observe.alerts`); escalation alerts a run slower than its history.
        allow_irreversible: steps that may run without a guaranteed way back (the operator
            says so; recorded as a warning). Otherwise such a step refuses the run, unless
            its header says ``irreversible``.
        out_of_order: apply pending versioned files whose version is lower than the highest
            applied one (Flyway's ``outOfOrder``); otherwise ``apply`` refuses them
            (``OutOfOrderError``) before anything runs.
    """

    def request_stop(self, reason: str) -> None:
        """Ask the run being applied to stop cleanly: no further step starts, and the run
        rolls back to where it began (class A, an operator's abort saying *reason*), as if
        its next step had failed before its first statement. The statement running now
        finishes first. Safe to call from a signal handler or another thread; a run applied
        after this one starts afresh.

        The command line calls it on the first Ctrl-C (SIGINT) or SIGTERM of ``apply``.
        """
        self._stop = reason

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
            chain.check_order(plan.steps, steps, self.storage.applied(self.target_name))
        if not plan.steps:
            # Nothing pending: still, the tables the last run left must be there.
            return RunResult(run=None, plan=plan, findings=_checking.check_left(self))
        by_id = {s.id: s for s in plan.steps}
        run = Run.new(uuid.uuid4().hex, plan, target=self.target_name, started_by=self.operator)
        with ExitStack() as stack:
            drive.hold(self, stack)
            stack.callback(self._flush)
            stack.callback(_undoing.close_pre_images, self)
            self._recorded = []
            run = launch.start(self, run, plan, by_id)
        return RunResult(
            run=run,
            plan=plan,
            applied=run.applied,
            findings=tuple(self.storage.findings(run.id)),
        )

    # ------------------------------------------------------------------ decisions

    def decisions(self, run_id: str | None = None) -> list[DecisionRecord]:
        """The rollback log of this target (or of one run), oldest first; the stored status
        of a record past its deadline reads ``final`` (see ``core.decisions.status_at``)."""
        return operations.decisions(self, run_id)

    def checklist(self, run_id: str) -> tuple[ChecklistItem, ...]:
        """The doctrine's execution checklist (pre, during, post) of a run, each item ticked
        from what was recorded (see ``lupo_migrate.core.checklist``).

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
        return operations.find_run(self, prefix)

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
        return operations.rollback(
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
        from lupo_migrate.run import downgrade as _downgrade

        return _downgrade.downgrade(
            self, to, steps, apply=self.apply, operator=operator, lose_data=lose_data
        )

    def preview_rollback(
        self, run_id: str, steps: Sequence[Step], *, scope: Classification | None = None
    ) -> RollbackPreview:
        """What :meth:`rollback` would do, read now and touching nothing (no lock, no
        freeze): the steps undone and how, the run's rows that go back, the tables whose
        other rows stay, the conflicts, and what would be lost (``--dry-run``).

        Raises:
            DecisionError: as :meth:`rollback`.
        """
        return operations.preview_rollback(self, run_id, steps, scope=scope)

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
        return launch.recover(self, steps, operator=operator, resume=resume)

    def accept(
        self, run_id: str, *, scope: Classification | None = None, operator: str = "operator"
    ) -> list[DecisionRecord]:
        """Keep a completed run's changes: its open decisions (of *scope*, or all, and then the
        run's own rollback material) become final now; ``purge`` drops their backups."""
        return operations.accept(self, run_id, scope=scope, operator=operator)

    def purge(self) -> list[tuple[str, tuple[str, ...]]]:
        """Close the windows that have passed and drop the backups no open record needs.

        Returns:
            (run id, dropped backup tables) for each run whose rollback material went.
        """
        return operations.purge(self)

    def resolve(self, *, operator: str, note: str = "") -> Run:
        """Clear the block a failed rollback left, after an operator fixed the target by hand."""
        return operations.resolve(self, operator=operator, note=note)

    # ------------------------------------------------------------------ the run queue

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
        from lupo_migrate.run import queue as _draining

        return _draining.enqueue(self, steps, priority=priority, upto=upto, by=by)

    def queue(self, *, finished: bool = False) -> list[QueueEntry]:
        """This target's queue: the running entry, then the queued ones in the order they will
        run; with *finished*, the done and cancelled ones after them (oldest first)."""
        from lupo_migrate.run import queue as _draining

        return _draining.entries(self, finished=finished)

    def cancel_queued(self, entry_id: int, *, by: str = "operator") -> QueueEntry:
        """Cancel a queued entry of this target.

        Raises:
            DecisionError: the entry is running (its run cannot be stopped from the queue) or
                already ended.
            InvalidArgumentError: this target has no such entry.
        """
        from lupo_migrate.run import queue as _draining

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
        keeps its place). See ``lupo_migrate.run.queue``.

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
        from lupo_migrate.run import queue as _draining

        return _draining.drain(
            self,
            steps,
            apply=self.apply,
            ephemeral=ephemeral,
            worker=worker,
            limit=limit,
            wait=wait,
            lease=lease,
            keep_going=keep_going,
        )
