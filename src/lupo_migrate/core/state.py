"""The run state machine: phases, events, effects, and the one table that links them.

Theory of operation
===================

A *run* moves through the doctrine's seven phases. The shell (``run.orchestrator``) feeds it
*events*,
facts that happened (``StepApplied``), and gets back the new run and the *effects* it must carry
out, in order (``ApplyStep``). This module never does anything: no I/O, clock, randomness or
logging. The shell persists every new run **before** it carries out the effects, so after a crash
the stored phase says what was under way.

Phases:

* ``IDLE``: before the run starts (no outcome) and after it ended (an outcome). An ended run is
  terminal: it accepts no event, except ``Resolved`` when its failed rollback blocked the target.
* ``PREPARING``: entered on ``LockAcquired`` (the shell takes the run lock before it feeds the
  first event); writes are frozen and pre-images recorded.
* ``VALIDATING_PRE``, ``MIGRATING``, ``VALIDATING_POST``, ``COMPLETING``: as DESIGN.md says.
* ``ROLLING_BACK``: reachable from every phase but ``IDLE``; undoes the in-flight step (if any)
  and the applied steps in reverse order, then verifies, and ends in ``IDLE``.

A working run whose process died (its lock is free) accepts ``Resumed`` from the process that
took the lock over: the run stays in its phase and the effect it was carrying out is issued
again (a rollback goes on rolling back; ``recover --resume`` goes on migrating; a run that died
before migrating prepares again).

Every phase but ``IDLE`` is a *working* phase: the run lock and the write freeze are held exactly
then. Entering ``PREPARING`` freezes; every way back to ``IDLE`` thaws and releases the lock, the
failed-rollback path included. ``ApplyStep`` is only issued in ``MIGRATING`` and ``UndoStep``
only in ``ROLLING_BACK``.

Every phase-change rule lives in ``TABLE`` below; anything absent is illegal and raises
``IllegalTransitionError`` with nothing changed. The docs' diagram is generated from the table
(``docs/make_state_diagram.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs

from lupo_migrate.core.classifier import (
    RollbackDecision,
    classify,
    classify_finding,
    decision_for,
    most_drastic,
)
from lupo_migrate.core.errors import IllegalTransitionError, InternalError, TargetBlockedError
from lupo_migrate.core.model import (
    WORKING_PHASES,
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Phase,
    Run,
    Stage,
    StepId,
    _tuple_of_str,
    to_findings,
)

__all__ = [
    "EFFECT_TYPES",
    "EVENT_TYPES",
    "TABLE",
    "WORKING_PHASES",
    "AlertLevel",
    "ApplyStep",
    "Completed",
    "Effect",
    "Event",
    "FreezeWrites",
    "LockAcquired",
    "Phase",
    "PreparationFailed",
    "Prepared",
    "RaiseAlert",
    "RecordDecision",
    "RecordHistory",
    "RecordOutcome",
    "RecordPreImages",
    "RecordResolution",
    "ReleaseLock",
    "Resolved",
    "Resumed",
    "RollbackFailed",
    "RollbackRequested",
    "RollbackVerified",
    "Rule",
    "StepApplied",
    "StepFailed",
    "StepRolledBack",
    "ThawWrites",
    "UndoStep",
    "Validate",
    "ValidationFailed",
    "ValidationPassed",
    "VerifyRollback",
    "accepted_in",
    "transition",
]


# --------------------------------------------------------------------------------------------
# Events: facts, named in the past tense.


@attrs.frozen
class LockAcquired:
    """The shell took the target's run lock for this run; the run may start."""

    holder: str


@attrs.frozen
class Prepared:
    """Writes are frozen and the pre-images of everything the plan touches are recorded."""


@attrs.frozen
class PreparationFailed:
    """Preparing could not finish (pre-images, freeze...)."""

    failure: Failure


@attrs.frozen
class ValidationPassed:
    """A validation stage found nothing that fails (warnings may be attached)."""

    stage: Stage
    findings: tuple[Finding, ...] = attrs.field(default=(), converter=to_findings)


@attrs.frozen
class ValidationFailed:
    """A validation stage found failing findings; the classifier decides what follows."""

    stage: Stage
    findings: tuple[Finding, ...] = attrs.field(converter=to_findings)


