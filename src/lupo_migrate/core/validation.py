"""Validators: callables ``(context) -> Iterable[Finding]``, combined with ``all_of``.

A failed check is a finding, never an exception, and every validator runs, so a user sees
every problem at once. Built-ins are small frozen callables with a readable ``repr``, made by
public factories. Pure: a validator sees only the values in its ``ValidationContext`` (the
shell measures live facts, such as the table count, beforehand).

This module holds the combinators, the checks of the plan itself (checksums, dependencies, the
table budget) and those of the rollback and performance facts the shell measures (backup limit,
rollback availability, probes). The schema and data comparisons live in ``core.schema_checks``, the
fact keys in ``core.fact_keys``; both are re-exported here, the one place to import
validators from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from lupo_migrate.core.clock import from_stamp
from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.core.fact_keys import (
    APART,
    BEFORE,
    DATA_AFTER,
    DATA_BEFORE,
    DOWN_STATEMENTS,
    EFFECTS,
    ESTIMATES,
    EXPLICIT_DOWN,
    FINGERPRINT,
    NEEDS,
    NO_ROLLBACK,
    PROBES_AFTER,
    PROBES_BEFORE,
    RECORDED,
    SOFT_DROP,
    UNKNOWN,
    UNSPLIT,
)
from lupo_migrate.core.fingerprint import Fingerprint, row_key
from lupo_migrate.core.model import FailureKind, Finding, Severity, Stage, ValidationContext
from lupo_migrate.core.ports import Validator

# The next two imports are re-exported (listed in __all__): importers take every validator and
# fact key from here.
from lupo_migrate.core.schema_checks import (
    declared_effects,
    expected_existence,
    referring,
    schema_drift,
    touched_keys,
    untouched_unchanged,
)

__all__ = [
    "APART",
    "BEFORE",
    "DATA_AFTER",
    "DATA_BEFORE",
    "DEFAULT_TABLE_BUDGET",
    "DOWN_STATEMENTS",
    "EFFECTS",
    "ESTIMATES",
    "EXPLICIT_DOWN",
    "FINGERPRINT",
    "NEEDS",
    "NO_ROLLBACK",
    "PROBES_AFTER",
    "PROBES_BEFORE",
    "RECORDED",
    "SOFT_DROP",
    "UNKNOWN",
    "UNSPLIT",
    "all_of",
    "applied_files_present",
    "backup_limit",
    "checksums_unchanged",
    "declared_effects",
    "dependencies_applied",
    "expected_existence",
    "performance_probes",
    "referring",
    "rollback_available",
    "run_validators",
    "schema_drift",
    "table_budget",
    "touched_keys",
    "untouched_unchanged",
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
            if step.repeatable:
                continue  # a repeatable file is meant to change: it runs again then
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
    """Already applied files must still have the checksum they were applied with
    (repeatable files, ``R__x.sql``, excepted: a change makes them pending again)."""
    return _ChecksumsUnchanged()


@attrs.frozen(repr=False)
class _AppliedFilesPresent:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        present = set(context.plan.ids)
        for step_id, entry in sorted(context.applied.items()):
            if step_id in present:
                continue
            where = f" ({entry.path})" if entry.path else ""
            yield Finding(
                severity=Severity.WARNING,
                message=f"{step_id}{where} is applied (run {entry.run_id[:12]},"
                f" {from_stamp(entry.applied_at):%Y-%m-%d %H:%M:%S} UTC) but its file is no"
                " longer in the migrations directory",
                path=entry.path or None,
                hint="restore the file, or check that the directory is the right one: its"
                " changes are in the database, and a step whose file is gone cannot be"
                " verified nor rolled back",
                code="applied-file-missing",
                step_id=step_id,
            )

    def __repr__(self) -> str:
        return "applied_files_present()"


def applied_files_present() -> Validator:
    """Every applied step still has its file (a WARNING names each one that is gone)."""
    return _AppliedFilesPresent()


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
            # Over the budget already: refused only when the plan creates tables (a run that
            # creates none cannot make it worse); each step that does is checked after it.
            effects = context.facts.get(EFFECTS)
            creates = (
                effects is None
                or bool(context.facts.get(UNKNOWN))  # statements of unknown effect may
                or any(e[1] == "table" and e[3] == "create" for e in effects)
            )
            yield Finding(
                severity=Severity.ERROR if creates else Severity.WARNING,
                message=(
                    f"the core schema has {count} tables, over the table budget of"
                    f" {self.budget} by {int(count) - self.budget}"
                    + ("" if creates else " (this run creates no table)")
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


# --------------------------------------------------------------------------------------------
# Rollback and performance checks on facts the shell measures (keys in ``core.fact_keys``).


@attrs.frozen(repr=False)
class _BackupLimit:
    limit: int

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        estimates = context.facts.get(ESTIMATES) or {}
        explicit = context.facts.get(EXPLICIT_DOWN) or frozenset()
        fingerprint = context.facts.get(FINGERPRINT)
        soft = bool(context.facts.get(SOFT_DROP))
        paths = {s.id: s.path for s in context.plan.steps}
        reported: set[tuple[str, str]] = set()
        created = {
            name
            for _step, kind, name, action, _new in context.facts.get(EFFECTS) or ()
            if kind == "table" and action == "create"
        }
        for step, name, what, _columns in context.facts.get(NEEDS) or ():
            rows = estimates.get(name)
            if rows is None or rows <= self.limit or name in created or step in explicit:
                continue
            why = _uncopied(what, name, fingerprint, soft)
            if why is None or (step, name) in reported:
                continue
            reported.add((step, name))
            yield Finding(
                severity=Severity.ERROR,
                message=f"{step} changes table {name} (about {rows} rows), over the backup"
                f" limit of {self.limit} rows: {why}, so it cannot be undone without a copy",
                path=paths.get(step),
                hint="give the step a down section (-- lupo:down) or a .down.sql twin, or raise"
                " the limit (backup_limit, --backup-limit); adding columns, indexes or keys"
                " needs no copy at any size",
                code="backup-limit",
                kind=FailureKind.CRITICAL_VALIDATION,
                step_id=step,
            )

    def __repr__(self) -> str:
        return f"backup_limit({self.limit})"


def _uncopied(what: str, table: str, fingerprint: Fingerprint | None, soft: bool) -> str | None:
    """Why a change of kind *what* to a big *table* needs a copy of its rows (None: it
    needs none: its definition alone undoes it, or what goes is set aside)."""
    if what == "rows":
        return "it changes rows"
    entry = None if fingerprint is None else fingerprint.objects.get(f"table:{table}")
    if what == "drop" and not soft:
        return "it drops the table (this database keeps no dropped table aside)"
    if (
        what == "drop"
        and fingerprint is not None
        and referring(fingerprint, [table])
        & {k for k in fingerprint.objects if k.startswith("table:")}
    ):
        return "it drops a table other tables' foreign keys refer to (it cannot be set aside)"
    keyless = (
        fingerprint is not None and entry is not None and not row_key(entry, fingerprint.dialect)
    )
    if what == "columns" and keyless:
        return "it drops columns of a table with no primary or unique key"
    return None


def backup_limit(limit: int) -> Validator:
    """PRE: a step that changes a table of more than *limit* rows needs a down of its own,
    since that table is not copied before the run; said before anything runs."""
    return _BackupLimit(limit)


@attrs.frozen(repr=False)
class _RollbackAvailable:
    allowed: frozenset[str] = frozenset()

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        by_id = {s.id: s for s in context.plan.steps}
        for step, why in context.facts.get(NO_ROLLBACK) or ():
            own = by_id.get(step)
            said = own.meta.get("irreversible") if own is not None else None
            if isinstance(said, str) and said.strip().lower() in ("", "false", "no", "0"):
                said = None
            if said is True or said == "true":
                said = True
            if said or step in self.allowed:
                who = (
                    f"its header says irreversible ({said})"
                    if isinstance(said, str)
                    else "its header says irreversible"
                    if said
                    else "the operator allowed it (--allow-irreversible)"
                )
                yield Finding(
                    severity=Severity.WARNING,
                    message=f"{step} runs without a guaranteed way back ({why}): {who}",
                    path=own.path if own is not None else None,
                    code="irreversible",
                    step_id=step,
                )
                continue
            module = own is not None and own.file_type == "module"
            yield Finding(
                severity=Severity.ERROR,
                message=f"{step}: its rollback cannot be guaranteed ({why}); the run is"
                " refused before anything runs",
                path=own.path if own is not None else None,
                hint=(
                    "define down(ctx) in the module"
                    if module
                    else "give it a down section (-- lupo:down) or a .down.sql twin"
                )
                + ", or say it is irreversible: `irreversible: <why>` in its header, or"
                f" --allow-irreversible {step}",
                code="no-rollback",
                kind=FailureKind.CRITICAL_VALIDATION,
                step_id=step,
            )

    def __repr__(self) -> str:
        return (
            f"rollback_available({sorted(self.allowed)!r})"
            if self.allowed
            else "rollback_available()"
        )


def rollback_available(allowed: Iterable[str] = ()) -> Validator:
    """PRE: a step whose rollback cannot be guaranteed (no down, no derivable inverse, and no
    pre-images that cover it) refuses the run before it starts, unless its header says it is
    irreversible or its id is among *allowed* (the operator's ``--allow-irreversible``):
    then it runs, and a warning records it."""
    return _RollbackAvailable(frozenset(allowed))


@attrs.frozen(repr=False)
class _PerformanceProbes:
    threshold: float
    floor: float

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        before = context.facts.get(PROBES_BEFORE) or {}
        after = context.facts.get(PROBES_AFTER) or {}
        if context.stage is not Stage.POST:
            return
        for name in sorted(set(before) & set(after)):
            old, new = before[name], after[name]
            if old is None:
                continue
            if new is None:
                message = f"performance probe {name!r} fails after the run (it ran before)"
            elif new > max(old * self.threshold, old + self.floor):
                message = (
                    f"performance probe {name!r} takes {new * 1000:.1f} ms after the run,"
                    f" {new / old if old else float('inf'):.1f}x its {old * 1000:.1f} ms before"
                    f" (threshold {self.threshold}x)"
                )
            else:
                continue
            yield Finding(
                severity=Severity.ERROR,
                message=message,
                hint="a class B decision: `lupo-migrate rollback RUN --scope B` within 24 hours,"
                " or `lupo-migrate accept RUN`",
                code="performance",
                kind=FailureKind.PERFORMANCE_DEGRADATION,
            )

    def __repr__(self) -> str:
        return f"performance_probes(threshold={self.threshold}, floor={self.floor})"


def performance_probes(threshold: float = 2.0, *, floor: float = 0.005) -> Validator:
    """POST: each declared probe query takes at most *threshold* times as long as before the
    run (and at least *floor* seconds more, so that noise on fast queries is not reported);
    otherwise a class B finding (performance degradation).
    """
    if not threshold >= 1.0:
        raise InvalidArgumentError(f"probe threshold must be >= 1.0, got {threshold!r}")
    return _PerformanceProbes(float(threshold), float(floor))
