"""Taking over a run whose process, or connection, died (shell): :func:`take_over` rolls it
back or, resuming, carries it on, after reconciling the statement in flight with the live
schema (:func:`reconcile`) and loading the pre-images it kept. :mod:`lupo_migrate.run.launch`
calls it: ``recover`` for a run that died, ``guarded`` in the same process when a statement's
connection drops.

Functions of a :class:`~lupo_migrate.run.wiring.Wiring` (``orch``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lupo_migrate.core import state as sm
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import DecisionError, MigrationFileError
from lupo_migrate.core.model import (
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Step,
    StepId,
)
from lupo_migrate.core.validation import (
    BEFORE,
    DATA_BEFORE,
    EFFECTS,
    ESTIMATES,
    expected_existence,
    touched_keys,
)
from lupo_migrate.run import drive
from lupo_migrate.run import undo as _undoing
from lupo_migrate.run.decisions import answer_rolled_back
from lupo_migrate.run.facts import plan_effects, statements_of
from lupo_migrate.run.shared import (
    _RESUMED_WITH_FACTS,
    _family,
    _in_transaction,
    _read_under,
    _Rollback,
)
from lupo_migrate.sql.apart import outside_transaction
from lupo_migrate.sql.lint import column_effects
from lupo_migrate.sql.touches import in_schema, touches

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

logger = logging.getLogger("lupo_migrate")


def take_over(
    orch: Wiring,
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
    orch._recovering = dead
    try:
        # A statement the dead run sent may still run on the server (MySQL goes on with it
        # after its client is gone): the schema is read once it has ended.
        await_statements = getattr(orch.target, "await_dead_statements", None)
        if await_statements is not None:
            waited = await_statements(orch.statement_wait)
            if waited >= 0.5:
                logger.warning("waited %.1f s for a statement of run %s to end", waited, dead.id)
        orch._done = {k: v for k, v in orch._done.items() if k[0] != dead.id}
        # An operator's rollback goes on as one: from the pre-images of the run it rolls
        # back, put back at the end where the undo statements leave a difference.
        orch._rolling = rollback_of(orch, dead, operator)
        reconcile(orch, dead)
        went_on = resume or dead.phase is sm.Phase.ROLLING_BACK
        settle = getattr(orch.target, "settle_online_copies", None)
        if settle is not None:
            # A copy that cut over is finished; one that had not is dropped (its table is
            # untouched), unless the run resumes it from its checkpoint.
            settled = settle(dead.id, keep=resume and dead.phase is not sm.Phase.ROLLING_BACK)
            if settled:
                logger.info("settled the online copies of %s", ", ".join(settled))
        if note is None:
            note = recovery_note(dead, operator, went_on)
        orch.storage.record_findings(dead.id, [note])
        if dead.phase is sm.Phase.IDLE:  # died before it started: start it (then undo)
            if resume:
                orch._recovering = None  # a plain start
            run = drive.drive(orch, dead, sm.LockAcquired(orch.owner), plan, by_id)
        elif went_on:
            if dead.phase in (sm.Phase.PREPARING, sm.Phase.VALIDATING_PRE):
                orch._recovering = None  # nothing ran: it prepares again, as a new run
            else:
                orch._pre = kept_pre_images(orch, dead, resume=resume)
            if resume and dead.phase in _RESUMED_WITH_FACTS:
                orch._facts = resumed_facts(orch, plan)
            run = drive.drive(orch, dead, sm.Resumed(orch.owner), plan, by_id)
        else:
            orch._pre = kept_pre_images(orch, dead)
            failure = Failure(kind=FailureKind.CRASH, message=note.message)
            run = drive.drive(orch, dead, sm.RollbackRequested(failure), plan, by_id)
        if run.outcome is Outcome.ROLLED_BACK:
            _answer_decisions(orch, dead, operator)
        return run
    finally:
        orch._recovering = None
        orch._rolling = None


def rollback_of(orch: Wiring, dead: Run, operator: str) -> _Rollback | None:
    """What an operator's rollback (*dead*) was doing: the run it rolls back, the scope, the
    steps of that run it leaves applied; None for any other run (or when that run is gone)."""
    if dead.rolls_back is None:
        return None
    of = orch.storage.get_run(dead.rolls_back)
    if of is None:
        return None
    ledger = orch.storage.applied(orch.target_name)
    others = tuple(
        s for s in of.applied if s not in dead.steps and s in ledger and ledger[s].run_id == of.id
    )
    return _Rollback(of=of, scope=dead.rolls_back_scope, operator=operator, others=others)


def _answer_decisions(orch: Wiring, dead: Run, operator: str) -> None:
    """A recovered run was rolled back: its own open decisions (it died completing: they
    went in) and, for an operator's rollback, those of the run it rolled back (of its
    scope) read rolled back, as when the rollback ends in its own process."""
    log = orch._decision_log
    if log is None:
        return
    now = to_stamp(orch.clock.now())
    answer_rolled_back(log, dead.id, None, operator=operator, at=now)
    if dead.rolls_back is not None:
        answer_rolled_back(
            log,
            dead.rolls_back,
            dead.rolls_back_scope,
            operator=operator,
            at=now,
            detail=f"by run {dead.id} (finished by recover)",
        )


def plan_of(
    orch: Wiring, dead: Run, steps: Sequence[Step], *, resume: bool
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
        edited = orch.verify(plan.steps)
        if edited:
            raise MigrationFileError(edited)
        if dead.in_flight is not None:
            same_statements(orch, dead, by_id[dead.in_flight])
    return plan, {s.id: s for s in plan.steps}


def same_statements(orch: Wiring, dead: Run, step: Step) -> None:
    listing = getattr(orch.registry.lookup(step.file_type), "statements", None)
    ran = [e for e in orch.storage.journal(dead.id) if e.step_id == step.id]
    if listing is None or not ran:
        return
    listed = statements_of(orch, listing, step, _read_under(orch.root, step.path, step))
    now = {stmt.index: stmt.text for stmt in listed}
    changed = sorted(e.index for e in ran if now.get(e.index) != e.statement)
    if changed:
        raise DecisionError(
            f"{step.path}: step {step.id} was edited after run {dead.id} began it"
            f" (statement {changed[0] + 1} reads differently now); it cannot be resumed."
            " Restore the file, or `lupo-migrate recover` without --resume to roll back"
        )


def recovery_note(dead: Run, operator: str, went_on: bool) -> Finding:
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


def reconcile(orch: Wiring, dead: Run) -> None:
    """Which of the dead run's statements ran, from its journal and the live schema."""
    told: list[Finding] = []
    for entry in orch.storage.journal(dead.id):
        ran = entry.done_at is not None or took_effect(orch, entry.statement, dead.id)
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
            orch._done.setdefault((dead.id, entry.step_id), set()).add(entry.index)
            if entry.done_at is None:
                orch.storage.journal_done(entry.id, to_stamp(orch.clock.now()))
    if told:
        orch.storage.record_findings(dead.id, told)


