"""Validators: callables ``(context) -> Iterable[Finding]``, combined with ``all_of``.

A failed check is a finding, never an exception, and every validator runs, so a user sees
every problem at once. Built-ins are small frozen callables with a readable ``repr``, made by
public factories. Pure: a validator sees only the values in its ``ValidationContext`` (the
shell measures live facts, such as the table count, beforehand).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from lupo_migrate._model import FailureKind, Finding, Severity, ValidationContext
from lupo_migrate.errors import InvalidArgumentError
from lupo_migrate.typing import Validator

__all__ = [
    "DEFAULT_TABLE_BUDGET",
    "all_of",
    "checksums_unchanged",
    "dependencies_applied",
    "run_validators",
    "table_budget",
]

#: The doctrine's architectural limit on core tables.
DEFAULT_TABLE_BUDGET: Final = 77


@attrs.frozen
class _AllOf:
    validators: tuple[Validator, ...]

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        for validator in self.validators:
            yield from validator(context)

    def __repr__(self) -> str:
        return f"all_of({', '.join(map(repr, self.validators))})"


def all_of(*validators: Validator) -> Validator:
    """One validator running each of *validators* in turn and yielding all their findings."""
    for v in validators:
        if not callable(v):
            raise InvalidArgumentError(f"all_of() takes validators (callables), got {v!r}")
    return _AllOf(validators)


def run_validators(validator: Validator, context: ValidationContext) -> tuple[Finding, ...]:
    """Every finding of *validator* on *context*, as a tuple."""
    return tuple(validator(context))


@attrs.frozen(repr=False)
class _ChecksumsUnchanged:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        for step in context.plan.steps:
            entry = context.applied.get(step.id)
            if entry is not None and step.checksum and entry.checksum != step.checksum:
                yield Finding(
                    severity=Severity.CRITICAL,
                    message=(
                        f"{step.id} was applied with checksum {entry.checksum[:12]} but the file"
                        f" now has {step.checksum[:12]}: it was edited after it was applied"
                    ),
                    path=step.path,
                    hint="restore the file, or accept the new checksum with"
                    f" `lupo-migrate verify --accept {step.id}`",
                    code="checksum-changed",
                    kind=FailureKind.CRITICAL_VALIDATION,
                    step_id=step.id,
                )

    def __repr__(self) -> str:
        return "checksums_unchanged()"


def checksums_unchanged() -> Validator:
    """Already applied files must still have the checksum they were applied with."""
    return _ChecksumsUnchanged()


@attrs.frozen(repr=False)
class _DependenciesApplied:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        planned = set(context.plan.ids)
        for step in context.plan.steps:
            for dep in step.depends_on:
                if dep not in planned and dep not in context.applied:
                    yield Finding(
                        severity=Severity.ERROR,
                        message=f"{step.id} depends on {dep}, which is neither applied nor planned",
                        path=step.path,
                        hint=f"add {dep} to the migrations, or plan up to a step that includes it",
                        code="dependency-missing",
                        kind=FailureKind.CRITICAL_VALIDATION,
                        step_id=step.id,
                    )

    def __repr__(self) -> str:
        return "dependencies_applied()"


def dependencies_applied() -> Validator:
    """Every dependency of a planned step is applied already or earlier in the plan."""
    return _DependenciesApplied()


@attrs.frozen(repr=False)
class _TableBudget:
    budget: int
    fact: str

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        count = context.facts.get(self.fact)
        if count is None:
            return
        if int(count) > self.budget:
            yield Finding(
                severity=Severity.ERROR,
                message=(
                    f"the core schema has {count} tables, over the table budget of"
                    f" {self.budget} by {int(count) - self.budget}"
                ),
                hint="drop or merge tables, or raise the budget: table_budget in lupo.toml"
                " or [tool.lupo_migrate], or --table-budget N",
                code="table-budget",
                kind=FailureKind.CRITICAL_VALIDATION,
            )

    def __repr__(self) -> str:
        return f"table_budget({self.budget})"


def table_budget(budget: int = DEFAULT_TABLE_BUDGET, *, fact: str = "core_tables") -> Validator:
    """The core table count (the context fact *fact*) must not exceed *budget*.

    Args:
        budget: the limit, 77 by the doctrine.
        fact: the name under which the shell puts the measured (or projected) count.
    """
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise InvalidArgumentError(
            f"table budget must be a whole number of tables >= 0, got {budget!r}"
        )
    return _TableBudget(budget, fact)
