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

from lupo_migrate._fingerprint import Fingerprint, diff, restrict
from lupo_migrate._model import FailureKind, Finding, Severity, Stage, ValidationContext
from lupo_migrate.errors import InvalidArgumentError
from lupo_migrate.typing import Validator

__all__ = [
    "BEFORE",
    "DATA_AFTER",
    "DATA_BEFORE",
    "DEFAULT_TABLE_BUDGET",
    "EFFECTS",
    "ESTIMATES",
    "EXPLICIT_DOWN",
    "FINGERPRINT",
    "NO_ROLLBACK",
    "PROBES_AFTER",
    "PROBES_BEFORE",
    "RECORDED",
    "UNKNOWN",
    "all_of",
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


# --------------------------------------------------------------------------------------------
# Schema and data checks. The shell measures; these compare. Facts they read:

#: The live schema fingerprint at this stage (PRE: before the run; POST: after it).
FINGERPRINT: Final = "fingerprint"
#: PRE: the fingerprint the last run left (None on the first run).
RECORDED: Final = "recorded_fingerprint"
#: POST: the fingerprint read before the run.
BEFORE: Final = "fingerprint_before"
#: What the plan's statements declare, in order: (step id, kind, name, action, new name);
#: kinds ``table``, ``view``, ``trigger``...; actions ``create``, ``alter``, ``drop``,
#: ``rename``, ``write``.
EFFECTS: Final = "effects"
#: Statements whose effects cannot be told from their text: (step id, first word).
UNKNOWN: Final = "unknown_effects"
#: Row counts and checksums (``TableData``) of the tables the plan does not touch.
DATA_BEFORE: Final = "data_before"
DATA_AFTER: Final = "data_after"
#: About how many rows each table holds (the catalog's estimate).
ESTIMATES: Final = "row_estimates"
#: Steps with a down section of their own (or a down twin): they need no backups.
EXPLICIT_DOWN: Final = "explicit_down"
#: Steps whose rollback cannot be guaranteed, with why: (step id, reason).
NO_ROLLBACK: Final = "no_rollback"
#: Seconds each declared performance probe took (None: it failed).
PROBES_BEFORE: Final = "probes_before"
PROBES_AFTER: Final = "probes_after"

#: Object kinds whose existence the fingerprint tells.
_SEEN_KINDS: Final = frozenset({"table", "view", "trigger"})


@attrs.frozen(repr=False)
class _SchemaDrift:
    fail: bool

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        recorded, live = context.facts.get(RECORDED), context.facts.get(FINGERPRINT)
        if recorded is None or live is None or context.stage is not Stage.PRE:
            return
        differences = diff(recorded, live)
        if not differences:
            return
        shown = "; ".join(str(d) for d in differences[:10])
        more = f" and {len(differences) - 10} more" if len(differences) > 10 else ""
        yield Finding(
            severity=Severity.ERROR if self.fail else Severity.WARNING,
            message=f"the schema changed since the last run ({len(differences)}"
            f" difference(s)): {shown}{more}",
            hint="something changed the schema outside lupo_migrate: review the differences;"
            " to run anyway and take the live schema as the new reference, pass --allow-drift",
            code="drift",
            kind=FailureKind.CRITICAL_VALIDATION,
        )

    def __repr__(self) -> str:
        return f"schema_drift(fail={self.fail})"


def schema_drift(*, fail: bool = True) -> Validator:
    """PRE: the live schema must equal the fingerprint the last run recorded (no drift).

    Args:
        fail: a drift stops the run (True) or is only reported (False).
    """
    return _SchemaDrift(fail)


def expected_existence(effects: Iterable[tuple[str, str, str, str, str | None]]) -> dict[str, bool]:
    """Which objects the effects say exist (True) or not (False) at the end, by key.

    Columns (kind ``column``, name ``table.column``, actions ``add``, ``drop``, ``rename``)
    follow their table: renamed with it, gone with it.
    """
    state: dict[str, bool] = {}
    for _step, kind, name, action, new_name in effects:
        if kind == "column":
            if action == "add":
                state[f"column:{name}"] = True
            elif action == "drop":
                state[f"column:{name}"] = False
            elif action == "rename" and new_name is not None:
                state[f"column:{name}"] = False
                state[f"column:{new_name}"] = True
            continue
        if kind not in _SEEN_KINDS:
            continue
        key = f"{kind}:{name}"
        if action == "create":
            state[key] = True
        elif action == "drop":
            state[key] = False
            if kind == "table":
                for column in [k for k in state if k.startswith(f"column:{name}.")]:
                    del state[column]  # gone with its table (says nothing more)
        elif action == "rename" and new_name is not None:
            state[key] = False
            state[f"{kind}:{new_name}"] = True
            if kind == "table":
                for column in [k for k in state if k.startswith(f"column:{name}.")]:
                    state[f"column:{new_name}.{column.split('.', 1)[1]}"] = state.pop(column)
    return state


def _present(fingerprint: Fingerprint, key: str) -> bool:
    if key.startswith("column:"):
        table, _, column = key[7:].rpartition(".")
        obj = fingerprint.objects.get(f"table:{table}") or {}
        return any(str(c.get("name", "")).lower() == column.lower() for c in obj.get("columns", ()))
    return key in fingerprint.objects


def touched_keys(effects: Iterable[tuple[str, str, str, str, str | None]]) -> set[str]:
    """Every object key the effects name (renamed objects under both names)."""
    keys: set[str] = set()
    for _step, kind, name, _action, new_name in effects:
        keys.add(f"{kind}:{name}")
        if new_name is not None:
            keys.add(f"{kind}:{new_name}")
    return keys


@attrs.frozen(repr=False)
class _DeclaredEffects:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        after = context.facts.get(FINGERPRINT)
        effects = context.facts.get(EFFECTS)
        if after is None or effects is None or context.stage is not Stage.POST:
            return
        last_step: dict[str, str] = {}
        for step, kind, name, _action, new_name in effects:
            last_step[f"{kind}:{name}"] = step
            if new_name is not None:
                last_step[f"{kind}:{new_name}"] = step
        for key, exists in sorted(expected_existence(effects).items()):
            if _present(after, key) != exists:
                kind, _, name = key.partition(":")
                said, found = ("created", "is missing") if exists else ("dropped", "still exists")
                yield Finding(
                    severity=Severity.ERROR,
                    message=f"{kind} {name} should be {said} by the run but {found} after it",
                    hint="a statement did not do what it says (a conditional or a failed"
                    " dynamic statement?); the run is rolled back",
                    code="effect-missing",
                    kind=FailureKind.CRITICAL_VALIDATION,
                    step_id=last_step.get(key),
                )

    def __repr__(self) -> str:
        return "declared_effects()"


def declared_effects() -> Validator:
    """POST: each table, view and trigger the plan creates, drops or renames is (or is not)
    there after the run, as its statements declare."""
    return _DeclaredEffects()


def referring(fingerprint: Fingerprint, tables: Iterable[str]) -> set[str]:
    """Keys of the tables whose foreign keys, and the views and triggers whose text, name one
    of *tables* (what a database may rewrite when one of them is renamed)."""
    names = {n.lower() for n in tables}
    if not names:
        return set()
    found = set()
    for key, value in fingerprint.objects.items():
        kind, _, own = key.partition(":")
        if kind == "table":
            text = " ".join(" ".join(map(str, fk.values())) for fk in value.get("foreign_keys", ()))
        elif kind in ("view", "trigger"):
            text = " ".join(str(v) for v in value.values())
        else:
            continue
        if own.lower() not in names and any(_mentions(text.lower(), n) for n in names):
            found.add(key)
    return found


def _linked_tables(fingerprint: Fingerprint, touched: set[str]) -> set[str]:
    """Tables a touched table's triggers mention, or whose foreign keys reference one: a run
    may change them without touching them itself."""
    names = {k[6:] for k in touched if k.startswith("table:")}
    linked: set[str] = set()
    for key, value in fingerprint.objects.items():
        if key.startswith("trigger:") and value.get("table") in names:
            text = " ".join(str(v) for v in value.values()).lower()
            linked.update(
                k[6:]
                for k in fingerprint.objects
                if k.startswith("table:") and _mentions(text, k[6:].lower())
            )
        elif key.startswith("table:") and any(
            _mentions(" ".join(map(str, fk.values())).lower(), n.lower())
            for fk in value.get("foreign_keys", ())
            for n in names
        ):
            linked.add(key[6:])
    return linked


def _mentions(text: str, name: str) -> bool:
    start = text.find(name)
    while start >= 0:
        end = start + len(name)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(name, start + 1)
    return False


@attrs.frozen(repr=False)
class _UntouchedUnchanged:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        facts = context.facts
        before, after = facts.get(BEFORE), facts.get(FINGERPRINT)
        effects = facts.get(EFFECTS)
        if before is None or after is None or effects is None or context.stage is not Stage.POST:
            return
        if facts.get(UNKNOWN):
            words = ", ".join(sorted({w for _, w in facts[UNKNOWN]}))
            yield Finding(
                severity=Severity.INFO,
                message=f"objects the run did not touch were not compared: statements ({words})"
                " may change anything",
                code="untouched-unchecked",
            )
            return
        touched = touched_keys(effects)
        # A table's triggers go and come with it.
        tables = {k[6:] for k in touched if k.startswith("table:")}
        touched |= {
            key
            for fingerprint in (before, after)
            for key, value in fingerprint.objects.items()
            if key.startswith("trigger:") and value.get("table") in tables
        }
        # What refers to a renamed table may be rewritten with it (SQLite does).
        renamed = {name for _, kind, name, action, _ in effects if action == "rename"}
        touched |= referring(before, renamed)
        untouched = (set(before.objects) | set(after.objects)) - touched
        for difference in diff(restrict(before, untouched), restrict(after, untouched)):
            yield Finding(
                severity=Severity.ERROR,
                message=f"{difference} (the run's statements do not touch it)",
                hint="something else changed the schema during the run",
                code="untouched-changed",
                kind=FailureKind.DATA_INTEGRITY,
            )
        linked = _linked_tables(before, touched)
        rows_before, rows_after = facts.get(DATA_BEFORE) or {}, facts.get(DATA_AFTER) or {}
        for name in sorted(set(rows_before) & set(rows_after)):
            old, new = rows_before[name], rows_after[name]
            if f"table:{name}" in touched or old == new:
                continue
            through = name in linked
            yield Finding(
                severity=Severity.WARNING if through else Severity.ERROR,
                message=f"table {name}, which the run does not touch, changed: rows {old.rows}"
                f" -> {new.rows}, checksum {old.checksum} -> {new.checksum}"
                + (" (through a trigger or foreign key of a table it touches)" if through else ""),
                hint=None if through else "writes reached it during the run: check the freeze",
                code="untouched-data-changed",
                kind=None if through else FailureKind.DATA_INTEGRITY,
            )

    def __repr__(self) -> str:
        return "untouched_unchanged()"


def untouched_unchanged() -> Validator:
    """POST: objects the plan's statements do not touch have the same definition, and tables
    they do not touch the same rows (row count and checksum), as before the run."""
    return _UntouchedUnchanged()


@attrs.frozen(repr=False)
class _BackupLimit:
    limit: int

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        estimates = context.facts.get(ESTIMATES) or {}
        explicit = context.facts.get(EXPLICIT_DOWN) or frozenset()
        paths = {s.id: s.path for s in context.plan.steps}
        reported: set[tuple[str, str]] = set()
        created: set[str] = set()
        for step, kind, name, action, _new in context.facts.get(EFFECTS) or ():
            if kind != "table":
                continue
            if action == "create":
                created.add(name)
            rows = estimates.get(name)
            if rows is None or rows <= self.limit or name in created or step in explicit:
                continue
            if (step, name) in reported:
                continue
            reported.add((step, name))
            yield Finding(
                severity=Severity.ERROR,
                message=f"{step} changes table {name} (about {rows} rows), over the backup"
                f" limit of {self.limit} rows: it cannot be backed up for a rollback",
                path=paths.get(step),
                hint="give the step a down section (-- lupo:down) or a .down.sql twin, or raise"
                " the limit (backup_limit, --backup-limit)",
                code="backup-limit",
                kind=FailureKind.CRITICAL_VALIDATION,
                step_id=step,
            )

    def __repr__(self) -> str:
        return f"backup_limit({self.limit})"


def backup_limit(limit: int) -> Validator:
    """PRE: a step that changes a table of more than *limit* rows needs a down of its own,
    since that table is not copied before the run; said before anything runs."""
    return _BackupLimit(limit)


@attrs.frozen(repr=False)
class _RollbackAvailable:
    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        by_id = {s.id: s for s in context.plan.steps}
        for step, why in context.facts.get(NO_ROLLBACK) or ():
            own = by_id.get(step)
            # A module without down(ctx) is refused (DESIGN: "down, else refused at plan
            # time"); a doctrine step without one is reported and may run.
            module = own is not None and own.file_type == "module"
            yield Finding(
                severity=Severity.ERROR if module else Severity.WARNING,
                message=f"{step}: its rollback cannot be guaranteed ({why})",
                path=own.path if own is not None else None,
                hint="define down(ctx) in the module"
                if module
                else "give it a down section (-- lupo:down) or a .down.sql twin",
                code="no-rollback",
                kind=FailureKind.CRITICAL_VALIDATION if module else None,
                step_id=step,
            )

    def __repr__(self) -> str:
        return "rollback_available()"


def rollback_available() -> Validator:
    """PRE: every step whose rollback cannot be guaranteed (no down, no derivable inverse, and
    no pre-images that cover it) is reported before the run starts, never found after; a
    ``module`` step without ``down(ctx)`` refuses the run."""
    return _RollbackAvailable()


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
