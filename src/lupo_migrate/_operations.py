"""What operators do with runs that ended (shell, part of the ``Orchestrator``): the rollback
log (``decisions``), ``rollback`` of a completed run (as a whole or a decision's scope),
``accept``, ``purge``, ``resolve``; and what a completing run records for them.

Functions of the orchestrator's own state: each takes it as ``orch``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate import _checking, _driving, _undoing
from lupo_migrate import _state as sm
from lupo_migrate._clock import shown, to_stamp
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
from lupo_migrate._model import (
    Classification,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Step,
    StepId,
)
from lupo_migrate._runtime import (
    RunResult,
    _Rollback,
    inspect_step,
)
from lupo_migrate._undo_plan import CONFLICT_POLICIES, RollbackPreview, StepUndo, refusal
from lupo_migrate.errors import (
    DecisionError,
    InvalidArgumentError,
    LupoMigrateError,
    RollbackConflictError,
)
from lupo_migrate.typing import DecisionLog

if TYPE_CHECKING:
    from lupo_migrate._runner import Orchestrator

logger = logging.getLogger("lupo_migrate")


def decisions(orch: Orchestrator, run_id: str | None = None) -> list[DecisionRecord]:
    """:meth:`Orchestrator.decisions <lupo_migrate.Orchestrator.decisions>` (documented there)."""
    log = require_log(orch)
    now = to_stamp(orch.clock.now())
    runs = {r.id for r in orch.history()}
    return [
        attrs.evolve(r, status=status_at(r, now)) for r in log.decisions(run_id) if r.run_id in runs
    ]


def find_run(orch: Orchestrator, prefix: str) -> Run:
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
    orch: Orchestrator,
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
        _driving.hold(orch, stack)
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
        run = _driving.start(orch, run, plan, by_id)
        _checking.record_schema(orch, run, when=Outcome.ROLLED_BACK)
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
    orch: Orchestrator,
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


def _preview(
    orch: Orchestrator, of: Run, plan: Plan, pre: Any, only: set[str] | None
) -> RollbackPreview:
    """What rolling back *of*'s steps in *plan* would do (newest first), from its kept
    pre-images *pre* (None: none kept; then only the steps are known)."""
    undos = tuple(_step_undo(orch, step) for step in reversed(plan.steps))
    if pre is None or not getattr(pre, "sealed", False) or not hasattr(pre, "preview"):
        return RollbackPreview(run_id=of.id, steps=undos, verified=pre is not None)
    found: RollbackPreview = pre.preview(only)
    return attrs.evolve(found, run_id=of.id, steps=undos)


def _step_undo(orch: Orchestrator, step: Step) -> StepUndo:
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
    orch: Orchestrator, run_id: str, steps: Sequence[Step], scope: Classification | None
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


def answer_rolled_back(
    log: DecisionLog,
    run_id: str,
    scope: Classification | None,
    *,
    operator: str,
    at: int,
    detail: str | None = None,
) -> None:
    """The open decisions of *run_id* (those of class *scope*; None: all) read rolled back."""
    for record in log.decisions(run_id):
        if is_open(record, at) and (scope is None or record.classification is scope):
            log.decide(record.id, status=ROLLED_BACK, operator=operator, at=at, detail=detail)


def accept(
    orch: Orchestrator,
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


def purge(orch: Orchestrator) -> list[tuple[str, tuple[str, ...]]]:
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


def resolve(orch: Orchestrator, *, operator: str, note: str = "") -> Run:
    """:meth:`Orchestrator.resolve <lupo_migrate.Orchestrator.resolve>` (documented there)."""
    latest = orch.status()
    if latest is None or not latest.blocked:
        raise DecisionError(
            f"target {orch.target_name} is not blocked; there is nothing to resolve"
        )
    run, _ = _driving.advance(orch, latest, sm.Resolved(operator, note))
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


def require_log(orch: Orchestrator) -> DecisionLog:
    log = orch._decision_log
    if log is None:
        raise DecisionError(
            f"the storage {type(orch.storage).__name__} keeps no rollback log"
            " (record_decision, decide, decisions): decisions need one"
        )
    return log


def open_record(
    orch: Orchestrator, log: DecisionLog, of: Run, scope: Classification | None
) -> DecisionRecord:
    now = to_stamp(orch.clock.now())
    rows = [r for r in log.decisions(of.id) if r.classification is scope]
    if not rows:
        what = "rollback record" if scope is None else f"class {scope.value} decision"
        raise DecisionError(
            f"run {of.id} has no {what}; `lupo-migrate decisions` lists what can be rolled back"
        )
    record = rows[-1]
    if not is_open(record, now):
        raise DecisionError(closed_record(of, record, now))
    return record


def closed_record(of: Run, record: DecisionRecord, now: int) -> str:
    """Why *record* (of run *of*) allows no rollback now, in the operator's words."""
    status = status_at(record, now)
    what = "the run" if record.classification is None else f"its class {record.label} scope"
    by = f" by {record.decided_by}" if record.decided_by and record.decided_by != "window" else ""
    on = f" on {shown(record.decided_at)}" if record.decided_at else ""
    if status == ROLLED_BACK:
        return f"run {of.id}: {what} was rolled back already{by}{on}; there is nothing left to undo"
    if status == ACCEPTED:
        return (
            f"run {of.id}: {what} was kept{by}{on} (accepted), so it cannot be rolled back;"
            " write a new migration to change what it did"
        )
    if status == PURGED:
        return (
            f"run {of.id}: its rollback material was purged{on}, so it cannot be rolled back;"
            " write a new migration to change what it did"
        )
    deadline = f" on {shown(record.deadline)}" if record.deadline else ""
    return (
        f"run {of.id}: the window to roll back {what} closed{deadline}, so its changes stay;"
        " write a new migration to change them"
    )


