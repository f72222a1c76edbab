"""The run state machine: table-driven transitions, checked by properties and a stateful model."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import attrs
import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lupo_migrate.core.model import (
    WORKING_PHASES,
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Phase,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
)
from lupo_migrate.core.state import (
    EVENT_TYPES,
    TABLE,
    AlertLevel,
    ApplyStep,
    Completed,
    Effect,
    Event,
    FreezeWrites,
    LockAcquired,
    PreparationFailed,
    Prepared,
    RaiseAlert,
    RecordDecision,
    RecordOutcome,
    RecordPreImages,
    ReleaseLock,
    Resolved,
    Resumed,
    RollbackFailed,
    RollbackRequested,
    RollbackVerified,
    StepApplied,
    StepFailed,
    StepRolledBack,
    ThawWrites,
    UndoStep,
    Validate,
    ValidationFailed,
    ValidationPassed,
    VerifyRollback,
    accepted_in,
    transition,
)
from lupo_migrate.errors import IllegalTransitionError, TargetBlockedError

STEP_IDS = ("s1", "s2", "s3", "s4")

st_step_ids = st.sampled_from(STEP_IDS)
st_failures = st.builds(
    Failure,
    kind=st.sampled_from(FailureKind),
    message=st.text(max_size=5),
    step_id=st.none() | st_step_ids,
    critical=st.booleans(),
)
st_findings = st.builds(
    Finding,
    severity=st.sampled_from(Severity),
    message=st.text(max_size=5),
    kind=st.none() | st.sampled_from(FailureKind),
    step_id=st.none() | st_step_ids,
)
st_stages = st.sampled_from(Stage)
st_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(LockAcquired, holder=st.sampled_from(["h1", "h2"])),
    st.builds(Prepared),
    st.builds(PreparationFailed, failure=st_failures),
    st.builds(ValidationPassed, stage=st_stages, findings=st.lists(st_findings, max_size=2)),
    st.builds(
        ValidationFailed, stage=st_stages, findings=st.lists(st_findings, min_size=1, max_size=3)
    ),
    st.builds(StepApplied, step_id=st_step_ids),
    st.builds(StepFailed, step_id=st_step_ids, failure=st_failures),
    st.builds(Completed),
    st.builds(RollbackRequested, failure=st_failures),
    st.builds(StepRolledBack, step_id=st_step_ids),
    st.builds(RollbackVerified),
    st.builds(RollbackFailed, failure=st_failures, intact=st.booleans()),
    st.builds(Resolved, operator=st.just("op"), note=st.text(max_size=3)),
    st.builds(Resumed, holder=st.sampled_from(["h1", "h2"])),
)


@st.composite
def st_runs(draw: st.DrawFn) -> Run:
    """Any run value, consistent or not: the transition function must cope with all of them."""
    steps = draw(st.lists(st_step_ids, unique=True, max_size=4))
    n_applied = draw(st.integers(0, len(steps)))
    return Run(
        id="r1",
        phase=draw(st.sampled_from(Phase)),
        steps=steps,
        applied=steps[:n_applied],
        in_flight=draw(st.none() | st_step_ids),
        undo=draw(st.lists(st_step_ids, max_size=3)),
        outcome=draw(st.none() | st.sampled_from(Outcome)),
        blocked=draw(st.booleans()),
        version=draw(st.integers(0, 5)),
    )


def plan_of(*ids: str) -> Plan:
    return Plan(steps=[Step(id=i, path=f"{i}.sql") for i in ids])


def drive(run: Run, *events: Event) -> tuple[Run, list[Effect]]:
    """Feed events in order, collecting every effect."""
    effects: list[Effect] = []
    for event in events:
        run, out = transition(run, event)
        effects.extend(out)
    return run, effects


def migrated(run: Run) -> tuple[Run, list[Effect]]:
    """Drive a new run of plan steps through to VALIDATING_POST, every step succeeding."""
    events: list[Event] = [LockAcquired("h"), Prepared(), ValidationPassed(Stage.PRE)]
    events += [StepApplied(s) for s in run.steps]
    return drive(run, *events)


class TestTransitionProperties:
    @given(run=st_runs(), event=st_events)
    def test_transition_is_total(self, run: Run, event: Event) -> None:
        """Any event in any phase is handled by the table or rejected; nothing else escapes."""
        rule = TABLE.get((run.phase, type(event)))
        try:
            new, _effects = transition(run, event)
        except IllegalTransitionError as error:
            assert error.phase == run.phase.name
            assert error.event == type(event).__name__
            assert error.run_id == run.id
            return
        assert rule is not None
        assert new.phase in rule.targets
        assert new.version == run.version + 1

    @given(run=st_runs(), event=st_events)
    def test_transition_is_deterministic_and_leaves_input_alone(
        self, run: Run, event: Event
    ) -> None:
        """Equal inputs give equal outputs, and the input run is not changed."""
        before = copy.deepcopy(run)
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(transition(run, event))
            except IllegalTransitionError as error:
                outcomes.append(str(error))  # type: ignore[arg-type]
        assert outcomes[0] == outcomes[1]
        assert run == before

    @given(run=st_runs(), outcome=st.sampled_from(Outcome), event=st_events)
    def test_ended_runs_reject_every_event(self, run: Run, outcome: Outcome, event: Event) -> None:
        """A run that ended (and blocks nothing) is terminal."""
        run = attrs.evolve(run, phase=Phase.IDLE, outcome=outcome, blocked=False)
        with pytest.raises(IllegalTransitionError) as info:
            transition(run, event)
        assert info.value.allowed == ()

    @given(run=st_runs(), event=st_events)
    def test_effects_come_in_legal_order(self, run: Run, event: Event) -> None:
        """Apply only in MIGRATING, undo only in ROLLING_BACK; thaw and release end a run."""
        try:
            new, effects = transition(run, event)
        except IllegalTransitionError:
            return
        kinds = [type(e) for e in effects]
        if ApplyStep in kinds:
            assert new.phase is Phase.MIGRATING
        if UndoStep in kinds:
            assert new.phase is Phase.ROLLING_BACK
        if new.phase is Phase.IDLE and run.phase is not Phase.IDLE:
            assert kinds[-2:] == [ThawWrites, ReleaseLock]
            assert RecordOutcome in kinds


class TestTableShape:
    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(Phase)
        for (phase, _event), row in TABLE.items():
            graph.add_edges_from((phase, target) for target in row.targets)
        return graph

    def test_every_phase_is_reachable_from_idle(self) -> None:
        """Following the table's targets from IDLE reaches all seven phases."""
        assert nx.descendants(self.graph(), Phase.IDLE) | {Phase.IDLE} == set(Phase)

    def test_every_phase_reaches_idle(self) -> None:
        """Every phase has a path back to IDLE."""
        graph = self.graph()
        for phase in Phase:
            assert phase is Phase.IDLE or nx.has_path(graph, phase, Phase.IDLE)

    def test_rolling_back_is_reachable_from_every_working_phase(self) -> None:
        """Every phase but IDLE has a direct row into ROLLING_BACK."""
        graph = self.graph()
        for phase in WORKING_PHASES:
            assert graph.has_edge(phase, Phase.ROLLING_BACK)
        assert not graph.has_edge(Phase.IDLE, Phase.ROLLING_BACK)

    def test_only_the_documented_moves_exist(self) -> None:
        """The table's edges are exactly DESIGN.md's moves (plus the empty-plan shortcut)."""
        forward = {
            (Phase.IDLE, Phase.PREPARING),
            (Phase.PREPARING, Phase.VALIDATING_PRE),
            (Phase.VALIDATING_PRE, Phase.MIGRATING),
            (Phase.VALIDATING_PRE, Phase.VALIDATING_POST),  # empty plan
            (Phase.MIGRATING, Phase.MIGRATING),
            (Phase.MIGRATING, Phase.VALIDATING_POST),
            (Phase.VALIDATING_POST, Phase.COMPLETING),
            (Phase.COMPLETING, Phase.IDLE),
            (Phase.ROLLING_BACK, Phase.ROLLING_BACK),
            (Phase.ROLLING_BACK, Phase.IDLE),
            (Phase.IDLE, Phase.IDLE),  # resolve
        }
        back = {(p, Phase.ROLLING_BACK) for p in WORKING_PHASES}
        # A dead run taken over stays where it was (before migrating: prepares again).
        resumed = {(p, p) for p in WORKING_PHASES - {Phase.VALIDATING_PRE}}
        resumed.add((Phase.VALIDATING_PRE, Phase.PREPARING))
        assert set(self.graph().edges) == forward | back | resumed

    def test_every_event_type_appears_in_the_table(self) -> None:
        """No event type is dead."""
        assert {event for _phase, event in TABLE} == set(EVENT_TYPES)


