"""What operators do with runs that ended (shell): the rollback log (``decisions``),
``rollback`` of a completed run (as a whole or a decision's scope) and its preview,
``accept``, ``purge``, ``resolve``. What a completing run records for them is
:mod:`lupo_migrate.run.decisions`.

Functions of a :class:`~lupo_migrate.run.wiring.Wiring` (``orch``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core import state as sm
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.decisions import ACCEPTED, FINAL, PURGED, DecisionRecord, is_open, status_at
from lupo_migrate.core.errors import (
    DecisionError,
    InvalidArgumentError,
    LupoMigrateError,
    RollbackConflictError,
)
from lupo_migrate.core.model import (
    Classification,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Step,
    StepId,
)
from lupo_migrate.core.undo_plan import CONFLICT_POLICIES, RollbackPreview, StepUndo, refusal
from lupo_migrate.run import checks, drive, launch
from lupo_migrate.run import undo as _undoing
from lupo_migrate.run.decisions import answer_rolled_back, open_record, require_log
from lupo_migrate.run.facts import inspect_step
from lupo_migrate.run.shared import RunResult, _Rollback

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

logger = logging.getLogger("lupo_migrate")


def decisions(orch: Wiring, run_id: str | None = None) -> list[DecisionRecord]:
    """:meth:`Orchestrator.decisions <lupo_migrate.Orchestrator.decisions>` (documented there)."""
    log = require_log(orch)
    now = to_stamp(orch.clock.now())
    runs = {r.id for r in orch.history()}
    return [
        attrs.evolve(r, status=status_at(r, now)) for r in log.decisions(run_id) if r.run_id in runs
    ]


def find_run(orch: Wiring, prefix: str) -> Run:
    """:meth:`Orchestrator.find_run <lupo_migrate.Orchestrator.find_run>` (documented there)."""
    runs = [r for r in orch.history() if r.id.startswith(prefix)] if prefix else []
    exact = [r for r in runs if r.id == prefix]
    if exact or len(runs) == 1:
        return (exact or runs)[0]
    if not runs:
        raise DecisionError(
            f"no run {prefix!r} on target {orch.target_name}; `lupo-migrate history` lists the runs"
        )
    raise DecisionError(
        f"{prefix!r} names {len(runs)} runs ({', '.join(r.id[:12] for r in runs[:5])});"
        " give more of the id"
    )


def rollback(
    orch: Wiring,
    run_id: str,
    steps: Sequence[Step],
    *,
    scope: Classification | None = None,
    operator: str = "operator",
    conflicts: str | None = None,
) -> RunResult:
    """:meth:`Orchestrator.rollback <lupo_migrate.Orchestrator.rollback>` (documented there)."""
    if conflicts is not None and conflicts not in CONFLICT_POLICIES:
        raise InvalidArgumentError(
            f"conflicts must be one of {', '.join(CONFLICT_POLICIES)} or None, got {conflicts!r}"
        )
    of, plan, by_id, undo, others = _rollback_plan(orch, run_id, steps, scope)
    log = require_log(orch)
    run = attrs.evolve(
        Run.new(uuid.uuid4().hex, plan, target=orch.target_name, started_by=operator),
        applied=undo,
        rolls_back=of.id,
        rolls_back_scope=scope,
    )
    with ExitStack() as stack:
        drive.hold(orch, stack)
        stack.callback(orch._flush)
        stack.callback(_undoing.close_pre_images, orch)
        stack.callback(setattr, orch, "_rolling", None)
        rolling = _Rollback(of=of, scope=scope, operator=operator, others=others)
        # Read, with writes frozen and before anything is touched, what the rollback would
        # overwrite or lose; refused unless the operator said which side wins.
        pre, findings = _undoing.rollback_pre_images(orch, run, rolling)
        preview = _preview(orch, of, plan, pre, rolling.only)
        why = refusal(preview, conflicts)
        if why is not None:
            raise RollbackConflictError(why, preview)
        if conflicts == "keep" and pre is not None and preview.conflicting:
            marked = pre.keep_conflicts(rolling.only)
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    message=f"{marked} row(s) the application changed since run {of.id} stay"
                    " as they are now (--conflicts keep): "
                    + "; ".join(str(c) for c in preview.conflicts[:20]),
                    code="rollback-conflict-kept",
                )
            )
        elif conflicts == "undo" and (preview.conflicting or preview.lost):
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    message=f"run {of.id} is undone over what was written since"
                    " (--conflicts undo): "
                    + "; ".join([str(c) for c in preview.conflicts[:20]] + list(preview.lost)),
                    code="rollback-conflict-undone",
                )
            )
        rolling.pre, rolling.findings = pre, findings
        orch._rolling = rolling
        run = launch.start(orch, run, plan, by_id)
        checks.record_schema(orch, run, when=Outcome.ROLLED_BACK)
        if run.outcome is Outcome.ROLLED_BACK:
            # A scope's rollback leaves the run's own record open: its material stays for
            # the rest of the run.
            answer_rolled_back(
                log,
                of.id,
                scope,
                operator=operator,
                at=to_stamp(orch.clock.now()),
                detail=f"by run {run.id}",
            )
    return RunResult(run=run, plan=plan, findings=tuple(orch.storage.findings(run.id)))


def preview_rollback(
    orch: Wiring,
    run_id: str,
    steps: Sequence[Step],
    *,
    scope: Classification | None = None,
) -> RollbackPreview:
    """:meth:`Orchestrator.preview_rollback <lupo_migrate.Orchestrator.preview_rollback>`
    (documented there)."""
    of, plan, _by_id, undo, others = _rollback_plan(orch, run_id, steps, scope)
    run = attrs.evolve(
        Run.new(uuid.uuid4().hex, plan, target=orch.target_name), applied=undo, rolls_back=of.id
    )
    rolling = _Rollback(of=of, scope=scope, operator="preview", others=others)
    pre, _ = _undoing.rollback_pre_images(orch, run, rolling)
    return _preview(orch, of, plan, pre, rolling.only)


def _preview(orch: Wiring, of: Run, plan: Plan, pre: Any, only: set[str] | None) -> RollbackPreview:
    """What rolling back *of*'s steps in *plan* would do (newest first), from its kept
    pre-images *pre* (None: none kept; then only the steps are known)."""
    undos = tuple(_step_undo(orch, step) for step in reversed(plan.steps))
    if pre is None or not getattr(pre, "sealed", False) or not hasattr(pre, "preview"):
        return RollbackPreview(run_id=of.id, steps=undos, verified=pre is not None)
    found: RollbackPreview = pre.preview(only)
    return attrs.evolve(found, run_id=of.id, steps=undos)


def _step_undo(orch: Wiring, step: Step) -> StepUndo:
    """How *step* is undone: its handler's inspection where it has one (doctrine)."""
    try:
        info = inspect_step(orch, step)
    except (LupoMigrateError, OSError, UnicodeDecodeError):
        return StepUndo(step.id, "handler")
    if info is None:
        return StepUndo(step.id, "handler")
    source = {
        "section": "down section",
        "twin": "down twin",
        "derived": "derived inverse",
    }.get(getattr(info, "down_source", ""), "pre-images")
    statements = tuple(getattr(s, "text", str(s)) for s in getattr(info, "down_statements", ()))
    return StepUndo(step.id, source, statements)


