"""The rollback classifier: facts about a failure in, a rollback decision out.

The doctrine's four classes, as one table (``RULES``) from a ``FailureKind`` to a
``Classification``, and the default decision windows (``DEFAULT_WINDOWS``):

====== ===================================================== ================= ==========
class  triggered by                                          rolled back       window
====== ===================================================== ================= ==========
A      critical validation, data integrity, a step failed     the whole run      none
       part-way, a crash, a lost lock or storage, an abort    at once
B      performance degradation, a non-critical step failure   affected steps +   24 hours
                                                              dependants
C      semantic inconsistency (doctrine rules, lint)          doctrine steps +   7 days
                                                              dependants
D      documentation mismatch (headers, metadata)             documentation      30 days
                                                              steps
====== ===================================================== ================= ==========

Pure: no clock (a window is a duration; the shell adds it to *now* to get a deadline).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Final

import attrs

from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.core.model import Classification, Failure, FailureKind, Finding, Severity

__all__ = [
    "DEFAULT_WINDOWS",
    "RULES",
    "RollbackDecision",
    "Scope",
    "classify",
    "classify_finding",
    "decision_for",
    "most_drastic",
]


class Scope(enum.Enum):
    """What a rollback of a given class undoes."""

    #: Every step of the run.
    WHOLE_RUN = "whole_run"
    #: The affected steps and every step depending on them (graph descendants).
    AFFECTED_AND_DEPENDANTS = "affected_and_dependants"
    #: The doctrine steps concerned and their dependants.
    DOCTRINE_AND_DEPENDANTS = "doctrine_and_dependants"
    #: The documentation steps concerned.
    DOCUMENTATION_STEPS = "documentation_steps"


#: The single source of truth: which class each kind of failure calls for.
RULES: Final[Mapping[FailureKind, Classification]] = {
    FailureKind.CRITICAL_VALIDATION: Classification.A,
    FailureKind.DATA_INTEGRITY: Classification.A,
    FailureKind.STEP_FAILED_PARTWAY: Classification.A,
    FailureKind.CRASH: Classification.A,
    # The world failed under us (lock or storage gone): we cannot vouch for what ran.
    FailureKind.LOCK_LOST: Classification.A,
    FailureKind.STORAGE_UNREACHABLE: Classification.A,
    FailureKind.OPERATOR_ABORT: Classification.A,
    FailureKind.PERFORMANCE_DEGRADATION: Classification.B,
    FailureKind.NONCRITICAL_STEP_FAILURE: Classification.B,
    FailureKind.SEMANTIC_INCONSISTENCY: Classification.C,
    FailureKind.LINT: Classification.C,
    FailureKind.DOCUMENTATION_MISMATCH: Classification.D,
}

_SCOPES: Final[Mapping[Classification, Scope]] = {
    Classification.A: Scope.WHOLE_RUN,
    Classification.B: Scope.AFFECTED_AND_DEPENDANTS,
    Classification.C: Scope.DOCTRINE_AND_DEPENDANTS,
    Classification.D: Scope.DOCUMENTATION_STEPS,
}

#: The doctrine's decision windows; ``None`` means immediate (no decision).
DEFAULT_WINDOWS: Final[Mapping[Classification, timedelta | None]] = {
    Classification.A: None,
    Classification.B: timedelta(hours=24),
    Classification.C: timedelta(days=7),
    Classification.D: timedelta(days=30),
}

# Severity order used to pick the most drastic of several decisions: A before B before C, D.
_RANK: Final[Mapping[Classification, int]] = {c: i for i, c in enumerate(Classification)}


@attrs.frozen(kw_only=True)
class RollbackDecision:
    """What a failure calls for.

    Attributes:
        classification: A, B, C or D.
        scope: what a rollback of this class undoes.
        window: how long the rollback stays possible; None for class A (immediate).
        automatic: whether the run rolls back by itself (class A only).
    """

    classification: Classification
    scope: Scope
    window: timedelta | None
    automatic: bool


def _decision(
    classification: Classification, windows: Mapping[Classification, timedelta | None]
) -> RollbackDecision:
    window = windows.get(classification, DEFAULT_WINDOWS[classification])
    if classification is Classification.A:
        window = None
    elif window is None or window <= timedelta(0):
        raise InvalidArgumentError(
            f"decision window of class {classification.value} must be a positive duration,"
            f" got {window!r}; set it in the windows mapping, e.g. timedelta(hours=24)"
        )
    return RollbackDecision(
        classification=classification,
        scope=_SCOPES[classification],
        window=window,
        automatic=classification is Classification.A,
    )


def classify(
    failure: Failure,
    *,
    windows: Mapping[Classification, timedelta | None] = DEFAULT_WINDOWS,
) -> RollbackDecision:
    """The rollback decision for *failure*, by the ``RULES`` table.

    Args:
        failure: the facts; a critical failure is always class A whatever its kind.
        windows: decision windows by class, to override the doctrine's defaults.

    Returns:
        The decision: class, scope, window and whether it is automatic.
    """
    if not isinstance(failure, Failure):
        raise InvalidArgumentError(f"classify() takes a Failure, got {failure!r}")
    classification = Classification.A if failure.critical else RULES[failure.kind]
    return _decision(classification, windows)


def classify_finding(
    finding: Finding,
    *,
    windows: Mapping[Classification, timedelta | None] = DEFAULT_WINDOWS,
) -> RollbackDecision:
    """The decision for a failing finding: its kind decides; without one, it is critical (A).

    A ``CRITICAL`` finding is class A whatever its kind.
    """
    kind = finding.kind or FailureKind.CRITICAL_VALIDATION
    critical = finding.severity is Severity.CRITICAL
    return classify(Failure(kind=kind, critical=critical), windows=windows)


def decision_for(
    classification: Classification,
    *,
    windows: Mapping[Classification, timedelta | None] = DEFAULT_WINDOWS,
) -> RollbackDecision:
    """The decision of *classification* itself (an operator rolling back a decided scope)."""
    return _decision(classification, windows)


def most_drastic(decisions: Iterable[RollbackDecision]) -> RollbackDecision | None:
    """The decision with the most drastic class (A first), or None for no decisions."""
    return min(decisions, key=lambda d: _RANK[d.classification], default=None)
