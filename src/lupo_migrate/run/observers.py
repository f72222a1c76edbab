"""What the orchestrator tells observers and alert sinks (shell): events as a run moves,
alerts recorded and sent, and the escalation of a run that takes longer than its history says
it should. Functions of a :class:`~lupo_migrate.run.wiring.Wiring`; nothing here may stop a run:
an observer or a sink that raises is logged and left out for the rest of the run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lupo_migrate.core import state as sm
from lupo_migrate.core.checklist import Item, RunFacts
from lupo_migrate.core.checklist import checklist as make_checklist
from lupo_migrate.core.clock import from_stamp, to_stamp
from lupo_migrate.core.history_stats import HistoryStats, RunRecord, expected_seconds, history_stats
from lupo_migrate.core.model import UNDO_BASE, FailureKind, Outcome, Plan, Run
from lupo_migrate.observe.watch import Watch

if TYPE_CHECKING:
    from lupo_migrate.observe.alerts import Alert
    from lupo_migrate.run.wiring import Wiring

logger = logging.getLogger("lupo_migrate")

__all__ = [
    "alert",
    "checklist",
    "emit",
    "escalate",
    "escalate_now",
    "history_records",
    "run_ended",
    "run_facts",
    "started",
    "stats",
    "transition",
]


def emit(orch: Wiring, run: Run, name: str, **data: Any) -> None:
    """Publish an event to every observer still listening for this run."""
    if not orch.observers:
        return
    from lupo_migrate.observe import Event

    watch = orch._watch
    event = Event(
        name=name,
        run_id=run.id,
        target=orch.target_name,
        at=orch.clock.now(),
        data={"phase": run.phase.value, **data},
    )
    for index, observer in enumerate(orch.observers):
        if watch is not None and index in watch.dropped:
            continue
        try:
            observer(event)
        except Exception:  # an observer never breaks a run
            logger.exception(
                "observer %r failed; left out for the rest of run %s", observer, run.id
            )
            if watch is not None:
                watch.dropped.add(index)


def started(orch: Wiring, run: Run, plan: Plan) -> None:
    """A run starts: estimate how long it should take, tell the observers."""
    watch = Watch(run_id=run.id, steps=len(plan.steps), started=_now(orch))
    estimate = expected_seconds(history_records(orch), len(plan.steps))
    if estimate is not None:
        watch.expected, watch.basis = estimate
    orch._watch = watch
    emit(
        orch,
        run,
        "run.started",
        steps_total=len(plan.steps),
        steps_done=0,
        expected_seconds=watch.expected,
    )


def transition(orch: Wiring, old: Run, new: Run, event: sm.Event) -> None:
    """A transition was persisted: progress, failures; then the escalation check."""
    data: dict[str, Any] = {"event": type(event).__name__}
    if new.phase is sm.Phase.ROLLING_BACK:
        data["steps_total"] = len(new.undo) + _undone(old, new)
        data["steps_done"] = _undone(old, new)
    else:
        data["steps_total"] = len(new.steps)
        data["steps_done"] = len(new.applied)
    if new.failure is not None and old.failure is None:
        data["failure"] = new.failure.kind.value
    if new.in_flight is not None:
        data["step"] = new.in_flight
    emit(orch, new, "run.transition", **data)
    if orch._watch is not None:
        orch._watch.run = new
    escalate(orch, new)


def _undone(old: Run, new: Run) -> int:
    return max(0, len(new.steps) - len(new.undo) - (len(new.steps) - len(old.applied)))


def run_ended(orch: Wiring, run: Run) -> None:
    """The run ended: tell the observers, give the sinks their time to deliver."""
    watch = orch._watch
    seconds = None if watch is None else _now(orch) - watch.started
    emit(
        orch,
        run,
        "run.ended",
        outcome=None if run.outcome is None else run.outcome.value,
        seconds=seconds,
        steps_total=len(run.steps),
        steps_done=len(run.applied),
    )
    for sink in orch.alert_sinks:
        close = getattr(sink, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("alert sink %r failed to close", sink)


def alert(orch: Wiring, run: Run | None, level: str, message: str) -> Alert:
    """Record an alert in ``migration_alerts`` and send it to every sink."""
    from lupo_migrate.observe.alerts import Alert

    now = orch.clock.now()
    keep = getattr(orch.storage, "record_alert", None)
    row = None
    if keep is not None:
        row = keep(None if run is None else run.id, level, message, to_stamp(now))
    sent = Alert(
        level=level,
        message=message,
        target=orch.target_name,
        run_id=None if run is None else run.id,
        at=now,
        id=getattr(row, "id", None),
    )
    for sink in orch.alert_sinks:
        try:
            sink.send(sent)
        except Exception:  # a sink never breaks a run
            logger.exception("alert sink %r failed", sink)
    if run is not None:
        emit(orch, run, "alert", level=level, message=message)
    return sent


def escalate(orch: Wiring, run: Run) -> None:
    """Once per run: an alert when it has taken longer than expected (see
    ``core.history_stats.expected_seconds``)."""
    watch = orch._watch
    if watch is None or watch.expected is None or run.ended:
        return
    took = _now(orch) - watch.started
    with watch.guard:
        if took <= watch.expected or watch.escalated:
            return
        watch.escalated = True
    alert(
        orch,
        run,
        "critical",
        f"run {run.id} has taken {_span(took)}, longer than the {_span(watch.expected)} expected"
        f" for {watch.steps} step(s) (from {watch.basis} earlier run(s)); it is in"
        f" {run.phase.value}" + (f" at {run.in_flight}" if run.in_flight else ""),
    )


def escalate_now(orch: Wiring) -> None:
    """The escalation check from the keep-alive thread: a statement that runs for long makes
    no transition, and the run should still escalate in time."""
    watch = orch._watch
    if watch is not None and watch.run is not None:
        escalate(orch, watch.run)


def _now(orch: Wiring) -> float:
    return orch.clock.now().timestamp()


def _span(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def history_records(orch: Wiring) -> list[RunRecord]:
    """This target's runs as history analytics read them (times from the storage's
    ``run_times`` where it keeps them: without, none)."""
    times = getattr(orch.storage, "run_times", None)
    if times is None:
        return []
    stamps: Mapping[str, tuple[int, int | None]] = times(orch.target_name)
    records = []
    for run in orch.storage.list_runs(orch.target_name):
        when = stamps.get(run.id)
        if when is None:
            continue
        started, ended = when
        failed = run.failure.step_id if run.failure is not None else None
        records.append(
            RunRecord(
                run_id=run.id,
                outcome=None if run.outcome is None else run.outcome.value,
                started=from_stamp(started).timestamp(),
                ended=None if ended is None or not run.ended else from_stamp(ended).timestamp(),
                steps=len(run.steps),
                failure_kind=None if run.failure is None else run.failure.kind.value,
                failed_file_type=_file_type(orch, failed),
                operator_rollback=_operator_rollback(run),
            )
        )
    return records


def _file_type(orch: Wiring, step_id: str | None) -> str | None:
    if step_id is None:
        return None
    applied = orch.storage.applied(orch.target_name).get(step_id)
    if applied is not None:
        return applied.file_type
    planned = getattr(orch.storage, "step_types", None)
    return None if planned is None else planned().get(step_id)


def _operator_rollback(run: Run) -> bool:
    """An operator's rollback of a completed run (its failure says the operator asked)."""
    return run.failure is not None and run.failure.kind is FailureKind.OPERATOR_ABORT


