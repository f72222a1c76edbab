"""Driving a run: the loop of transition, persist, carry out the effects, feed back the event.

:func:`hold` takes the run lock and keeps it and the write freeze alive, :func:`advance`
persists each new run **before** its effects are carried out, :func:`drive` loops, and
:func:`carry_out` turns one effect into I/O through the injected backends (a step through
:mod:`lupo_migrate.run.step`, an undo through :mod:`lupo_migrate.run.undo`). Starting a run
and taking over a dead one (:mod:`lupo_migrate.run.launch`), an operator's rollback
(:mod:`lupo_migrate.run.operations`) and a downgrade drive runs with the same functions.

Functions of a :class:`~lupo_migrate.run.wiring.Wiring` (``orch``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from lupo_migrate.core import state as sm
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import InternalError
from lupo_migrate.core.kinds import FailureKind
from lupo_migrate.core.model import Failure, Plan, Run, Step, StepId
from lupo_migrate.run import checks, decisions, observers, undo
from lupo_migrate.run import step as _stepping
from lupo_migrate.run.keepalive import KeepAlive

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = [
    "advance",
    "carry_out",
    "drive",
    "finish_step",
    "hold",
    "lift_orphan_freeze",
    "renew_freeze",
]

logger = logging.getLogger("lupo_migrate")


def hold(orch: Wiring, stack: ExitStack) -> None:
    """Take the run lock, keep it (and the freeze) alive while the run works, and freeze
    writes. Another owner's freeze is then an orphan (only a run freezes, and a run holds
    the lock all along: its process died between the two): it is lifted, and that is
    recorded."""
    stack.enter_context(orch.lock.acquire(orch.owner, timeout=orch.lock_timeout))
    keeper = KeepAlive(
        orch.lock,
        orch.freeze,
        orch.owner,
        orch.freeze_ttl,
        watch=functools.partial(observers.escalate_now, orch),
    )
    stack.callback(setattr, orch, "_keeper", None)
    stack.enter_context(keeper.running())
    orch._keeper = keeper
    orphan = lift_orphan_freeze(orch)
    if orphan is not None:
        logger.warning("lifted the orphaned write freeze of %s", orphan.owner)
    keeper.freeze_writes()


def lift_orphan_freeze(orch: Wiring) -> Any:
    """Lift another owner's write freeze (an orphan when the run lock was free); the freeze
    status lifted, or None when there was none to lift."""
    frozen = orch.freeze.status()
    if frozen is None or frozen.owner == orch.owner:
        return None
    return orch.freeze.emergency_thaw(
        orch.owner, f"orphaned: {frozen.owner} froze writes and died (the run lock was free)"
    )


def renew_freeze(orch: Wiring) -> None:
    """Between steps: the lock's heartbeat and the freeze's lease, when due (see
    ``run.keepalive``); a lock that is gone raises ``LockError``: no further statement runs."""
    if orch._keeper is not None:
        orch._keeper.tick()


def advance(orch: Wiring, run: Run, event: sm.Event) -> tuple[Run, tuple[sm.Effect, ...]]:
    """Feed *event* to the machine and persist the new run before anything is carried out;
    the new run and the effects to carry out."""
    new, effects = sm.transition(run, event)
    orch.storage.save_run(new, expected_version=run.version)  # persisted before effects
    observers.transition(orch, run, new, event)
    if orch.on_event is not None:
        orch.on_event(new, event)
    logger.debug("run %s: %s -> %s", run.id, type(event).__name__, new.phase.value)
    return new, effects


def drive(orch: Wiring, run: Run, first: sm.Event, plan: Plan, by_id: Mapping[StepId, Step]) -> Run:
    """Advance *run* from *first* and carry out each transition's effects, feeding back the
    event they end in, until the run has ended."""
    event: sm.Event | None = first
    while event is not None:
        try:
            run, effects = advance(orch, run, event)
        except BaseException as error:
            finish_step(orch, error)
            raise
        finish_step(orch)
        renew_freeze(orch)
        if not all(isinstance(fx, sm.ApplyStep) for fx in effects):
            orch._flush()  # only consecutive steps may leave writes pending
        events = [e for e in (carry_out(orch, run, fx, plan, by_id) for fx in effects) if e]
        if len(events) > 1:  # pragma: no cover - a table bug
            raise InternalError(f"effects {effects} produced several events {events}")
        event = events[0] if events else None
        if event is None and run.phase is sm.Phase.COMPLETING:
            # What keeps the run rollbackable, and the next run's drift reference, are
            # recorded before the run is: a process that dies in between leaves a run
            # that is not ended (recover rolls it back), never one that cannot be.
            decisions.keep_rollback_material(orch, run)
            checks.record_schema(orch, run, when=None)
            event = sm.Completed()
    if not run.ended:  # pragma: no cover - a table bug
        raise InternalError(f"run {run.id} stopped in {run.phase.name} with no event")
    return run


def carry_out(
    orch: Wiring, run: Run, effect: sm.Effect, plan: Plan, by_id: Mapping[StepId, Step]
) -> sm.Event | None:
    """Carry out one effect through the backends; the event it ends in, if any."""
    now = to_stamp(orch.clock.now())
    match effect:
        case sm.FreezeWrites():
            if orch._keeper is not None:
                orch._keeper.freeze_writes()
        case sm.ThawWrites():
            if orch._keeper is not None:
                orch._keeper.thaw()
            else:
                orch.freeze.thaw(orch.owner)
        case sm.ReleaseLock():
            pass  # the lock's ``with`` block in apply() releases it on the way out
        case sm.RecordPreImages():
            return undo.start_pre_images(orch, run)
        case sm.Validate(stage=stage):
            return checks.validate(orch, run, stage, plan)
        case sm.ApplyStep(step_id=step_id):
            if orch._stop is not None:  # asked to stop: the step fails before it starts
                orch._flush()  # what waited to travel with its first statement goes now
                return sm.StepFailed(
                    step_id, Failure(kind=FailureKind.OPERATOR_ABORT, message=orch._stop)
                )
            return _stepping.apply_step(orch, run, by_id[step_id], now)
        case sm.UndoStep(step_id=step_id, partial=partial):
            return undo.undo_step(orch, run, by_id[step_id], partial=partial)
        case sm.VerifyRollback():
            return undo.verify_rollback(orch, run)
        case sm.RecordHistory() | sm.RecordOutcome() | sm.RecordResolution():
            pass  # the persisted run and the ledger rows are the history
        case sm.RecordDecision(decision=decision, findings=findings):
            decisions.record_decision(orch, run, decision, findings, by_id)
        case sm.RaiseAlert(level=level, message=message):
            log = logger.error if level is sm.AlertLevel.CRITICAL else logger.info
            log("%s", message)
            observers.alert(orch, run, level.value, message)  # migration_alerts, sinks
        case _:  # pragma: no cover - every effect type is matched above
            raise InternalError(f"no shell action for effect {effect!r}")
    return None


def finish_step(orch: Wiring, error: BaseException | None = None) -> None:
    """Close the applied step's connection scope, left open until its ``StepApplied`` was
    persisted (committing both), or roll it back with *error*."""
    scope, orch._open_step = orch._open_step, None
    if scope is not None:
        if error is None:
            scope.close()
        else:
            scope.__exit__(type(error), error, error.__traceback__)