@attrs.frozen
class StepApplied:
    """The in-flight step was applied and its during-validation passed."""

    step_id: StepId


@attrs.frozen
class StepFailed:
    """The in-flight step failed (perhaps part-way)."""

    step_id: StepId
    failure: Failure


@attrs.frozen
class Completed:
    """History, decisions and alerts of a completing run are recorded."""


@attrs.frozen
class RollbackRequested:
    """Something outside the steps calls for a rollback: a crash found, a lost lock, an abort,
    or an operator rolling back a completed run's decided scope (then *classification* names
    the decision's class; otherwise the rollback is class A)."""

    failure: Failure
    classification: Classification | None = None


@attrs.frozen
class StepRolledBack:
    """The step at the head of the undo list was undone."""

    step_id: StepId


@attrs.frozen
class RollbackVerified:
    """After undoing every step, the target matched its pre-image (the result is recorded)."""


@attrs.frozen
class RollbackFailed:
    """A rollback could not finish, or did not restore the pre-image.

    Attributes:
        failure: what failed.
        intact: nothing of the failed undo stayed (its transaction rolled back, or none of its
            statements ran): the database is as the steps still applied leave it, so the
            target is not blocked (a downgrade then applies again what it undid).
    """

    failure: Failure
    intact: bool = False


@attrs.frozen
class Resolved:
    """An operator fixed a blocked target by hand and cleared the block."""

    operator: str
    note: str = ""


@attrs.frozen
class Resumed:
    """A run that died (its lock was free) is taken over by *holder*, which holds the lock
    now: the run goes on from where it stopped. A run that died rolling back goes on rolling
    back; one that died migrating applies its in-flight step again (the journal tells which
    of its statements ran: those are not run twice)."""

    holder: str


Event: TypeAlias = (
    LockAcquired
    | Prepared
    | PreparationFailed
    | ValidationPassed
    | ValidationFailed
    | StepApplied
    | StepFailed
    | Completed
    | RollbackRequested
    | StepRolledBack
    | RollbackVerified
    | RollbackFailed
    | Resolved
    | Resumed
)

#: Every event type, in the order of a run's life.
EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    LockAcquired,
    Prepared,
    PreparationFailed,
    ValidationPassed,
    ValidationFailed,
    StepApplied,
    StepFailed,
    Completed,
    RollbackRequested,
    StepRolledBack,
    RollbackVerified,
    RollbackFailed,
    Resolved,
    Resumed,
)


# --------------------------------------------------------------------------------------------
# Effects: commands for the shell, named in the imperative.


