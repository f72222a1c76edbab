"""Validators: findings, not exceptions; every validator runs."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from lupo_migrate.core.model import (
    AppliedStep,
    Finding,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
    ValidationContext,
)
from lupo_migrate.core.validation import (
    all_of,
    checksums_unchanged,
    dependencies_applied,
    run_validators,
    table_budget,
)
from lupo_migrate.errors import InvalidArgumentError


def context(
    steps: list[Step], applied: dict[str, AppliedStep] | None = None, **facts: object
) -> ValidationContext:
    plan = Plan(steps=steps)
    return ValidationContext(
        stage=Stage.PRE, plan=plan, run=Run.new("r", plan), applied=applied or {}, facts=facts
    )


def ledger(step_id: str, checksum: str) -> AppliedStep:
    return AppliedStep(step_id=step_id, target="t", checksum=checksum, run_id="r0", applied_at=0)


class TestChecksums:
    def test_an_edited_applied_file_is_critical_and_names_the_fix(self) -> None:
        """A changed checksum gives one critical finding with the file and the accept command."""
        step = Step(id="a", path="a.sql", checksum="b" * 64)
        (finding,) = run_validators(
            checksums_unchanged(), context([step], {"a": ledger("a", "a" * 64)})
        )
        assert finding.severity is Severity.CRITICAL
        assert finding.path == "a.sql"
        assert "verify --accept a" in (finding.hint or "")

    def test_an_unchanged_file_passes(self) -> None:
        """Equal checksums give no finding."""
        step = Step(id="a", path="a.sql", checksum="a" * 64)
        assert (
            run_validators(checksums_unchanged(), context([step], {"a": ledger("a", "a" * 64)}))
            == ()
        )


class TestDependencies:
    def test_a_dependency_neither_applied_nor_planned_is_reported(self) -> None:
        """Each missing dependency is one finding naming both ids."""
        steps = [Step(id="b", path="b.sql", depends_on=["a", "z"])]
        findings = run_validators(dependencies_applied(), context(steps, {"a": ledger("a", "x")}))
        assert [f.message for f in findings] == [
            "b depends on z, which is neither applied nor planned"
        ]


class TestTableBudget:
    def test_over_budget_is_an_error_saying_how_many_and_how_to_raise_it(self) -> None:
        """185 tables against 77 names both numbers and the setting."""
        (finding,) = run_validators(table_budget(77), context([], core_tables=185))
        assert "185 tables" in finding.message
        assert "budget of 77" in finding.message
        assert "table_budget" in (finding.hint or "")

    def test_within_budget_or_unmeasured_passes(self) -> None:
        """At the budget, or with no count measured, nothing is found."""
        assert run_validators(table_budget(200), context([], core_tables=185)) == ()
        assert run_validators(table_budget(), context([])) == ()

    @pytest.mark.parametrize("bad", [-1, "77", True, 7.5])
    def test_a_bad_budget_is_an_argument_error(self, bad: object) -> None:
        """Budgets are whole numbers >= 0."""
        with pytest.raises(InvalidArgumentError, match="table budget"):
            table_budget(bad)  # type: ignore[arg-type]


class TestAllOf:
    def test_every_validator_runs_and_all_findings_come_back(self) -> None:
        """Two failing validators give both findings, in order."""

        def one(_: ValidationContext) -> Iterable[Finding]:
            yield Finding(severity=Severity.ERROR, message="one")

        combined = all_of(one, table_budget(1))
        messages = [f.message for f in run_validators(combined, context([], core_tables=3))]
        assert messages[0] == "one"
        assert "3 tables" in messages[1]
        assert "table_budget(1)" in repr(combined)

    def test_non_callables_are_refused(self) -> None:
        """all_of names what it was given."""
        with pytest.raises(InvalidArgumentError, match="42"):
            all_of(42)  # type: ignore[arg-type]
