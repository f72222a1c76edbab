"""Rows to values and back: the only place that knows how values are laid out in the tables.

Values stay free of storage concerns (no ``to_row`` methods on them); these functions map
them. A run is stored whole as JSON in ``migration_batches.state``: that layout is
:mod:`lupo_migrate.backends.sqlalchemy._runjson`, whose functions are re-exported here.

The value classes of the extra tables (:class:`SystemState`, :class:`Alert`) live here too,
until the core grows its own; a ``migration_rollback_log`` row is the core's
:class:`~lupo_migrate.core.decisions.DecisionRecord` (``classification`` ``run`` stands for None).

``migration_batches`` holds runs and the queue. A queue entry's row has ``phase``
:data:`QUEUE_PHASE` (never a run's phase), its status in ``outcome`` (``queued``,
``running``, ``done``, ``cancelled``), its worker in ``holder``, ``created_at`` when it was
queued, ``run_id`` ``queue:<random>`` (the entry's number is the row's ``id``), the steps
pending when it was queued in ``steps`` and the rest as JSON in ``state``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from lupo_migrate.backends.sqlalchemy._runjson import (
    finding_dict,
    finding_from_dict,
    run_columns,
    run_from_json,
    run_to_json,
    steps_to_json,
)
from lupo_migrate.core.decisions import DecisionRecord
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.model import AppliedStep, Classification, Finding, JournalEntry
from lupo_migrate.core.queue import QueueEntry, QueueStatus

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

#: ``migration_batches.phase`` of the rows that are queue entries, not runs.
QUEUE_PHASE = "queue"
#: Layout version of a queue entry's JSON in ``migration_batches.state``.
_QUEUE_FORMAT = 1


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
    return {"run_id": run_id, "recorded_at": at, **finding_dict(finding)}


def finding_from_row(row: Any) -> Finding:
    """A finding from a ``migration_validation_log`` row."""
    return finding_from_dict(row._mapping)


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