class TestHappyPath:
    def test_a_plan_runs_through_every_phase_to_completed(self) -> None:
        """Lock, prepare, validate, apply each step in order, validate, complete."""
        run = Run.new("r1", plan_of("a", "b"))
        run, effects = migrated(run)
        assert run.phase is Phase.VALIDATING_POST
        assert [e for e in effects if isinstance(e, ApplyStep)] == [ApplyStep("a"), ApplyStep("b")]
        run, more = drive(run, ValidationPassed(Stage.POST), Completed())
        assert run.outcome is Outcome.COMPLETED
        assert run.applied == ("a", "b")
        assert isinstance(effects[0], FreezeWrites)
        assert more[-2:] == [ThawWrites(), ReleaseLock()]

    def test_an_empty_plan_skips_migrating(self) -> None:
        """With nothing to apply, pre-validation hands over to post-validation."""
        run, effects = drive(Run.new("r1", Plan()), LockAcquired("h"), Prepared())
        run, effects = transition(run, ValidationPassed(Stage.PRE))
        assert run.phase is Phase.VALIDATING_POST
        assert effects == (Validate(Stage.POST),)


class TestRollback:
    def test_a_step_failing_part_way_undoes_it_then_the_applied_steps(self) -> None:
        """Class A: the in-flight step first (partial), then applied steps newest first."""
        run = Run.new("r1", plan_of("a", "b", "c"))
        run, _ = drive(
            run,
            LockAcquired("h"),
            Prepared(),
            ValidationPassed(Stage.PRE),
            StepApplied("a"),
            StepApplied("b"),
        )
        failure = Failure(kind=FailureKind.STEP_FAILED_PARTWAY, message="1060", step_id="c")
        run, effects = transition(run, StepFailed("c", failure))
        assert run.phase is Phase.ROLLING_BACK
        assert run.classification is Classification.A
        assert effects[-1] == UndoStep("c", partial=True)
        assert isinstance(effects[0], RaiseAlert)
        assert effects[0].level is AlertLevel.CRITICAL
        run, effects = drive(run, StepRolledBack("c"), StepRolledBack("b"))
        assert effects[-1] == UndoStep("a", partial=False)
        run, effects = drive(run, StepRolledBack("a"))
        assert effects == [VerifyRollback()]
        run, effects = drive(run, RollbackVerified())
        assert run.outcome is Outcome.ROLLED_BACK
        assert run.applied == ()
        assert not run.blocked

    def test_undo_out_of_order_is_refused(self) -> None:
        """Undoing a step other than the one due is an illegal transition naming both."""
        run, _ = migrated(Run.new("r1", plan_of("a", "b")))
        run, _ = transition(run, RollbackRequested(Failure(kind=FailureKind.OPERATOR_ABORT)))
        with pytest.raises(IllegalTransitionError, match=r"'a' reported undone, but 'b' was due"):
            transition(run, StepRolledBack("a"))

    def test_post_validation_b_finding_completes_with_a_pending_decision(self) -> None:
        """A performance finding does not roll back: the run completes with a B decision."""
        run, _ = migrated(Run.new("r1", plan_of("a")))
        slow = Finding(
            severity=Severity.ERROR, message="p95 x3", kind=FailureKind.PERFORMANCE_DEGRADATION
        )
        run, effects = transition(run, ValidationFailed(Stage.POST, [slow]))
        assert run.phase is Phase.COMPLETING
        assert run.pending == (Classification.B,)
        decisions = [e for e in effects if isinstance(e, RecordDecision)]
        assert [d.decision.classification for d in decisions] == [Classification.B]
        assert decisions[0].findings == (slow,)

    def test_post_validation_class_a_rolls_back_at_once(self) -> None:
        """A data integrity finding sends the run to ROLLING_BACK, whatever else was found."""
        run, _ = migrated(Run.new("r1", plan_of("a")))
        findings = [
            Finding(
                severity=Severity.ERROR, message="doc", kind=FailureKind.DOCUMENTATION_MISMATCH
            ),
            Finding(severity=Severity.ERROR, message="rows", kind=FailureKind.DATA_INTEGRITY),
        ]
        run, _ = transition(run, ValidationFailed(Stage.POST, findings))
        assert run.phase is Phase.ROLLING_BACK
        assert run.classification is Classification.A

    def test_pre_validation_failure_stops_the_run_before_anything_is_applied(self) -> None:
        """Even a class C lint finding before migrating rolls back (nothing to undo)."""
        run, _ = drive(Run.new("r1", plan_of("a")), LockAcquired("h"), Prepared())
        lint = Finding(severity=Severity.ERROR, message="DROP", kind=FailureKind.LINT)
        run, effects = transition(run, ValidationFailed(Stage.PRE, [lint]))
        assert run.phase is Phase.ROLLING_BACK
        assert effects[-1] == VerifyRollback()

    def test_a_failed_rollback_blocks_the_target_until_resolved(self) -> None:
        """Outcome failed, blocked, critical alert; a new start is refused; resolve clears it."""
        run, _ = migrated(Run.new("r1", plan_of("a")))
        run, _ = transition(run, RollbackRequested(Failure(kind=FailureKind.CRASH)))
        run, effects = transition(run, RollbackFailed(Failure(kind=FailureKind.CRASH, message="x")))
        assert (run.phase, run.outcome, run.blocked) == (Phase.IDLE, Outcome.FAILED, True)
        assert any(isinstance(e, RaiseAlert) and e.level is AlertLevel.CRITICAL for e in effects)
        assert effects[-2:] == (ThawWrites(), ReleaseLock())
        with pytest.raises(TargetBlockedError, match="resolve"):
            transition(run, LockAcquired("h2"))
        run, _ = transition(run, Resolved("alice", "dropped the half table by hand"))
        assert not run.blocked
        with pytest.raises(IllegalTransitionError):
            transition(run, Resolved("alice"))

    def test_an_undo_that_failed_leaving_nothing_half_done_does_not_block(self) -> None:
        """Failed, but not blocked (a warning, not a critical alert): what is still applied
        stands as it was, so the next run may start without ``resolve``."""
        run, _ = migrated(Run.new("r1", plan_of("a", "b")))
        run, _ = transition(run, RollbackRequested(Failure(kind=FailureKind.CRASH)))
        run, _ = transition(run, StepRolledBack("b"))
        failure = Failure(kind=FailureKind.STEP_FAILED_PARTWAY, message="down of a failed")
        run, effects = transition(run, RollbackFailed(failure, intact=True))
        assert (run.phase, run.outcome, run.blocked) == (Phase.IDLE, Outcome.FAILED, False)
        assert run.applied == ("a",)
        levels = [e.level for e in effects if isinstance(e, RaiseAlert)]
        assert levels == [AlertLevel.WARNING]
        assert effects[-2:] == (ThawWrites(), ReleaseLock())
        with pytest.raises(IllegalTransitionError):
            transition(run, Resolved("alice"))  # nothing to resolve