def stats(orch: Wiring) -> HistoryStats:
    """:func:`lupo_migrate.core.history_stats.history_stats` of this target."""
    return history_stats(history_records(orch))


def run_facts(orch: Wiring, run: Run) -> RunFacts:
    """What the storage recorded about *run*, for its checklist."""
    journal = orch.storage.journal(run.id)
    alerts = getattr(orch.storage, "alerts", None)
    log = orch._decision_log
    backup = None
    if log is not None:
        kept = [r for r in log.decisions(run.id) if r.classification is None]
        if kept and kept[0].detail:
            backup = kept[0].detail.partition("; ")[2] or kept[0].detail
    findings = orch.storage.findings(run.id)
    if backup is None and any(f.code == "rollback-verified" for f in findings):
        backup = "pre-images taken before the run; the rollback was verified against them"
    if backup is None and orch.target.transactional_ddl and (run.applied or run.ended):
        backup = "each step ran in a transaction of its own (transactional DDL)"
    fingerprint = getattr(orch.storage, "fingerprint", None)
    latest = orch.storage.latest_run(orch.target_name)
    return RunFacts(
        run=run,
        findings=findings,
        statements=sum(1 for e in journal if e.done_at is not None and e.index < UNDO_BASE),
        alerts=len(alerts(run.id)) if alerts is not None else 0,
        backup=backup,
        freeze=_freeze_kind(orch.freeze),
        heartbeat=True,
        probes=len(orch.probes),
        baseline=bool(
            run.outcome is Outcome.COMPLETED
            and latest is not None
            and latest.id == run.id
            and fingerprint is not None
            and fingerprint(orch.target_name) is not None
        ),
        observed=bool(orch.observers)
        if orch._watch is not None and orch._watch.run_id == run.id
        else None,
    )


def _freeze_kind(freeze: Any) -> str:
    name = type(freeze).__name__.lower()
    return "read_only" if "readonly" in name else "lease"


def checklist(orch: Wiring, run: Run) -> tuple[Item, ...]:
    """The doctrine's execution checklist of *run* (see ``core.checklist``)."""
    return make_checklist(run_facts(orch, run))