class AlertLevel(enum.Enum):
    """How loudly an alert is raised."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


@attrs.frozen
class FreezeWrites:
    """Close the application write gate for this run."""


@attrs.frozen
class ThawWrites:
    """Open the application write gate again."""


@attrs.frozen
class ReleaseLock:
    """Release the run lock taken before ``LockAcquired``."""


@attrs.frozen
class RecordPreImages:
    """Record the pre-image (schema, data to back up) of everything these steps touch."""

    step_ids: tuple[StepId, ...] = attrs.field(converter=_tuple_of_str)


@attrs.frozen
class Validate:
    """Run the validators of *stage*, then report ``ValidationPassed`` or ``ValidationFailed``."""

    stage: Stage


@attrs.frozen
class ApplyStep:
    """Apply one step (journalled statement by statement), then report its result."""

    step_id: StepId


@attrs.frozen
class UndoStep:
    """Undo one step; *partial* when it was in flight and may have run only in part."""

    step_id: StepId
    partial: bool = False


@attrs.frozen
class VerifyRollback:
    """Compare the target with the pre-image, then report verified or failed."""


@attrs.frozen
class RecordDecision:
    """Record a pending B/C/D decision; the shell adds *window* to now for the deadline."""

    decision: RollbackDecision
    findings: tuple[Finding, ...] = attrs.field(converter=to_findings)


@attrs.frozen
class RecordHistory:
    """Record the applied steps of a completing run in the history."""

    step_ids: tuple[StepId, ...] = attrs.field(converter=_tuple_of_str)


@attrs.frozen
class RecordOutcome:
    """Record how the run ended."""

    outcome: Outcome


@attrs.frozen
class RecordResolution:
    """Record that an operator cleared a blocked target."""

    operator: str
    note: str


@attrs.frozen
class RaiseAlert:
    """Send an alert to the configured sinks."""

    level: AlertLevel
    message: str


Effect: TypeAlias = (
    FreezeWrites
    | ThawWrites
    | ReleaseLock
    | RecordPreImages
    | Validate
    | ApplyStep
    | UndoStep
    | VerifyRollback
    | RecordDecision
    | RecordHistory
    | RecordOutcome
    | RecordResolution
    | RaiseAlert
)

#: Every effect type.
EFFECT_TYPES: Final[tuple[type[Effect], ...]] = (
    FreezeWrites,
    ThawWrites,
    ReleaseLock,
    RecordPreImages,
    Validate,
    ApplyStep,
    UndoStep,
    VerifyRollback,
    RecordDecision,
    RecordHistory,
    RecordOutcome,
    RecordResolution,
    RaiseAlert,
)

Result: TypeAlias = tuple[Run, tuple[Effect, ...]]


# --------------------------------------------------------------------------------------------
# Rule functions. Each returns the new run (phase and facts) and the effects; ``transition``
# checks the phase against the rule's targets and bumps the version.


class _Refused(Exception):
    """A guard refused an event that the table lists (raised inside rules only)."""

    def __init__(self, reason: str, *, blocked: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.blocked = blocked


_ALERT_BY_CLASS: Final[Mapping[Classification, AlertLevel]] = {
    Classification.A: AlertLevel.CRITICAL,
    Classification.B: AlertLevel.WARNING,
    Classification.C: AlertLevel.WARNING,
    Classification.D: AlertLevel.INFO,
}


def _start(run: Run, event: LockAcquired) -> Result:
    if run.blocked:
        raise _Refused(
            "A rollback failed earlier and the target is blocked; fix it by hand, then"
            " `lupo-migrate resolve`.",
            blocked=True,
        )
    if run.outcome is not None:
        raise _Refused(f"The run has ended ({run.outcome.value}); start a new run instead.")
    new = attrs.evolve(run, phase=Phase.PREPARING, holder=event.holder)
    return new, (FreezeWrites(), RecordPreImages(run.steps))


def _prepared(run: Run, event: Prepared) -> Result:
    return attrs.evolve(run, phase=Phase.VALIDATING_PRE), (Validate(Stage.PRE),)


def _enter_rollback(run: Run, failure: Failure, decision: RollbackDecision) -> Result:
    # The in-flight step may have run in part (MySQL DDL commits at once): undo it first, then
    # the applied steps, newest first.
    undo = ((run.in_flight,) if run.in_flight is not None else ()) + tuple(reversed(run.applied))
    new = attrs.evolve(
        run,
        phase=Phase.ROLLING_BACK,
        undo=undo,
        classification=decision.classification,
        failure=failure,
    )
    # A rollback an operator asked for (or a stop) is news, not an emergency.
    if failure.kind is FailureKind.OPERATOR_ABORT:
        alert = RaiseAlert(
            AlertLevel.INFO,
            f"run {run.id}: rolling back on request: {failure.message or 'an operator asked'}",
        )
    else:
        alert = RaiseAlert(
            _ALERT_BY_CLASS[decision.classification],
            f"run {run.id}: class {decision.classification.value} rollback from"
            f" {run.phase.value}: {failure.message or failure.kind.value}",
        )
    return new, (alert, _next_undo(new))


def _next_undo(run: Run) -> UndoStep | VerifyRollback:
    if not run.undo:
        return VerifyRollback()
    head = run.undo[0]
    return UndoStep(head, partial=head == run.in_flight)


def _failed_preparing(run: Run, event: PreparationFailed) -> Result:
    return _enter_rollback(run, event.failure, classify(event.failure))


def _expect_stage(run: Run, stage: Stage) -> None:
    expected = Stage.PRE if run.phase is Phase.VALIDATING_PRE else Stage.POST
    if stage is not expected:
        raise _Refused(f"A {stage.value}-validation result arrived; {expected.value} was due.")


def _start_migrating(run: Run) -> Result:
    first = run.next_step
    if first is None:  # an empty plan has nothing to apply: straight to post-validation
        return attrs.evolve(run, phase=Phase.VALIDATING_POST), (Validate(Stage.POST),)
    return attrs.evolve(run, phase=Phase.MIGRATING, in_flight=first), (ApplyStep(first),)


def _complete(
    run: Run, decisions: tuple[tuple[RollbackDecision, tuple[Finding, ...]], ...]
) -> Result:
    new = attrs.evolve(
        run, phase=Phase.COMPLETING, pending=tuple(d.classification for d, _ in decisions)
    )
    effects: list[Effect] = [RecordHistory(run.applied)]
    for decision, findings in decisions:
        effects.append(RecordDecision(decision, findings))
        effects.append(
            RaiseAlert(
                _ALERT_BY_CLASS[decision.classification],
                f"run {run.id}: class {decision.classification.value} decision pending"
                f" ({len(findings)} finding(s)); rollback possible for {decision.window}",
            )
        )
    effects.append(RaiseAlert(AlertLevel.INFO, f"run {run.id}: {len(run.applied)} step(s) applied"))
    return new, tuple(effects)


def _validation_passed(run: Run, event: ValidationPassed) -> Result:
    _expect_stage(run, event.stage)
    run = attrs.evolve(run, findings=run.findings + event.findings)
    if run.phase is Phase.VALIDATING_PRE:
        return _start_migrating(run)
    return _complete(run, ())


def _validation_failed(run: Run, event: ValidationFailed) -> Result:
    _expect_stage(run, event.stage)
    failing = tuple(f for f in event.findings if f.severity.fails)
    if not failing:
        raise _Refused("ValidationFailed carries no failing finding; report ValidationPassed.")
    run = attrs.evolve(run, findings=run.findings + event.findings)
    by_class: dict[Classification, list[Finding]] = {}
    decisions: dict[Classification, RollbackDecision] = {}
    for finding in failing:
        decision = classify_finding(finding)
        decisions[decision.classification] = decision
        by_class.setdefault(decision.classification, []).append(finding)
    worst = most_drastic(decisions.values())
    assert worst is not None  # failing is not empty
    # Nothing is applied before the run passes pre-validation: any failure there stops it.
    if worst.automatic or run.phase is Phase.VALIDATING_PRE:
        first = by_class[worst.classification][0]
        failure = Failure(
            kind=first.kind or FailureKind.CRITICAL_VALIDATION,
            message=f"{event.stage.value}-validation: {first}",
            step_id=first.step_id,
            critical=worst.automatic,
        )
        return _enter_rollback(run, failure, worst)
    ordered = tuple((decisions[c], tuple(by_class[c])) for c in Classification if c in decisions)
    return _complete(run, ordered)


def _expect_in_flight(run: Run, step_id: StepId) -> None:
    if step_id != run.in_flight:
        raise _Refused(
            f"Step {step_id!r} reported, but {run.in_flight!r} is in flight;"
            " a handler reported a step it was not asked to apply."
        )


def _step_applied(run: Run, event: StepApplied) -> Result:
    _expect_in_flight(run, event.step_id)
    run = attrs.evolve(run, applied=(*run.applied, event.step_id), in_flight=None)
    following = run.next_step
    if following is None:
        return attrs.evolve(run, phase=Phase.VALIDATING_POST), (Validate(Stage.POST),)
    return attrs.evolve(run, in_flight=following), (ApplyStep(following),)


def _step_failed(run: Run, event: StepFailed) -> Result:
    _expect_in_flight(run, event.step_id)
    # A failed step is undone whatever its class: its dependants cannot run without it, and a
    # partly applied step is class A by the doctrine. The classification is recorded as given.
    return _enter_rollback(run, event.failure, classify(event.failure))


def _rollback_requested(run: Run, event: RollbackRequested) -> Result:
    if event.classification is not None:
        return _enter_rollback(run, event.failure, decision_for(event.classification))
    decision = classify(event.failure)
    if not decision.automatic:
        decision = classify(attrs.evolve(event.failure, critical=True))
    return _enter_rollback(run, event.failure, decision)


def _completed(run: Run, event: Completed) -> Result:
    return _end(run, Outcome.COMPLETED)


def _end(run: Run, outcome: Outcome, *extra: Effect, blocked: bool | None = None) -> Result:
    new = attrs.evolve(
        run,
        phase=Phase.IDLE,
        outcome=outcome,
        in_flight=None,
        undo=(),
        blocked=outcome is Outcome.FAILED if blocked is None else blocked,
        holder=None,
    )
    return new, (RecordOutcome(outcome), *extra, ThawWrites(), ReleaseLock())


def _step_rolled_back(run: Run, event: StepRolledBack) -> Result:
    if not run.undo or event.step_id != run.undo[0]:
        head = run.undo[0] if run.undo else None
        raise _Refused(f"Step {event.step_id!r} reported undone, but {head!r} was due.")
    undone = event.step_id
    new = attrs.evolve(
        run,
        undo=run.undo[1:],
        applied=tuple(s for s in run.applied if s != undone),
        in_flight=None if undone == run.in_flight else run.in_flight,
    )
    return new, (_next_undo(new),)


def _rollback_verified(run: Run, event: RollbackVerified) -> Result:
    if run.undo:
        raise _Refused(f"{len(run.undo)} step(s) still to undo, next {run.undo[0]!r}.")
    return _end(run, Outcome.ROLLED_BACK)


def _rollback_failed(run: Run, event: RollbackFailed) -> Result:
    run = attrs.evolve(run, failure=event.failure)
    if event.intact:  # nothing half-done: what is still applied stands as it was
        alert = RaiseAlert(
            AlertLevel.WARNING,
            f"run {run.id}: undoing stopped, nothing half-done, target {run.target} not"
            f" blocked: {event.failure.message or event.failure.kind.value}",
        )
        return _end(run, Outcome.FAILED, alert, blocked=False)
    alert = RaiseAlert(
        AlertLevel.CRITICAL,
        f"run {run.id}: rollback failed, target {run.target} blocked until resolved:"
        f" {event.failure.message or event.failure.kind.value}",
    )
    return _end(run, Outcome.FAILED, alert)


def _resumed(run: Run, event: Resumed) -> Result:
    # The phase says what was under way; its effect is issued again, by the new holder.
    run = attrs.evolve(run, holder=event.holder)
    again: tuple[Effect, ...]
    match run.phase:
        case Phase.PREPARING | Phase.VALIDATING_PRE:  # nothing ran: prepare again
            run = attrs.evolve(run, phase=Phase.PREPARING)
            again = (RecordPreImages(run.steps),)
        case Phase.MIGRATING:
            if run.in_flight is None:  # a consistent run always has a step in flight here
                raise _Refused("The run is migrating with no step in flight; roll it back.")
            again = (ApplyStep(run.in_flight),)
        case Phase.VALIDATING_POST:
            again = (Validate(Stage.POST),)
        case Phase.ROLLING_BACK:
            again = (_next_undo(run),)
        case _:  # COMPLETING: the shell records what completes a run, then Completed
            again = ()
    return run, (FreezeWrites(), *again)


def _resolved(run: Run, event: Resolved) -> Result:
    if not run.blocked:
        raise _Refused("The target is not blocked; there is nothing to resolve.")
    return attrs.evolve(run, blocked=False), (RecordResolution(event.operator, event.note),)


# --------------------------------------------------------------------------------------------
# The table.


@attrs.frozen
class Rule:
    """A table row's right-hand side: the phases it may lead to and the function that decides."""

    targets: frozenset[Phase]
    # Each rule function takes the event type of its row; the table pairs them.
    apply: Callable[[Run, Any], Result]