class TestIllegalTransitionError:
    def test_error_names_phase_event_and_what_the_phase_accepts(self) -> None:
        """The message and attributes carry the run, the phase, the event and the accepted."""
        run, _ = migrated(Run.new("r7f3a", plan_of("a")))
        run, _ = transition(run, RollbackRequested(Failure(kind=FailureKind.CRASH)))
        with pytest.raises(IllegalTransitionError) as info:
            transition(run, StepApplied("a"))
        error = info.value
        assert (error.run_id, error.phase, error.event) == ("r7f3a", "ROLLING_BACK", "StepApplied")
        assert error.allowed == (
            "StepRolledBack",
            "RollbackVerified",
            "RollbackFailed",
            "Resumed",
        )
        assert str(error).startswith(
            "run r7f3a is ROLLING_BACK and cannot accept StepApplied; ROLLING_BACK accepts"
            " StepRolledBack, RollbackVerified, RollbackFailed, Resumed."
        )

    def test_a_step_reported_out_of_turn_is_refused(self) -> None:
        """A handler reporting a step that is not in flight is refused with both ids."""
        run, _ = drive(
            Run.new("r1", plan_of("a", "b")),
            LockAcquired("h"),
            Prepared(),
            ValidationPassed(Stage.PRE),
        )
        with pytest.raises(IllegalTransitionError, match="'b' reported, but 'a' is in flight"):
            transition(run, StepApplied("b"))

    def test_validation_result_of_the_wrong_stage_is_refused(self) -> None:
        """A post-validation result in VALIDATING_PRE is illegal."""
        run, _ = drive(Run.new("r1", plan_of("a")), LockAcquired("h"), Prepared())
        with pytest.raises(IllegalTransitionError, match="post-validation result arrived"):
            transition(run, ValidationPassed(Stage.POST))

    def test_accepted_in_lists_the_table_rows(self) -> None:
        """accepted_in derives from the table."""
        assert accepted_in(Phase.COMPLETING) == (Completed, RollbackRequested, Resumed)


