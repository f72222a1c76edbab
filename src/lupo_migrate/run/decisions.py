"""Recording the decisions a run leaves (imperative shell): the rollback log's records with
their windows (class B, C, D), the material that keeps a completed run rollbackable, and the
answers when a run is rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lupo_migrate.core.clock import shown, to_stamp
from lupo_migrate.core.decisions import (
    ACCEPTED,
    AVAILABLE,
    PURGED,
    ROLLED_BACK,
    DecisionRecord,
    is_open,
    scope_steps,
    status_at,
)
from lupo_migrate.core.errors import DecisionError
from lupo_migrate.core.model import Classification, Finding, Run, Severity, Step, StepId
from lupo_migrate.core.ports import DecisionLog

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = [
    "answer_rolled_back",
    "closed_record",
    "keep_rollback_material",
    "open_record",
    "record_decision",
    "require_log",
]

logger = logging.getLogger("lupo_migrate")


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


def require_log(orch: Wiring) -> DecisionLog:
    log = orch._decision_log
    if log is None:
        raise DecisionError(
            f"the storage {type(orch.storage).__name__} keeps no rollback log"
            " (record_decision, decide, decisions): decisions need one"
        )
    return log


def open_record(
    orch: Wiring, log: DecisionLog, of: Run, scope: Classification | None
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
    orch: Wiring,
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


def keep_rollback_material(orch: Wiring, run: Run) -> None:
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
