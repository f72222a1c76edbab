"""The rollback classifier: one test row per table row, plus windows and the drastic pick."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lupo_migrate.core.classifier import (
    DEFAULT_WINDOWS,
    RULES,
    Scope,
    classify,
    classify_finding,
    most_drastic,
)
from lupo_migrate.core.model import Classification, Failure, FailureKind, Finding, Severity
from lupo_migrate.errors import InvalidArgumentError

A, B, C, D = Classification.A, Classification.B, Classification.C, Classification.D
DAY = timedelta(days=1)

ROWS = [
    (FailureKind.CRITICAL_VALIDATION, A, Scope.WHOLE_RUN, None),
    (FailureKind.DATA_INTEGRITY, A, Scope.WHOLE_RUN, None),
    (FailureKind.STEP_FAILED_PARTWAY, A, Scope.WHOLE_RUN, None),
    (FailureKind.CRASH, A, Scope.WHOLE_RUN, None),
    (FailureKind.LOCK_LOST, A, Scope.WHOLE_RUN, None),
    (FailureKind.STORAGE_UNREACHABLE, A, Scope.WHOLE_RUN, None),
    (FailureKind.OPERATOR_ABORT, A, Scope.WHOLE_RUN, None),
    (FailureKind.PERFORMANCE_DEGRADATION, B, Scope.AFFECTED_AND_DEPENDANTS, DAY),
    (FailureKind.NONCRITICAL_STEP_FAILURE, B, Scope.AFFECTED_AND_DEPENDANTS, DAY),
    (FailureKind.SEMANTIC_INCONSISTENCY, C, Scope.DOCTRINE_AND_DEPENDANTS, 7 * DAY),
    (FailureKind.LINT, C, Scope.DOCTRINE_AND_DEPENDANTS, 7 * DAY),
    (FailureKind.DOCUMENTATION_MISMATCH, D, Scope.DOCUMENTATION_STEPS, 30 * DAY),
]


class TestClassify:
    @pytest.mark.parametrize(("kind", "cls", "scope", "window"), ROWS)
    def test_each_kind_maps_to_the_doctrine_class(
        self, kind: FailureKind, cls: Classification, scope: Scope, window: timedelta | None
    ) -> None:
        """Each failure kind gives the doctrine's class, scope and default window."""
        decision = classify(Failure(kind=kind))
        assert decision.classification is cls
        assert decision.scope is scope
        assert decision.window == window
        assert decision.automatic is (cls is A)

    def test_rows_cover_every_kind(self) -> None:
        """The table and the test rows both cover every FailureKind."""
        assert set(RULES) == set(FailureKind) == {row[0] for row in ROWS}

    @pytest.mark.parametrize("kind", list(FailureKind))
    def test_a_critical_failure_is_always_class_a(self, kind: FailureKind) -> None:
        """critical=True overrides the kind."""
        assert classify(Failure(kind=kind, critical=True)).classification is A

    def test_windows_are_configurable(self) -> None:
        """A caller's windows replace the defaults; class A stays immediate."""
        windows = {**DEFAULT_WINDOWS, B: timedelta(hours=2), A: timedelta(hours=9)}
        assert classify(
            Failure(kind=FailureKind.PERFORMANCE_DEGRADATION), windows=windows
        ).window == timedelta(hours=2)
        assert classify(Failure(kind=FailureKind.CRASH), windows=windows).window is None

    def test_a_non_positive_window_is_refused(self) -> None:
        """A zero window for B/C/D is an argument error naming the class."""
        with pytest.raises(InvalidArgumentError, match="class C"):
            classify(Failure(kind=FailureKind.LINT), windows={C: timedelta(0)})

    def test_only_failures_are_classified(self) -> None:
        """Passing an exception instead of facts is an argument error."""
        with pytest.raises(InvalidArgumentError, match="takes a Failure"):
            classify(RuntimeError("boom"))  # type: ignore[arg-type]


class TestClassifyFinding:
    def test_a_finding_without_kind_is_critical_validation(self) -> None:
        """A failing finding that says nothing of its kind is treated as class A."""
        finding = Finding(severity=Severity.ERROR, message="?")
        assert classify_finding(finding).classification is A

    def test_a_critical_finding_is_class_a_whatever_its_kind(self) -> None:
        """Severity CRITICAL overrides a documentation kind."""
        finding = Finding(
            severity=Severity.CRITICAL, message="x", kind=FailureKind.DOCUMENTATION_MISMATCH
        )
        assert classify_finding(finding).classification is A

    def test_a_documentation_finding_is_class_d(self) -> None:
        """An ERROR documentation mismatch is class D with a 30 day window."""
        finding = Finding(
            severity=Severity.ERROR, message="x", kind=FailureKind.DOCUMENTATION_MISMATCH
        )
        decision = classify_finding(finding)
        assert (decision.classification, decision.window) == (D, 30 * DAY)


class TestMostDrastic:
    def test_a_beats_everything_and_b_beats_c_and_d(self) -> None:
        """The most drastic class wins; no decisions gives None."""
        d = classify(Failure(kind=FailureKind.DOCUMENTATION_MISMATCH))
        c = classify(Failure(kind=FailureKind.LINT))
        b = classify(Failure(kind=FailureKind.PERFORMANCE_DEGRADATION))
        a = classify(Failure(kind=FailureKind.CRASH))
        assert most_drastic([d, c, b]) == b
        assert most_drastic([d, a, c]) == a
        assert most_drastic([d, c]) == c
        assert most_drastic([]) is None