class TestResumed:
    """A dead run taken over by another process goes on in the phase it died in."""

    def test_a_run_that_died_migrating_applies_its_in_flight_step_again(self) -> None:
        run, _ = drive(
            Run.new("r1", plan_of("a", "b")),
            LockAcquired("h1"),
            Prepared(),
            ValidationPassed(Stage.PRE),
            StepApplied("a"),
        )
        resumed, effects = transition(run, Resumed("h2"))
        assert (resumed.phase, resumed.in_flight, resumed.holder) == (Phase.MIGRATING, "b", "h2")
        assert resumed.applied == ("a",)
        assert effects == (FreezeWrites(), ApplyStep("b"))

    def test_a_run_that_died_rolling_back_goes_on_with_the_undo_due(self) -> None:
        run, _ = migrated(Run.new("r1", plan_of("a", "b")))
        run, _ = drive(run, RollbackRequested(Failure(kind=FailureKind.CRASH)), StepRolledBack("b"))
        resumed, effects = transition(run, Resumed("h2"))
        assert resumed.phase is Phase.ROLLING_BACK
        assert effects == (FreezeWrites(), UndoStep("a", partial=False))
        _, effects = transition(resumed, StepRolledBack("a"))
        assert effects == (VerifyRollback(),)

    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            ((LockAcquired("h1"),), RecordPreImages(("a",))),
            ((LockAcquired("h1"), Prepared()), RecordPreImages(("a",))),
            (
                (LockAcquired("h1"), Prepared(), ValidationPassed(Stage.PRE), StepApplied("a")),
                Validate(Stage.POST),
            ),
        ],
    )
    def test_each_working_phase_issues_its_effect_again(
        self, events: tuple[Event, ...], expected: object
    ) -> None:
        run, _ = drive(Run.new("r1", plan_of("a")), *events)
        resumed, effects = transition(run, Resumed("h2"))
        expected_phase = Phase.PREPARING if run.phase is Phase.VALIDATING_PRE else run.phase
        assert resumed.phase is expected_phase
        assert effects == (FreezeWrites(), expected)

    def test_an_ended_run_cannot_be_resumed(self) -> None:
        run, _ = migrated(Run.new("r1", plan_of("a")))
        run, _ = drive(run, ValidationPassed(Stage.POST), Completed())
        with pytest.raises(IllegalTransitionError, match="cannot accept Resumed"):
            transition(run, Resumed("h2"))