def _r(targets: set[Phase], fn: Callable[[Run, Any], Result]) -> Rule:
    return Rule(frozenset(targets), fn)


_TO_ROLLBACK: Final = {Phase.ROLLING_BACK}

TABLE: Final[Mapping[tuple[Phase, type[Event]], Rule]] = {
    # A run starts when the shell holds the run lock; a blocked or ended run refuses.
    (Phase.IDLE, LockAcquired): _r({Phase.PREPARING}, _start),
    # Only a blocked ended run accepts this; it stays IDLE.
    (Phase.IDLE, Resolved): _r({Phase.IDLE}, _resolved),
    (Phase.PREPARING, Prepared): _r({Phase.VALIDATING_PRE}, _prepared),
    (Phase.PREPARING, PreparationFailed): _r(_TO_ROLLBACK, _failed_preparing),
    # An empty plan skips MIGRATING; any pre-validation failure stops the run.
    (Phase.VALIDATING_PRE, ValidationPassed): _r(
        {Phase.MIGRATING, Phase.VALIDATING_POST}, _validation_passed
    ),
    (Phase.VALIDATING_PRE, ValidationFailed): _r(_TO_ROLLBACK, _validation_failed),
    # An applied step either starts the next one or hands over to validation.
    (Phase.MIGRATING, StepApplied): _r({Phase.MIGRATING, Phase.VALIDATING_POST}, _step_applied),
    (Phase.MIGRATING, StepFailed): _r(_TO_ROLLBACK, _step_failed),
    (Phase.VALIDATING_POST, ValidationPassed): _r({Phase.COMPLETING}, _validation_passed),
    # Class A findings roll back now; B/C/D complete with a pending decision.
    (Phase.VALIDATING_POST, ValidationFailed): _r(
        {Phase.ROLLING_BACK, Phase.COMPLETING}, _validation_failed
    ),
    (Phase.COMPLETING, Completed): _r({Phase.IDLE}, _completed),
    (Phase.ROLLING_BACK, StepRolledBack): _r({Phase.ROLLING_BACK}, _step_rolled_back),
    (Phase.ROLLING_BACK, RollbackVerified): _r({Phase.IDLE}, _rollback_verified),
    (Phase.ROLLING_BACK, RollbackFailed): _r({Phase.IDLE}, _rollback_failed),
    # A dead run taken over goes on in the phase it died in (recover --resume; a run that
    # died rolling back is always resumed: its rollback finishes; one that died before it
    # migrated prepares again).
    (Phase.VALIDATING_PRE, Resumed): _r({Phase.PREPARING}, _resumed),
    **{
        (phase, Resumed): _r({phase}, _resumed)
        for phase in sorted(WORKING_PHASES - {Phase.VALIDATING_PRE}, key=lambda p: p.value)
    },
    # Crash found, lock lost, operator abort: from any working phase but ROLLING_BACK itself.
    **{
        (phase, RollbackRequested): _r(_TO_ROLLBACK, _rollback_requested)
        for phase in sorted(WORKING_PHASES - {Phase.ROLLING_BACK}, key=lambda p: p.value)
    },
}