def _rollback_plan(
    orch: Wiring, run_id: str, steps: Sequence[Step], scope: Classification | None
) -> tuple[Run, Plan, dict[StepId, Step], tuple[StepId, ...], tuple[StepId, ...]]:
    """The completed run *run_id* names, the plan of its steps to undo, them by id, their
    ids, and the steps of the run that stay applied (outside *scope*)."""
    log = require_log(orch)
    of = find_run(orch, run_id)
    if of.outcome is not Outcome.COMPLETED:
        state = of.outcome.value if of.outcome else of.phase.value
        raise DecisionError(f"run {of.id} is {state}: only a completed run can be rolled back")
    record = open_record(orch, log, of, scope)
    ledger = orch.storage.applied(orch.target_name)
    later = [
        r.id
        for r in orch.history()[[r.id for r in orch.history()].index(of.id) + 1 :]
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
    others = tuple(s for s in mine if s not in undo)
    return of, plan, by_id, tuple(undo), others


def accept(
    orch: Wiring,
    run_id: str,
    *,
    scope: Classification | None = None,
    operator: str = "operator",
) -> list[DecisionRecord]:
    """:meth:`Orchestrator.accept <lupo_migrate.Orchestrator.accept>` (documented there)."""
    log = require_log(orch)
    of = find_run(orch, run_id)
    now = to_stamp(orch.clock.now())
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
    return [attrs.evolve(r, status=ACCEPTED, decided_by=operator, decided_at=now) for r in chosen]


def purge(orch: Wiring) -> list[tuple[str, tuple[str, ...]]]:
    """:meth:`Orchestrator.purge <lupo_migrate.Orchestrator.purge>` (documented there)."""
    log = require_log(orch)
    now = to_stamp(orch.clock.now())
    records = decisions(orch)
    for r in records:
        if r.status == FINAL and r.decided_at is None:
            log.decide(r.id, status=FINAL, operator="window", at=now)
    purged: list[tuple[str, tuple[str, ...]]] = []
    by_run: dict[str, list[DecisionRecord]] = {}
    for r in records:
        by_run.setdefault(r.run_id, []).append(r)
    drop = getattr(orch.target, "drop_backups", None)
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


def resolve(orch: Wiring, *, operator: str, note: str = "") -> Run:
    """:meth:`Orchestrator.resolve <lupo_migrate.Orchestrator.resolve>` (documented there)."""
    latest = orch.status()
    if latest is None or not latest.blocked:
        raise DecisionError(
            f"target {orch.target_name} is not blocked; there is nothing to resolve"
        )
    run, _ = drive.advance(orch, latest, sm.Resolved(operator, note))
    orch.storage.record_findings(
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