def record_decision(
    orch: Orchestrator,
    run: Run,
    decision: Any,
    findings: Sequence[Finding],
    by_id: Mapping[StepId, Step],
) -> None:
    """A B/C/D decision: its scope's steps and its deadline go to the rollback log."""
    now = orch.clock.now()
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
    log = orch._decision_log
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
    orch._recorded.append(log.record_decision(record))


def keep_rollback_material(orch: Orchestrator, run: Run) -> None:
    """A completed run stays rollbackable: its pre-images are kept, and the rollback log
    records until when (the longest of ``keep_rollback`` and its decisions' windows)."""
    pre, orch._pre = orch._pre, None
    log = orch._decision_log
    if log is None:
        if pre is not None:
            pre.drop_backups()
        return
    recorded = list(orch._recorded)
    if orch._recovering is not None:  # resumed: the dead process may have recorded some
        recorded += log.decisions(run.id)
        if any(r.classification is None for r in recorded):
            return  # it died after keeping the material, before it completed
    if pre is not None and hasattr(pre, "seal"):
        # The rows the run changed, as it left them (writes are still frozen). The schema
        # the validation after the run read is the one the seal needs: nothing ran since
        # (and the pre-images read the connection's default schema, as the target does
        # when no core schema is named).
        same = getattr(orch.target, "core_schema", None) is None
        pre.seal(orch._after if same else None)
    kept = pre.save() if pre is not None else None
    confirm = getattr(pre, "confirm", None)
    if confirm is not None:  # the doctrine's "rollback capability confirmation", checked
        whole, what = confirm()
        orch.storage.record_findings(
            run.id,
            [
                Finding(
                    severity=Severity.INFO if whole else Severity.ERROR,
                    message=what,
                    code="rollback-capability" if whole else "rollback-material-missing",
                )
            ],
        )
    now = orch.clock.now()
    deadline = max([to_stamp(now + orch.keep_rollback)] + [r.deadline or 0 for r in recorded])
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
            window_seconds=int(orch.keep_rollback.total_seconds()),
            deadline=deadline,
            status=AVAILABLE,
            detail=f"the run can be rolled back as a whole; {where}",
        )
    )