def accepted_in(phase: Phase) -> tuple[type[Event], ...]:
    """The event types the table accepts in *phase*, in life order."""
    return tuple(e for e in EVENT_TYPES if (phase, e) in TABLE)


def transition(run: Run, event: Event) -> tuple[Run, tuple[Effect, ...]]:
    """Return the run after *event* and the effects the shell must carry out, in order.

    Pure: equal inputs give equal outputs, and *run* is never changed.

    Raises:
        IllegalTransitionError: the phase does not accept the event (or a guard refused it);
            nothing changed. ``TargetBlockedError`` when a blocked target is asked to start.
    """
    rule = TABLE.get((run.phase, type(event)))
    if rule is None:
        raise _illegal(run, event, None)
    try:
        new, effects = rule.apply(run, event)
    except _Refused as refused:
        raise _illegal(run, event, refused) from None
    if new.phase not in rule.targets:  # pragma: no cover - a bug in a rule function
        raise InternalError(
            f"rule for ({run.phase.name}, {type(event).__name__}) led to {new.phase.name},"
            f" outside {sorted(p.name for p in rule.targets)}"
        )
    return attrs.evolve(new, version=run.version + 1), effects


def _accepted_by(run: Run) -> list[str]:
    # IDLE means two things: not started (accepts LockAcquired) and ended (terminal, except
    # that a blocked target accepts Resolved).
    if run.ended:
        return ["Resolved"] if run.blocked else []
    if run.phase is Phase.IDLE:
        return [LockAcquired.__name__]
    return [e.__name__ for e in accepted_in(run.phase)]


def _illegal(run: Run, event: object, refused: _Refused | None) -> IllegalTransitionError:
    allowed = _accepted_by(run)
    cls = TargetBlockedError if refused is not None and refused.blocked else IllegalTransitionError
    reason = refused.reason if refused is not None else None
    return cls(run.id, run.phase.name, type(event).__name__, allowed, reason=reason)
