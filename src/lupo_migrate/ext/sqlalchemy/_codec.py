"""Rows to values and back: the only place that knows how values are laid out in the tables.

Values stay free of storage concerns (no ``to_row`` methods on them); these functions map
them. A run is stored whole as JSON in ``migration_batches.state`` (ASCII-escaped, so any
Python string survives any column charset) and decodes to an equal ``Run``: enums by value,
nested ``Failure`` and ``Finding`` as objects, tuples as lists.

The value classes of the extra tables (:class:`SystemState`, :class:`Alert`) live here too,
until the core grows its own; a ``migration_rollback_log`` row is the core's
:class:`~lupo_migrate._decisions.DecisionRecord` (``classification`` ``run`` stands for None).

``migration_batches`` holds runs and the queue. A queue entry's row has ``phase``
:data:`QUEUE_PHASE` (never a run's phase), its status in ``outcome`` (``queued``,
``running``, ``done``, ``cancelled``), its worker in ``holder``, ``created_at`` when it was
queued, ``run_id`` ``queue:<random>`` (the entry's number is the row's ``id``), the steps
pending when it was queued in ``steps`` and the rest as JSON in ``state``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from lupo_migrate._decisions import DecisionRecord
from lupo_migrate._model import (
    AppliedStep,
    Classification,
    Failure,
    FailureKind,
    Finding,
    JournalEntry,
    Outcome,
    Phase,
    Run,
    Severity,
)
from lupo_migrate._queue import QueueEntry, QueueStatus
from lupo_migrate.errors import StorageError

__all__ = [
    "QUEUE_PHASE",
    "Alert",
    "RollbackDecision",
    "SystemState",
    "alert_from_row",
    "applied_from_row",
    "applied_to_row",
    "decision_from_row",
    "decision_to_row",
    "finding_from_row",
    "finding_to_row",
    "journal_from_row",
    "journal_to_row",
    "new_id",
    "queue_columns",
    "queue_from_row",
    "run_columns",
    "run_from_json",
    "run_to_json",
    "state_from_row",
    "steps_to_json",
]

#: Layout version of the JSON in ``migration_batches.state``.
_RUN_FORMAT = 2
#: ``migration_batches.phase`` of the rows that are queue entries, not runs.
QUEUE_PHASE = "queue"
#: Layout version of a queue entry's JSON in ``migration_batches.state``.
_QUEUE_FORMAT = 1


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class SystemState:
    """A target's row of ``migration_system_state``: phase, run lock and write freeze.

    Stamps are ``YYYYMMDDHHMMSS`` UTC; every field but ``target`` may be None.
    """

    target: str
    phase: str | None = None
    run_id: str | None = None
    lock_name: str | None = None
    lock_holder: str | None = None
    lock_since: int | None = None
    heartbeat: int | None = None
    lock_expires: int | None = None
    freeze_owner: str | None = None
    freeze_since: int | None = None
    freeze_expires: int | None = None
    updated_at: int | None = None


@attrs.frozen(kw_only=True)
class Alert:
    """A row of ``migration_alerts``."""

    id: int
    run_id: str | None
    level: str
    message: str
    created_at: int
    acknowledged_at: int | None = None
    resolved_at: int | None = None


#: A row of ``migration_rollback_log`` (the core's record; the old name is kept).
RollbackDecision = DecisionRecord


def _enum_value(value: Any) -> Any:
    return None if value is None else value.value


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "severity": finding.severity.value,
        "message": finding.message,
        "path": finding.path,
        "line": finding.line,
        "hint": finding.hint,
        "code": finding.code,
        "kind": _enum_value(finding.kind),
        "step_id": finding.step_id,
    }


def _finding_from_dict(data: Mapping[str, Any]) -> Finding:
    kind = data["kind"]
    return Finding(
        severity=Severity(data["severity"]),
        message=data["message"],
        path=data["path"],
        line=None if data["line"] is None else int(data["line"]),
        hint=data["hint"],
        code=data["code"],
        kind=None if kind is None else FailureKind(kind),
        step_id=data["step_id"],
    )


def run_to_json(run: Run) -> str:
    """The whole *run* as JSON text (keys sorted, ASCII only)."""
    failure = run.failure
    data = {
        "format": _RUN_FORMAT,
        "id": run.id,
        "target": run.target,
        "phase": run.phase.value,
        # Applied steps are nearly always a prefix of the plan: then their count says it all.
        "applied": _applied(run),
        "in_flight": run.in_flight,
        "undo": list(run.undo),
        "outcome": _enum_value(run.outcome),
        "blocked": run.blocked,
        "classification": _enum_value(run.classification),
        "failure": None
        if failure is None
        else {
            "kind": failure.kind.value,
            "message": failure.message,
            "step_id": failure.step_id,
            "critical": failure.critical,
        },
        "findings": [_finding_dict(f) for f in run.findings],
        "pending": [c.value for c in run.pending],
        "holder": run.holder,
        "version": run.version,
    }
    if run.rolls_back is not None:  # an operator's rollback only: other runs omit the keys
        data["rolls_back"] = run.rolls_back
        data["rolls_back_scope"] = _enum_value(run.rolls_back_scope)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _applied(run: Run) -> int | list[str]:
    count = len(run.applied)
    return count if run.steps[:count] == run.applied else list(run.applied)


def steps_to_json(run: Run) -> str:
    """The run's step ids as JSON (the ``steps`` column, written once)."""
    return json.dumps(list(run.steps), separators=(",", ":"), ensure_ascii=True)


