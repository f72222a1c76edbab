"""Frozen values of the functional core: steps, plans, findings, failures, runs.

The enumerations they use (phases, outcomes, stages, severities, failure kinds, rollback
classes) are :mod:`lupo_migrate.core.kinds`, re-exported here.

Nothing here does I/O; every class is an immutable ``attrs`` value, updated with
``attrs.evolve``. Rows and files are turned into these values by the shell (storage adapters,
file discovery), never by the values themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from lupo_migrate.core.kinds import (
    WORKING_PHASES,
    Classification,
    FailureKind,
    Outcome,
    Phase,
    Severity,
    Stage,
)

__all__ = [
    "DOWN_OFFSET",
    "UNDO_BASE",
    "WORKING_PHASES",
    "AppliedStep",
    "Classification",
    "Failure",
    "FailureKind",
    "Finding",
    "FreezeInfo",
    "JournalEntry",
    "LockInfo",
    "Outcome",
    "Phase",
    "Plan",
    "Run",
    "RunId",
    "Severity",
    "Stage",
    "Step",
    "StepId",
    "ValidationContext",
]

#: A run's identifier (opaque text chosen by the shell, e.g. a UUID hex).
RunId = str
#: A step's identifier: the migration file's id (header ``id``, else derived from its name).
StepId = str

#: Journal indexes from here on are a step's down statements (``DOWN_OFFSET + i`` for the
#: i-th), below it its up statements: far above any file's statement count (a file of
#: 100,000 statements is applied in one step), within a 32-bit column.
DOWN_OFFSET: Final = 1_000_000_000
#: Journal indexes from here on are undo records a handler keeps (``StepContext.record``),
#: not statements: what to put back when the step is undone (files' original bytes, the
#: previous configuration records).
UNDO_BASE: Final = 2_000_000_000


def _tuple_of_str(value: Iterable[Any]) -> tuple[str, ...]:
    # Runs are evolved at every transition, and a tuple here has been through this converter
    # already: return it as is (checking each item made a 1,000-step run quadratic).
    if type(value) is tuple:
        return value
    return tuple(str(v) for v in value)


def to_findings(value: Iterable[Finding]) -> tuple[Finding, ...]:
    """Converter: any iterable of findings as a tuple."""
    return tuple(value)


def to_steps(value: Iterable[Step]) -> tuple[Step, ...]:
    """Converter: any iterable of steps as a tuple."""
    return tuple(value)


def to_classes(value: Iterable[Classification]) -> tuple[Classification, ...]:
    """Converter: any iterable of classifications as a tuple."""
    return tuple(value)


def to_generations(value: Iterable[Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    """Converter: generations of step ids as nested tuples."""
    return tuple(tuple(g) for g in value)


def _mapping_copy(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Step:
    """One migration file inside a plan.

    Attributes:
        id: unique id (header ``id``, else derived from the file name).
        path: path relative to the migrations root, POSIX separators.
        file_type: picks the handler (``doctrine``, ``module``, ``agent``, ``documentation``...).
        checksum: hex SHA-256 of the LF-normalised content.
        depends_on: ids this step needs applied first.
        version: sortable version text used to order independent steps (may be empty).
        module: the module a ``module`` step belongs to, if any.
        repeatable: a Flyway repeatable file (``R__name.sql``): planned after the other
            steps, and pending again whenever its checksum differs from the applied one.
        meta: the rest of the header, as read.
    """

    id: StepId
    path: str
    file_type: str = "doctrine"
    checksum: str = ""
    depends_on: tuple[StepId, ...] = attrs.field(default=(), converter=_tuple_of_str)
    version: str = ""
    module: str | None = None
    repeatable: bool = False
    meta: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_mapping_copy, eq=False, hash=False, repr=False
    )


@attrs.frozen(kw_only=True)
class Plan:
    """The ordered steps of a run, computed before anything runs.

    Attributes:
        steps: the steps in the order they will be applied.
        generations: groups of step ids that depend only on earlier groups (may run in parallel).
    """

    steps: tuple[Step, ...] = attrs.field(default=(), converter=to_steps)
    generations: tuple[tuple[StepId, ...], ...] = attrs.field(default=(), converter=to_generations)

    @property
    def ids(self) -> tuple[StepId, ...]:
        """The step ids in plan order."""
        return tuple(s.id for s in self.steps)

    def __len__(self) -> int:
        return len(self.steps)


@attrs.frozen(kw_only=True)
class Finding:
    """A validator's result: a failed check is a finding, never an exception.

    Renders as ``message @ path:line`` followed by the hint.
    """

    severity: Severity
    message: str
    path: str | None = None
    line: int | None = None
    hint: str | None = None
    code: str = ""
    kind: FailureKind | None = None
    step_id: StepId | None = None

    @property
    def where(self) -> str:
        """``path:line``, ``path``, or an empty string."""
        if self.path is None:
            return ""
        return self.path if self.line is None else f"{self.path}:{self.line}"

    def __str__(self) -> str:
        text = self.message
        if self.where:
            text = f"{self.where}: {text}"
        if self.hint:
            text += f" ({self.hint})"
        return text


@attrs.frozen(kw_only=True)
class Failure:
    """A fact about something that went wrong, for the classifier and the record.

    Attributes:
        kind: what sort of failure it is.
        message: what happened, with the values.
        step_id: the step concerned, if any.
        critical: for validation failures, whether the finding was critical.
    """

    kind: FailureKind
    message: str = ""
    step_id: StepId | None = None
    critical: bool = False


@attrs.frozen(kw_only=True)
class Run:
    """One attempt to apply a plan to one target; the state the transition function moves.

    A run starts in ``IDLE`` with no outcome, and ends in ``IDLE`` with one. Build with
    ``Run.new``; update only through ``lupo_migrate.core.state.transition``.

    Attributes:
        id: the run id.
        target: name of the target (database) it migrates.
        phase: the current phase.
        steps: the plan's step ids, in order.
        applied: ids of the steps applied so far, in order.
        in_flight: the step being applied (its effect was issued, no result yet).
        undo: ids still to undo during ROLLING_BACK, next first.
        outcome: how it ended, once back in IDLE.
        blocked: a failed rollback blocks the target until resolved.
        classification: the rollback class that sent it to ROLLING_BACK, if any.
        failure: the failure that did.
        findings: findings recorded along the way.
        pending: classes (B, C, D) of decisions recorded when completing with findings.
        holder: the run lock holder while working.
        version: incremented by every transition; storage writes compare and set on it.
        rolls_back: for an operator's rollback, the completed run it rolls back (``recover``
            finishing a rollback whose process died answers that run's decisions).
        rolls_back_scope: and the class whose scope it rolls back (None: the whole run).
        started_by: who started it (the operator's name; the OS user by default), shown by
            ``status`` and ``history``; None for runs recorded before it was kept.
    """

    id: RunId
    target: str = "default"
    phase: Phase = Phase.IDLE
    steps: tuple[StepId, ...] = attrs.field(default=(), converter=_tuple_of_str)
    applied: tuple[StepId, ...] = attrs.field(default=(), converter=_tuple_of_str)
    in_flight: StepId | None = None
    undo: tuple[StepId, ...] = attrs.field(default=(), converter=_tuple_of_str)
    outcome: Outcome | None = None
    blocked: bool = False
    classification: Classification | None = None
    failure: Failure | None = None
    findings: tuple[Finding, ...] = attrs.field(default=(), converter=to_findings)
    pending: tuple[Classification, ...] = attrs.field(default=(), converter=to_classes)
    holder: str | None = None
    version: int = 0
    rolls_back: RunId | None = None
    rolls_back_scope: Classification | None = None
    started_by: str | None = None

    @classmethod
    def new(
        cls, run_id: RunId, plan: Plan, *, target: str = "default", started_by: str | None = None
    ) -> Run:
        """A run of *plan* on *target*, not started yet (``IDLE``, no outcome)."""
        return cls(id=run_id, target=target, steps=plan.ids, started_by=started_by)

    @property
    def ended(self) -> bool:
        """Whether the run is back in IDLE with an outcome."""
        return self.phase is Phase.IDLE and self.outcome is not None

    @property
    def next_step(self) -> StepId | None:
        """The next step to apply in MIGRATING, or None when all are applied."""
        index = len(self.applied)
        return self.steps[index] if index < len(self.steps) else None


@attrs.frozen(kw_only=True)
class AppliedStep:
    """A ledger row: a step applied to a target, with the checksum it had then.

    Attributes:
        step_id: the step.
        target: the target it was applied to.
        checksum: checksum of the file when applied (or as accepted later by an operator).
        run_id: the run that applied it (or the baseline).
        applied_at: ``YYYYMMDDHHMMSS`` UTC.
        path: the file's path relative to the migrations root.
        file_type: the handler's file type.
    """

    step_id: StepId
    target: str
    checksum: str
    run_id: RunId
    applied_at: int
    path: str = ""
    file_type: str = "doctrine"


@attrs.frozen(kw_only=True)
class JournalEntry:
    """A write-ahead journal row: the intent to run one statement, and whether it finished.

    Attributes:
        id: sequence number assigned by storage (increasing per storage).
        run_id: the run.
        step_id: the step the statement belongs to.
        index: the statement's position in the step (0-based).
        statement: the text sent (passwords never appear: it is migration SQL).
        started_at: ``YYYYMMDDHHMMSS`` UTC when the intent was written.
        done_at: when it finished, None while in flight (after a crash: unknown outcome).
    """

    id: int
    run_id: RunId
    step_id: StepId
    index: int
    statement: str
    started_at: int
    done_at: int | None = None


@attrs.frozen(kw_only=True)
class LockInfo:
    """Who holds a run lock: owner, since when and last heartbeat (``YYYYMMDDHHMMSS`` UTC)."""

    name: str
    owner: str
    since: int
    heartbeat: int


@attrs.frozen(kw_only=True)
class FreezeInfo:
    """An active write freeze: owner, since when, and when it expires by itself."""

    owner: str
    since: int
    expires: int


@attrs.frozen(kw_only=True)
class ValidationContext:
    """What a validator sees: values only, gathered by the shell beforehand.

    Attributes:
        stage: pre, during or post.
        plan: the run's plan.
        run: the run as it is now.
        applied: the target's ledger before the run, by step id.
        step: the step just applied (``during`` only).
        facts: further measured facts (table counts, fingerprints...) by name.
    """

    stage: Stage
    plan: Plan
    run: Run
    applied: Mapping[StepId, AppliedStep] = attrs.field(factory=dict, converter=_mapping_copy)
    step: Step | None = None
    facts: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping_copy)