class RunMachine(RuleBasedStateMachine):
    """Random event sequences, steered into deep phases, checked against a model of effects."""

    @initialize(steps=st.lists(st_step_ids, unique=True, max_size=4))
    def start(self, steps: Sequence[str]) -> None:
        self.run = Run.new("r1", plan_of(*steps))
        self.lock_held = False
        self.frozen = False
        self.applied: list[str] = []

    def _absorb(self, event: Event) -> None:
        new, effects = transition(self.run, event)
        if isinstance(event, LockAcquired | Resumed):
            assert not self.lock_held
            self.lock_held = True
        for effect in effects:
            if isinstance(effect, ReleaseLock):
                assert self.lock_held, "released a lock not held"
                self.lock_held = False
            elif isinstance(effect, FreezeWrites):
                assert not self.frozen, "froze twice"
                self.frozen = True
            elif isinstance(effect, ThawWrites):
                assert self.frozen, "thawed without a freeze"
                self.frozen = False
            elif isinstance(effect, ApplyStep):
                assert new.phase is Phase.MIGRATING
            elif isinstance(effect, UndoStep):
                assert new.phase is Phase.ROLLING_BACK
        if isinstance(event, StepApplied):
            self.applied.append(event.step_id)
        if isinstance(event, StepRolledBack) and event.step_id in self.applied:
            self.applied.remove(event.step_id)
        self.run = new

    @rule(event=st_events)
    def any_event(self, event: Event) -> None:
        if isinstance(event, Resumed):
            return  # only after the holder died: see died_and_resumed
        with contextlib.suppress(IllegalTransitionError):
            self._absorb(event)

    @precondition(lambda self: self.run.phase in WORKING_PHASES)
    @rule()
    def died_and_resumed(self) -> None:
        # The process died: its lock went with its connection, its freeze is lifted as an
        # orphan by the process that takes over.
        self.lock_held = self.frozen = False
        self._absorb(Resumed("h2"))

    @precondition(lambda self: self.run.phase is Phase.IDLE and self.run.outcome is None)
    @rule()
    def lock_taken(self) -> None:
        self._absorb(LockAcquired("h"))

    @precondition(lambda self: self.run.phase is Phase.PREPARING)
    @rule()
    def prepared(self) -> None:
        self._absorb(Prepared())

    @precondition(lambda self: self.run.phase in (Phase.VALIDATING_PRE, Phase.VALIDATING_POST))
    @rule(fail=st.booleans(), finding=st_findings)
    def validated(self, fail: bool, finding: Finding) -> None:
        stage = Stage.PRE if self.run.phase is Phase.VALIDATING_PRE else Stage.POST
        if fail and finding.severity.fails:
            self._absorb(ValidationFailed(stage, [finding]))
        else:
            self._absorb(ValidationPassed(stage))

    @precondition(lambda self: self.run.phase is Phase.MIGRATING)
    @rule(ok=st.booleans())
    def next_step(self, ok: bool) -> None:
        step = self.run.in_flight
        assert step is not None
        if ok:
            self._absorb(StepApplied(step))
        else:
            self._absorb(StepFailed(step, Failure(kind=FailureKind.STEP_FAILED_PARTWAY)))

    @precondition(lambda self: self.run.phase is Phase.ROLLING_BACK)
    @rule(verified=st.booleans(), intact=st.booleans())
    def undo_next(self, verified: bool, intact: bool) -> None:
        if self.run.undo:
            self._absorb(StepRolledBack(self.run.undo[0]))
        elif verified:
            self._absorb(RollbackVerified())
        else:
            self._absorb(RollbackFailed(Failure(kind=FailureKind.DATA_INTEGRITY), intact=intact))

    @precondition(lambda self: self.run.phase is Phase.COMPLETING)
    @rule()
    def completed(self) -> None:
        self._absorb(Completed())

    @invariant()
    def lock_held_exactly_while_working(self) -> None:
        assert self.lock_held == (self.run.phase in WORKING_PHASES)

    @invariant()
    def frozen_exactly_while_working(self) -> None:
        assert self.frozen == (self.run.phase in WORKING_PHASES)

    @invariant()
    def applied_matches_the_model(self) -> None:
        assert list(self.run.applied) == self.applied

    @invariant()
    def a_rolled_back_run_has_nothing_applied(self) -> None:
        if self.run.outcome is Outcome.ROLLED_BACK:
            assert self.run.applied == ()

    @invariant()
    def only_a_failed_run_is_blocked(self) -> None:
        if self.run.blocked:
            assert self.run.outcome is Outcome.FAILED


TestRunMachine = RunMachine.TestCase


def test_run_values_are_frozen() -> None:
    """Runs cannot be changed in place; only transition() makes new ones."""
    run = Run.new("r1", plan_of("a"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        run.phase = Phase.MIGRATING  # type: ignore[misc]


def test_a_rollback_an_operator_asked_for_raises_an_info_alert_not_a_warning() -> None:
    """rollback RUN of a completed run: class A (the whole run) or the decision's class."""
    for classification, expected in (
        (None, Classification.A),
        (Classification.B, Classification.B),
    ):
        run = Run(id="r", steps=("a",), applied=("a",))
        run, _ = transition(run, LockAcquired("ops"))
        asked = Failure(kind=FailureKind.OPERATOR_ABORT, message="ops rolls back run x")
        run, effects = transition(run, RollbackRequested(asked, classification=classification))
        assert run.classification is expected
        assert isinstance(effects[0], RaiseAlert)
        assert effects[0].level is AlertLevel.INFO  # news: nobody has anything to do
        assert "rolling back on request: ops rolls back run x" in effects[0].message
        assert effects[-1] == UndoStep("a", partial=False)
