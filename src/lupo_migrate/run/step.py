"""Carrying out one step: its handler run through a :class:`StepContext`, then recorded.

Functions of a :class:`~lupo_migrate.run.wiring.Wiring` (:mod:`lupo_migrate.run.drive` calls
:func:`apply_step` for each ``ApplyStep`` effect): the step's connection is opened and the
storage bound to it (:func:`bound`) so the journal commits with the step, the handler runs its
statements through :func:`context`, the step's checks run (:func:`check_step`), and its
ledger row is recorded. A step that fails is rolled back and what the database kept of it is
settled from the journal (:func:`settle`); ``StepFailed`` then goes back to the machine.
Undoing a step (:mod:`lupo_migrate.run.undo`) and the checks before a run
(:mod:`lupo_migrate.run.checks`) use the same context and binding.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core import state as sm
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import (
    BlockedError,
    ConnectionLostError,
    LockError,
    LupoMigrateError,
    StatementError,
)
from lupo_migrate.core.model import AppliedStep, FailureKind, Finding, Run, Severity, Step, StepId
from lupo_migrate.core.retry import lock_retry_pause
from lupo_migrate.core.validation import EFFECTS, EXPLICIT_DOWN, UNKNOWN, expected_existence
from lupo_migrate.run import facts
from lupo_migrate.run import observers as _observing
from lupo_migrate.run.context import _LOOK, HeldWhileHolding, KeptRows, StepContext
from lupo_migrate.run.shared import (
    _CHECKS_OFF,
    _failure,
    _StepCheckFailed,
    _transactional,
    pause_unless_stopped,
)
from lupo_migrate.sql.lint import STATEMENTS

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = ["apply_step", "bound", "check_step", "context", "settle", "statement_ran"]


def context(
    orch: Wiring,
    run: Run,
    step: Step,
    connection: Any,
    *,
    shared: bool = False,
    undoing: bool = False,
) -> StepContext:
    """The context *step*'s handler runs its statements through, on *connection* (None:
    only to read, as the checks before a run do); *shared*: the storage writes through it;
    *undoing*: the statements undo the step (no pre-images are taken of what they touch)."""
    finished = orch._done.setdefault((run.id, step.id), set())
    return StepContext(
        # Undoing works from the pre-images taken before the run: nothing more to record.
        before=None if orch._pre is None or orch._rolling or undoing else orch._pre.before,
        shared=shared,
        finished=finished,
        wait_bound=orch.long_transaction_wait,
        storage=orch.storage,
        clock=orch.clock,
        target=orch.target,
        root=orch.root,
        run_id=run.id,
        step=step,
        target_name=orch.target_name,
        files_root=orch.files_root if orch.files_root is not None else orch.root.parent,
        observe=None if not orch.observers else functools.partial(statement_ran, orch, run),
        connection=connection,
        apart=facts.apart(orch, step.id),
        online=str(step.meta.get("online") or orch.online).strip().lower(),
        report=functools.partial(copy_ran, orch, run, step.id),
        stopped=lambda: orch._stop,
        copy_options={
            "chunk_time": orch.copy_chunk_time,
            "most_threads": orch.copy_max_threads,
            "least_rows": orch.copy_min_rows,
            "tries": orch.lock_retries + 1,
            "backoff": orch.lock_retry_backoff,
            "replicas": tuple(orch.copy_replicas),
            "most_lag": orch.copy_max_lag,
            "executor": orch.copy_executor,
            "swap_back": orch.copy_swap_back,
        },
        dialect=orch.target.dialect,
        names=orch.target.names,
        renames=orch.target.renames,
    )


def copy_ran(orch: Wiring, run: Run, step_id: StepId, data: Mapping[str, Any]) -> None:
    """Tell the observers how an online copy of *step_id* goes (``step.copy``: ``event``
    is ``progress``, ``throttled``, ``resumed``, ``postponed``, ``cutover_retry``,
    ``cut_over``, ``tidy_failed`` or ``not_copied``; see ``sql.online_copy``)."""
    _observing.emit(orch, run, "step.copy", step=step_id, **data)


def statement_ran(
    orch: Wiring, run: Run, step_id: StepId, index: int, seconds: float, strategy: str | None
) -> None:
    """Tell the observers a statement of *step_id* finished (index, seconds taken, and on
    MySQL/MariaDB the algorithm it ran with: ``sql.online``)."""
    extra = {} if strategy is None else {"strategy": strategy}
    _observing.emit(orch, run, "statement", step=step_id, index=index, seconds=seconds, **extra)


def apply_step(orch: Wiring, run: Run, step: Step, now: int) -> sm.Event:
    """Apply *step* (see the module docstring); its ``StepApplied`` or ``StepFailed``.

    A statement that gave up waiting for a lock (the server's short lock wait) ran nothing
    and held nothing back: the step is rolled back and tried again, up to
    ``orch.lock_retries`` times, after a pause that doubles each time
    (:func:`lupo_migrate.core.retry.lock_retry_pause`); locks the step took before are
    released meanwhile, so application queries never wait longer than one lock wait. Each
    retry is an observer event (``step.lock_retry``). A stop asked meanwhile ends the
    retrying: the step fails as blocked.

    Before a DDL statement is sent, other sessions holding its table are waited for with
    the statement unsent (``long_transaction_wait``). Where the step's transaction already
    holds locks of its earlier statements (PostgreSQL), that wait would keep them: the step
    is rolled back first, the holders are waited for with nothing held (a ``step.waiting``
    event), and the step starts again.
    """
    tries = 1
    waits_until: float | None = None  # the end of the wait for holders, with nothing held
    while True:
        outcome = _try_step(orch, run, step, now)
        if isinstance(outcome, sm.StepFailed):
            _left_behind(orch, run, step)
        if not isinstance(outcome, BlockedError):
            return outcome
        if isinstance(outcome, HeldWhileHolding):
            if waits_until is None:
                waits_until = time.monotonic() + (orch.long_transaction_wait or 0.0)
            left = _await_holders(orch, run, step, outcome, waits_until)
            if left is None:
                continue  # they went: the step again, from its start
            return sm.StepFailed(step.id, _failure(step, left))
        if tries > orch.lock_retries or orch._stop is not None:
            return _gave_up(orch, run, step, outcome, tries)
        pause = lock_retry_pause(tries, orch.lock_retry_backoff, random.random())
        _observing.emit(
            orch,
            run,
            "step.lock_retry",
            step=step.id,
            index=outcome.index,
            attempt=tries,
            retries=orch.lock_retries,
            waited=outcome.waited,
            pause=round(pause, 3),
            sessions=list(outcome.sessions),
        )
        pause_unless_stopped(pause, lambda: orch._stop is not None)
        if orch._stop is not None:  # asked to stop during the pause: no further try
            return _gave_up(orch, run, step, outcome, tries)
        tries += 1


def _await_holders(
    orch: Wiring, run: Run, step: Step, held: HeldWhileHolding, until: float
) -> BlockedError | None:
    """After *step* was rolled back because sessions held a table its DDL must change while
    its earlier statements held locks (``HeldWhileHolding``): wait, holding nothing, until
    those sessions are gone (None) or *until* (monotonic) passes, or a stop is asked (the
    ``BlockedError`` to fail the step with). A ``step.waiting`` event says so first."""
    _observing.emit(
        orch,
        run,
        "step.waiting",
        step=step.id,
        index=held.index,
        tables=list(held.tables),
        sessions=list(held.sessions),
        until=max(0.0, round(until - time.monotonic(), 3)),
    )
    holders = getattr(orch.target, "holders", None)
    began = time.monotonic()
    found: tuple[str, ...] | None = held.sessions
    while found:
        if time.monotonic() >= until or orch._stop is not None:
            return BlockedError(
                step.id,
                step.path,
                sessions=found,
                waited=time.monotonic() - began,
                index=held.index,
            )
        pause_unless_stopped(
            min(_LOOK, max(0.0, until - time.monotonic())), lambda: orch._stop is not None
        )
        found = holders(list(held.tables)) if holders is not None else None
    return None


def _gave_up(orch: Wiring, run: Run, step: Step, last: BlockedError, tries: int) -> sm.Event:
    """*step* fails as blocked after *tries* tries (see :func:`apply_step`)."""
    error = BlockedError(
        step.id,
        step.path,
        sessions=last.sessions,
        waited=last.waited,
        index=last.index,
        timed_out=True,
        attempts=tries,
    )
    _left_behind(orch, run, step)
    return sm.StepFailed(step.id, _failure(step, error))


def _left_behind(orch: Wiring, run: Run, step: Step) -> None:
    """After *step* failed: what its statements left that the target could not clear (an
    invalid index of a failed ``CREATE INDEX CONCURRENTLY`` whose drop found the table still
    held) is dropped now, or recorded as a warning saying how to drop it."""
    leftovers = getattr(orch.target, "leftovers", None)
    left = leftovers() if leftovers is not None else ()
    if not left:
        return
    names = ", ".join(left)
    orch.storage.record_findings(
        run.id,
        [
            Finding(
                severity=Severity.WARNING,
                message=f"{step.id}: a failed CREATE INDEX CONCURRENTLY left the invalid"
                f" index {names}, which could not be dropped (a session still holds the"
                " table)",
                path=step.path,
                hint=f"once that session ends: DROP INDEX CONCURRENTLY IF EXISTS {left[0]}",
                code="invalid-index-left",
                step_id=step.id,
            )
        ],
    )


def _try_step(orch: Wiring, run: Run, step: Step, now: int) -> sm.Event | BlockedError:
    """One try of :func:`apply_step`; the ``BlockedError`` of a statement that timed out
    waiting for a lock once the step was rolled back (nothing of it kept but what the
    journal says committed), to be tried again."""
    alive = getattr(orch.lock, "alive", None)
    if alive is not None and not alive():
        # The run lock went (its connection killed): stop before anything more runs; the
        # run stays as it is, reported as dead and recoverable.
        raise LockError(
            f"run {run.id} lost its run lock before step {step.id}; nothing more ran."
            " `lupo-migrate recover` rolls it back."
        )
    handler = orch.registry.lookup(step.file_type)
    pre = orch._pre
    if pre is not None:
        pre.step = step.id
        # A step with a down of its own needs no copy of a table over the backup limit.
        pre.trust_down = step.id in orch._facts.get(EXPLICIT_DOWN, ())
        if not orch._planned and hasattr(pre, "plan_run"):
            # What the run's statements need kept of each table, taken at its first touch.
            pre.plan_run(sql for _sid, _path, _line, sql in orch._facts.get(STATEMENTS, ()))
            orch._planned = True
    apart = not _transactional(handler)
    if apart:
        # Its undo records are written apart from the step's transaction: what earlier
        # steps left pending (MySQL: the run's state row too) is committed first.
        orch._flush()
    scope = ExitStack()
    try:
        connection = scope.enter_context(session_for(orch, step))
        shared = scope.enter_context(bound(orch, connection, handler))
        if pre is not None and hasattr(pre, "before_step"):
            # Pre-images before the step's first statement: nothing of ours runs between two
            # of its statements (those a handler does not list are taken as they come).
            listed = facts.by_step(orch, STATEMENTS).get(step.id, ())
            pre.before_step((sql for _sid, _path, _line, sql in listed), connection)
        ctx = context(orch, run, step, connection, shared=shared)
        batch = getattr(orch.storage, "journal_finished", None)
        apart_step = facts.apart(orch, step.id)
        in_one = orch.target.transactional_ddl and not apart_step
        if (
            batch is not None
            and _transactional(handler)
            and (in_one or (shared and not apart_step))
        ):
            # The step's transaction is the record of its statements that commit nothing by
            # themselves: their journal rows are written together, in it where the storage
            # shares the step's connection (if the process dies, neither stays).
            ctx.buffer = KeptRows()
        handler.apply(step, ctx)
        ctx.write_kept()
        if pre is not None and hasattr(pre, "after_step"):
            pre.after_step(connection)
        check_step(orch, run, step, connection)
        if apart:
            # Its database writes commit before the ledger says it is applied (the
            # ledger and the run's state are written apart from them).
            scope.close()
            orch._flush()
        orch.storage.record_applied(
            AppliedStep(
                step_id=step.id,
                target=orch.target_name,
                checksum=step.checksum,
                run_id=run.id,
                applied_at=now,
                path=step.path,
                file_type=step.file_type,
            )
        )
    except ConnectionLostError as error:  # outcome unknown: see launch.guarded
        scope.__exit__(type(error), error, error.__traceback__)
        raise
    except (LupoMigrateError, OSError, UnicodeDecodeError) as error:
        scope.__exit__(type(error), error, error.__traceback__)  # roll the step back
        if isinstance(error, StatementError) and pre is not None and hasattr(pre, "rejected"):
            pre.rejected(error.statement)  # the server refused it: it ran nothing
        settle(orch, run, step, handler)
        if isinstance(error, HeldWhileHolding) or (
            isinstance(error, BlockedError) and error.timed_out and orch.lock_retries > 0
        ):
            return error
        failure = _failure(step, error)
        if isinstance(error, _StepCheckFailed):
            failure = attrs.evolve(failure, kind=FailureKind.CRITICAL_VALIDATION, critical=True)
        return sm.StepFailed(step.id, failure)
    except BaseException as error:
        scope.__exit__(type(error), error, error.__traceback__)
        raise
    # Left open: the StepApplied transition is persisted in the same transaction, and
    # drive.drive commits both together before the next effect (see finish_step).
    orch._open_step = scope
    return sm.StepApplied(step.id)


@contextlib.contextmanager
def bound(orch: Wiring, connection: Any, handler: Any) -> Iterator[bool]:
    """The storage writing through the step's connection, where it can (same database):
    its journal rows commit with the step, and SQLite's one writer is not waited for.
    Not for a handler whose work is outside the database (``transactional = False``):
    its undo records must be durable before the change they undo."""
    bind = getattr(orch.storage, "bound", None)
    if bind is None or not _transactional(handler):
        yield False
    else:
        with bind(connection) as shared:
            yield bool(shared)


def session_for(orch: Wiring, step: Step) -> Any:
    """The step's session: the target's one transaction, or, for a step that runs apart
    (PostgreSQL statements that cannot run in a transaction), a session where each
    statement commits on its own."""
    if facts.apart(orch, step.id):
        return orch.target.apart_session()  # type: ignore[attr-defined]
    return orch.target.step_session()


def settle(orch: Wiring, run: Run, step: Step, handler: Any) -> None:
    """After a failed step was rolled back: keep as done only what the database kept.

    Where DDL is transactional nothing of the step remains. On MySQL the rollback undoes
    the step's writes since the last implicit commit (its DDL commits what came before):
    the journal, written on the same connection, was rolled back with them, so a statement
    that finished and whose intent the journal still holds did persist. Its done mark may
    have been rolled back with the rest; it is written again.
    """
    done = orch._done.setdefault((run.id, step.id), set())
    if not _transactional(handler):
        return  # its work (files) stays: its undo records say what to put back
    if orch.target.transactional_ddl and not facts.apart(orch, step.id):
        done.clear()
        return
    kept = {
        entry.index: entry
        for entry in orch.storage.journal(run.id)
        if entry.step_id == step.id and entry.index in done
    }
    done.intersection_update(kept)
    for entry in kept.values():
        if entry.done_at is None:
            orch.storage.journal_done(entry.id, to_stamp(orch.clock.now()))


def check_step(orch: Wiring, run: Run, step: Step, connection: Any) -> None:
    """The during-validation of a step that ran: what its statements create, drop or
    rename is (or is not) there (looked up where several statements change one object or
    one statement's effects are unknown; a lone DDL statement that succeeded did what it
    says); and where it turned foreign key checks off, the foreign keys of the tables it
    touched still hold.

    Raises:
        _StepCheckFailed: a check failed (its findings are recorded).
    """
    mine = facts.by_step(orch, EFFECTS).get(step.id, [])
    findings: list[Finding] = []
    expected = {k: v for k, v in expected_existence(mine).items() if k[:7] != "column:"}
    exists = getattr(orch.target, "existing", None)
    # A DDL statement that succeeded had its effect; the step's net effect can differ only
    # where several of its statements change one object, or one's effects are unknown.
    changes = Counter(
        key
        for _, kind, name, action, new in mine
        if action in ("create", "drop", "rename")
        for key in (f"{kind}:{name}", *([f"{kind}:{new}"] if new else []))
    )
    unsure = step.id in facts.by_step(orch, UNKNOWN)
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
    orphans = getattr(orch.target, "orphans", None)
    rows = facts.by_step(orch, STATEMENTS).get(step.id, ())
    if orphans is not None and any(_CHECKS_OFF.search(sql) for _sid, _p, _l, sql in rows):
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
    findings += _over_budget(orch, run, step, mine, connection, unsure=unsure)
    if findings:
        orch.storage.record_findings(run.id, findings)
        raise _StepCheckFailed("; ".join(f.message for f in findings))


def _over_budget(
    orch: Wiring, run: Run, step: Step, mine: Sequence[Any], connection: Any, *, unsure: bool
) -> list[Finding]:
    """The table budget, checked after a step that creates a table (when one is set): the
    step fails when the core schema now holds more tables than the budget.

    The catalog is asked once per run, then again only when the count could be over: a
    step whose effects are all known adds at most one table per table it creates or renames
    (drops are not subtracted), so the last count plus those is a bound; a step whose
    effects are not all known, or a bound over the budget, asks again. (Counting after
    every such step cost 2-3 ms each on MariaDB with a thousand tables.)
    """
    budget = orch.table_budget
    count_tables = getattr(orch.target, "core_table_count", None)
    adds = sum(
        1 for _, kind, _, action, _ in mine if kind == "table" and action in ("create", "rename")
    )
    creates = any(kind == "table" and action == "create" for _, kind, _, action, _ in mine)
    if budget is None or count_tables is None or not creates:
        return []
    known = orch._table_bound
    if not unsure and known is not None and known[0] == run.id and known[1] + adds <= budget:
        orch._table_bound = (run.id, known[1] + adds)
        return []
    count = int(count_tables(connection))
    orch._table_bound = (run.id, count)
    if count <= budget:
        return []
    return [
        Finding(
            severity=Severity.ERROR,
            message=f"after {step.id}: the core schema has {count} tables, over the table"
            f" budget of {budget}",
            path=step.path,
            hint="drop or merge tables, or raise the budget: table_budget in lupo.toml or"
            " [tool.lupo_migrate], or --table-budget N",
            code="table-budget",
            kind=FailureKind.CRITICAL_VALIDATION,
            step_id=step.id,
        )
    ]
