"""The enumerations of the functional core: phases, outcomes, stages, severities, failure
kinds and rollback classes, each member with what it means.

Apart from :mod:`lupo_migrate.core.model` (the frozen values that use them, which re-exports every
name here) so that the doctrine's vocabulary reads in one place. Members are stored by value.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "WORKING_PHASES",
    "Classification",
    "FailureKind",
    "Outcome",
    "Phase",
    "Severity",
    "Stage",
]


class Phase(enum.Enum):
    """The seven phases of a run (the doctrine's states)."""

    #: No work under way: before a run starts, and after it ended (see ``Run.outcome``).
    IDLE = "idle"
    #: Writes frozen, run lock held, plan fixed, pre-images being recorded.
    PREPARING = "preparing"
    #: Checks before anything changes: drift, dependencies, checksums, budget, lint.
    VALIDATING_PRE = "validating_pre"
    #: Steps applied one by one in plan order, each journalled and checked.
    MIGRATING = "migrating"
    #: Checks after the last step: schema as planned, untouched data unchanged, probes.
    VALIDATING_POST = "validating_post"
    #: History, decisions with deadlines and alerts recorded; thaw and unlock on the way out.
    COMPLETING = "completing"
    #: Applied (and partly applied) steps undone in reverse order, then verified.
    ROLLING_BACK = "rolling_back"


#: Phases in which a run holds the run lock and the write freeze.
WORKING_PHASES: Final = frozenset(Phase) - {Phase.IDLE}


class Outcome(enum.Enum):
    """How a run ended."""

    #: Every step applied and validated; decisions (B/C/D) may still be pending.
    COMPLETED = "completed"
    #: The run was undone and the target verified against its pre-image.
    ROLLED_BACK = "rolled_back"
    #: A rollback could not finish: the target is blocked until an operator resolves it.
    FAILED = "failed"


class Stage(enum.Enum):
    """When a validator runs."""

    PRE = "pre"
    DURING = "during"
    POST = "post"


class Severity(enum.Enum):
    """How bad a finding is. Only ``ERROR`` and ``CRITICAL`` fail a validation."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def fails(self) -> bool:
        """Whether a finding of this severity fails the validation it came from."""
        return self in (Severity.ERROR, Severity.CRITICAL)


class FailureKind(enum.Enum):
    """Facts about what went wrong; the rollback classifier maps each to a class.

    Backends and validators translate their own exceptions into one of these, so the core
    never sees a driver exception.
    """

    CRITICAL_VALIDATION = "critical_validation"
    DATA_INTEGRITY = "data_integrity"
    STEP_FAILED_PARTWAY = "step_failed_partway"
    CRASH = "crash"
    LOCK_LOST = "lock_lost"
    STORAGE_UNREACHABLE = "storage_unreachable"
    OPERATOR_ABORT = "operator_abort"
    PERFORMANCE_DEGRADATION = "performance_degradation"
    NONCRITICAL_STEP_FAILURE = "noncritical_step_failure"
    SEMANTIC_INCONSISTENCY = "semantic_inconsistency"
    LINT = "lint"
    DOCUMENTATION_MISMATCH = "documentation_mismatch"


class Classification(enum.Enum):
    """Rollback classes of the doctrine, most drastic first."""

    #: Whole run, automatically, at once.
    A = "A"
    #: Affected steps and their dependants, on decision (24 h by default).
    B = "B"
    #: Doctrine steps concerned and their dependants, on decision (7 days).
    C = "C"
    #: Documentation steps concerned, on decision (30 days).
    D = "D"