def run_from_json(text: str, steps_text: str) -> Run:
    """The run that :func:`run_to_json` and :func:`steps_to_json` wrote.

    Raises:
        StorageError: the text is not a run this code can read.
    """
    try:
        data = json.loads(text)
        steps = json.loads(steps_text)
        applied = data["applied"]
        if isinstance(applied, int):
            applied = steps[:applied]
        if data.get("format") != _RUN_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        failure = data["failure"]
        outcome, classification = data["outcome"], data["classification"]
        return Run(
            id=data["id"],
            target=data["target"],
            phase=Phase(data["phase"]),
            steps=tuple(steps),
            applied=tuple(applied),
            in_flight=data["in_flight"],
            undo=data["undo"],
            outcome=None if outcome is None else Outcome(outcome),
            blocked=bool(data["blocked"]),
            classification=None if classification is None else Classification(classification),
            failure=None
            if failure is None
            else Failure(
                kind=FailureKind(failure["kind"]),
                message=failure["message"],
                step_id=failure["step_id"],
                critical=bool(failure["critical"]),
            ),
            findings=[_finding_from_dict(f) for f in data["findings"]],
            pending=[Classification(c) for c in data["pending"]],
            holder=data["holder"],
            version=int(data["version"]),
            rolls_back=data.get("rolls_back"),
            rolls_back_scope=None
            if data.get("rolls_back_scope") is None
            else Classification(data["rolls_back_scope"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"migration_batches: a stored run cannot be read ({exc}); it was written by another"
            " version of lupo_migrate, or edited by hand. Restore the row, or upgrade."
        ) from exc


def run_columns(run: Run, *, steps: bool = True) -> dict[str, Any]:
    """The ``migration_batches`` columns of *run* (all but ``id`` and the stamps).

    Without *steps*, the ``steps`` column is left out (a run's plan is written once; encoding
    a long plan again for every state change costs more than the write).
    """
    columns = {
        "run_id": run.id,
        "target": run.target,
        "phase": run.phase.value,
        "outcome": _enum_value(run.outcome),
        "version": run.version,
        "blocked": run.blocked,
        "holder": run.holder,
        "state": run_to_json(run),
    }
    if steps:
        columns["steps"] = steps_to_json(run)
    return columns


def applied_to_row(entry: AppliedStep) -> dict[str, Any]:
    """The ``migration_files`` columns of a ledger entry."""
    return {
        "target": entry.target,
        "step_id": entry.step_id,
        "path": entry.path,
        "file_type": entry.file_type,
        "checksum": entry.checksum,
        "run_id": entry.run_id,
        "applied_at": entry.applied_at,
    }


def applied_from_row(row: Any) -> AppliedStep:
    """A ledger entry from a ``migration_files`` row."""
    return AppliedStep(
        step_id=row.step_id,
        target=row.target,
        checksum=row.checksum,
        run_id=row.run_id,
        applied_at=int(row.applied_at),
        path=row.path,
        file_type=row.file_type,
    )


def finding_to_row(run_id: str, finding: Finding, at: int) -> dict[str, Any]:
    """The ``migration_validation_log`` columns of a finding."""
    return {"run_id": run_id, "recorded_at": at, **_finding_dict(finding)}


def finding_from_row(row: Any) -> Finding:
    """A finding from a ``migration_validation_log`` row."""
    return _finding_from_dict(row._mapping)


def journal_to_row(entry: JournalEntry) -> dict[str, Any]:
    """The ``migration_progress`` columns of a journal entry (all but ``id``)."""
    return {
        "run_id": entry.run_id,
        "step_id": entry.step_id,
        "stmt_index": entry.index,
        "statement": entry.statement,
        "started_at": entry.started_at,
        "done_at": entry.done_at,
    }


def journal_from_row(row: Any) -> JournalEntry:
    """A journal entry from a ``migration_progress`` row."""
    return JournalEntry(
        id=int(row.id),
        run_id=row.run_id,
        step_id=row.step_id,
        index=int(row.stmt_index),
        statement=row.statement,
        started_at=int(row.started_at),
        done_at=None if row.done_at is None else int(row.done_at),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def state_from_row(row: Any) -> SystemState:
    """A :class:`SystemState` from a ``migration_system_state`` row."""
    m = row._mapping
    return SystemState(
        target=m["target"],
        phase=m["phase"],
        run_id=m["run_id"],
        lock_name=m["lock_name"],
        lock_holder=m["lock_holder"],
        lock_since=_opt_int(m["lock_since"]),
        heartbeat=_opt_int(m["heartbeat"]),
        lock_expires=_opt_int(m["lock_expires"]),
        freeze_owner=m["freeze_owner"],
        freeze_since=_opt_int(m["freeze_since"]),
        freeze_expires=_opt_int(m["freeze_expires"]),
        updated_at=_opt_int(m["updated_at"]),
    )


def alert_from_row(row: Any) -> Alert:
    """An :class:`Alert` from a ``migration_alerts`` row."""
    return Alert(
        id=int(row.id),
        run_id=row.run_id,
        level=row.level,
        message=row.message,
        created_at=int(row.created_at),
        acknowledged_at=_opt_int(row.acknowledged_at),
        resolved_at=_opt_int(row.resolved_at),
    )


def decision_to_row(decision: RollbackDecision) -> dict[str, Any]:
    """The ``migration_rollback_log`` columns of a decision (all but ``id``)."""
    row = attrs.asdict(decision, recurse=False)
    del row["id"]
    row["classification"] = decision.label
    row["scope"] = json.dumps(list(decision.scope))
    return row


def new_id(result: Any) -> int:
    """The auto-incremented key of the row an INSERT *result* just wrote."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:  # pragma: no cover - every supported dialect reports it
        raise StorageError("the database did not report the new row's id; use another driver.")
    return int(key[0])


def decision_from_row(row: Any) -> RollbackDecision:
    """A :class:`RollbackDecision` from a ``migration_rollback_log`` row."""
    return RollbackDecision(
        id=int(row.id),
        run_id=row.run_id,
        classification=None if row.classification == "run" else Classification(row.classification),
        scope=tuple(json.loads(row.scope)),
        window_seconds=_opt_int(row.window_seconds),
        deadline=_opt_int(row.deadline),
        status=row.status,
        decided_by=row.decided_by,
        decided_at=_opt_int(row.decided_at),
        detail=row.detail,
        recorded_at=int(row.recorded_at),
    )


def queue_columns(entry: QueueEntry) -> dict[str, Any]:
    """The ``migration_batches`` columns of a queue entry (all but ``id``, ``run_id`` and
    ``updated_at``)."""
    state = {
        "format": _QUEUE_FORMAT,
        "priority": entry.priority,
        "enqueued_by": entry.enqueued_by,
        "upto": entry.upto,
        "claimed_at": entry.claimed_at,
        "finished_at": entry.finished_at,
        "run_id": entry.run_id,
        "outcome": entry.outcome,
        "detail": entry.detail,
        "attempts": entry.attempts,
    }
    return {
        "target": entry.target,
        "phase": QUEUE_PHASE,
        "outcome": entry.status.value,
        "version": entry.version,
        "blocked": False,
        "holder": entry.worker,
        "created_at": entry.enqueued_at,
        "state": json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True),
        "steps": json.dumps(list(entry.steps), separators=(",", ":"), ensure_ascii=True),
    }


def queue_from_row(row: Any) -> QueueEntry:
    """The queue entry a ``migration_batches`` row of phase :data:`QUEUE_PHASE` holds.

    Raises:
        StorageError: the row is not a queue entry this code can read.
    """
    try:
        data = json.loads(row.state)
        if data.get("format") != _QUEUE_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        return QueueEntry(
            id=int(row.id),
            target=row.target,
            priority=int(data["priority"]),
            enqueued_at=int(row.created_at),
            enqueued_by=data["enqueued_by"],
            upto=data["upto"],
            steps=tuple(json.loads(row.steps)),
            status=QueueStatus(row.outcome),
            version=int(row.version),
            worker=row.holder,
            claimed_at=_opt_int(data["claimed_at"]),
            finished_at=_opt_int(data["finished_at"]),
            run_id=data["run_id"],
            outcome=data["outcome"],
            detail=data["detail"],
            attempts=int(data["attempts"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"migration_batches: queue entry {getattr(row, 'id', '?')} cannot be read ({exc});"
            " it was written by another version of lupo_migrate, or edited by hand."
        ) from exc
