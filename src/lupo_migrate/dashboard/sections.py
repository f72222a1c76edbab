"""The dashboard's sections, each read from the orchestrator and shaped for the page.

Apart from :mod:`lupo_migrate.dashboard`, which polls, keeps the timelines and serves: each
function here reads one thing (the run lock, the write freeze, the queue, the open decisions,
a run's checklist, the history) and returns the JSON-able value the page shows. They are
called from the dashboard's poller thread only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from lupo_migrate.core.clock import from_stamp, to_stamp
from lupo_migrate.core.decisions import is_open, status_at
from lupo_migrate.core.errors import ConfigurationError
from lupo_migrate.core.history_stats import RunRecord, history_stats
from lupo_migrate.core.model import FailureKind, Run

if TYPE_CHECKING:
    from lupo_migrate.run.orchestrator import Orchestrator

__all__ = [
    "HUNG_AFTER",
    "checklist",
    "decisions",
    "epoch",
    "freeze",
    "history",
    "lock",
    "outcome",
    "queue",
    "records",
    "stopped",
]

#: A lock holder silent for longer than this hangs (as ``Orchestrator.hung`` says).
HUNG_AFTER: Final = 60.0
#: Runs shown in the durations chart (the newest).
_DURATIONS: Final = 40


def epoch(stamp: int | None) -> float | None:
    """A ``YYYYMMDDHHMMSS`` stamp as seconds since the epoch; None stays None."""
    return None if stamp is None else from_stamp(stamp).timestamp()


def outcome(run: Run) -> str | None:
    """How *run* ended, as the page names it (None while it works)."""
    return None if run.outcome is None else run.outcome.value


def stopped(run: Run) -> bool:
    """The run undid an earlier completed run (an operator's rollback)."""
    return run.failure is not None and run.failure.kind is FailureKind.OPERATOR_ABORT


def lock(orch: Orchestrator, now: datetime) -> dict[str, Any] | None:
    held = orch.lock.holder()
    if held is None:
        return None
    age = max(now.timestamp() - from_stamp(held.heartbeat).timestamp(), 0.0)
    return {
        "owner": held.owner,
        "since": epoch(held.since),
        "heartbeat": epoch(held.heartbeat),
        "heartbeat_age_seconds": age,
        "hung": age > HUNG_AFTER,
    }


def freeze(orch: Orchestrator, now: datetime) -> dict[str, Any] | None:
    frozen = orch.freeze.status()
    if frozen is None:
        return None
    expires = from_stamp(frozen.expires).timestamp()
    return {
        "owner": frozen.owner,
        "since": epoch(frozen.since),
        "expires": expires,
        "seconds_left": max(expires - now.timestamp(), 0.0),
    }


def queue(orch: Orchestrator) -> list[dict[str, Any]]:
    """The queue's active entries (none when the orchestrator has no queue)."""
    queue = getattr(orch, "queue", None)
    if queue is None:
        return []
    try:
        entries = queue()
    except ConfigurationError:  # a storage that keeps no queue (not the RunQueue protocol)
        return []
    return [
        {
            "id": e.id,
            "priority": e.priority,
            "status": getattr(e.status, "value", e.status),
            "enqueued_at": epoch(e.enqueued_at),
            "enqueued_by": e.enqueued_by,
            "steps": len(e.steps),
            "upto": e.upto,
            "worker": e.worker,
        }
        for e in entries
    ]


def decisions(orch: Orchestrator, now: datetime) -> list[dict[str, Any]]:
    """The open decisions (B/C/D, and completed runs' own rollback material), soonest
    deadline first, with the seconds left in their windows."""
    stamp = to_stamp(now)
    shown = []
    for record in orch.decisions():
        if not is_open(record, stamp):
            continue
        deadline = epoch(record.deadline)
        shown.append(
            {
                "id": record.id,
                "run_id": record.run_id,
                "class": record.label,
                "status": status_at(record, stamp),
                "scope": list(record.scope),
                "recorded_at": epoch(record.recorded_at),
                "window_seconds": record.window_seconds,
                "deadline": deadline,
                "seconds_left": None if deadline is None else max(deadline - now.timestamp(), 0.0),
            }
        )
    return sorted(shown, key=lambda d: (d["deadline"] is None, d["deadline"] or 0.0))


def copies(orch: Orchestrator) -> list[dict[str, Any]]:
    """The online copies under way on the target (MySQL/MariaDB), from their checkpoints."""
    found = getattr(orch.target, "online_copies", None)
    return [] if found is None else [attrs.asdict(copy) for copy in found()]


def checklist(orch: Orchestrator, run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "items": [
            {
                "stage": i.stage,
                "label": i.label,
                "state": i.state,
                "mark": i.mark,
                "evidence": i.evidence,
            }
            for i in orch.checklist(run.id)
        ],
    }


def records(orch: Orchestrator, times: Mapping[str, tuple[int, int | None]]) -> list[RunRecord]:
    """The history as analytics read it: with times where the storage keeps them."""
    ledger = orch.storage.applied(orch.target_name)
    records = []
    for index, run in enumerate(orch.history()):
        when = times.get(run.id)
        failed = run.failure.step_id if run.failure is not None else None
        entry = ledger.get(failed) if failed is not None else None
        records.append(
            RunRecord(
                run_id=run.id,
                outcome=outcome(run),
                started=float(index) if when is None else from_stamp(when[0]).timestamp(),
                ended=None
                if when is None or when[1] is None or not run.ended
                else from_stamp(when[1]).timestamp(),
                steps=len(run.steps),
                failure_kind=None if run.failure is None else run.failure.kind.value,
                failed_file_type=None if entry is None else entry.file_type,
                operator_rollback=stopped(run),
            )
        )
    return records


def history(
    records: Sequence[RunRecord], times: Mapping[str, tuple[int, int | None]]
) -> dict[str, Any]:
    stats = history_stats(records)
    return {
        "runs": stats.runs,
        "by_outcome": dict(stats.by_outcome),
        "rollback_frequency": stats.rollback_frequency,
        "operator_rollbacks": stats.operator_rollbacks,
        "durations": [
            {"run_id": run_id, "seconds": seconds}
            for run_id, seconds in stats.durations[-_DURATIONS:]
        ],
        "durations_recorded": bool(times),
        "median_seconds": stats.median_seconds,
        "p90_seconds": stats.p90_seconds,
        "failures_by_type": dict(stats.failures_by_type),
        "failures_by_file_type": dict(stats.failures_by_file_type),
    }