def took_effect(orch: Wiring, statement: str, run_id: str | None = None) -> bool:
    """Whether a statement announced but not marked finished left its mark: what it
    creates, drops or renames is as it says. DML never does (it rolled back with its
    journal row); a statement whose effects cannot be told counts as run. One that run
    *run_id* was doing by an online copy ran once the copy cut over."""
    family = _family(orch.target)
    copy_state = getattr(orch.target, "online_copy_state", None)
    if copy_state is not None and run_id is not None:
        where = copy_state(run_id, statement)
        if where is not None:
            return bool(where == "cut over")
    if _in_transaction(statement):
        return False
    if orch.target.transactional_ddl and not outside_transaction(statement, family):
        return False  # it rolled back with its step's transaction
    core = orch.target.names.get("core")
    effects = [
        ("?", t.kind, t.name, t.action, t.new_name)
        for t in in_schema(touches(statement, dialect=family), core)
    ]
    effects += [
        ("?", "column", f"{table}.{column}", action, None if new is None else f"{table}.{new}")
        for table, action, column, new in column_effects(statement, family)
    ]
    expected = expected_existence(effects)
    exists = getattr(orch.target, "existing", None)
    if not expected or exists is None:
        return True
    found = exists(sorted(expected))
    return all((key in found) == there for key, there in expected.items())


def kept_pre_images(orch: Wiring, dead: Run, *, resume: bool = False) -> Any:
    """The dead run's pre-images as it saved them, with what its journal says it touched.
    Resuming, they go on recording: what the run has not touched yet is as it was before
    the run, so it is read from the live schema (see ``PreImages.resume``)."""
    if orch._rolling is not None:  # an operator's rollback: its run's, as it started from
        return _undoing.rollback_pre_images(orch, dead, orch._rolling)[0]
    make = getattr(orch.target, "pre_images", None)
    pre = make(dead.id) if make is not None else None
    orch._planned = False
    if pre is None or not pre.load():
        return None
    forget = getattr(pre, "forget_names", None)
    if forget is not None:
        forget()  # followed again below, from what ran only
    for entry in orch.storage.journal(dead.id):
        # Only what ran: a statement of a step whose transaction died with the process
        # (SQLite, PostgreSQL) changed nothing, and makes nothing "touched".
        if entry.index in orch._done.get((dead.id, entry.step_id), ()):
            pre.step = entry.step_id
            pre.note(entry.statement)
    if resume:
        pre.resume()
    return pre


def resumed_facts(orch: Wiring, plan: Plan) -> dict[str, Any]:
    """What post-validation compares, for a run resumed after its process died: the
    plan's effects again, the schema before the run from the pre-images (what the run
    has not touched is read live), and the rows of untouched tables as they are now (the
    dead run's own readings died with it). Probes are not timed: their baseline is gone."""
    facts = plan_effects(orch, plan)
    fingerprint = getattr(orch._pre, "fingerprint", None)
    if fingerprint is not None:
        facts[BEFORE] = fingerprint
    estimates = getattr(orch.target, "row_estimates", None)
    if estimates is not None:
        touched = touched_keys(facts[EFFECTS])
        rows = estimates()
        facts[ESTIMATES] = rows
        facts[DATA_BEFORE] = orch.target.table_data(  # type: ignore[attr-defined]
            sorted(
                name
                for name, count in rows.items()
                if f"table:{name}" not in touched and count <= orch.integrity_limit
            )
        )
    return facts
