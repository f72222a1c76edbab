"""Schema and data checks: validators comparing the schema fingerprints and table data the shell
measured before and after a run, with each other and with what the plan's statements declare
(drift, declared effects, untouched objects), and the pure helpers on effects and fingerprints
they share with the shell (``expected_existence``, ``touched_keys``, ``referring``).

Apart from ``core.validation`` because they are one subject, fingerprint and effect comparison, with
helpers of their own. ``core.validation`` re-exports every public name here, so that importers keep
one place to import validators from. Pure: the shell measures, these compare; the facts they
read are keyed by the constants of ``core.fact_keys``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from lupo_migrate.core.fact_keys import (
    BEFORE,
    DATA_AFTER,
    DATA_BEFORE,
    EFFECTS,
    FINGERPRINT,
    RECORDED,
    UNKNOWN,
)
from lupo_migrate.core.fingerprint import Fingerprint, diff, restrict
from lupo_migrate.core.model import FailureKind, Finding, Severity, Stage, ValidationContext
from lupo_migrate.core.ports import Validator

__all__ = [
    "declared_effects",
    "expected_existence",
    "referring",
    "schema_drift",
    "touched_keys",
    "untouched_unchanged",
]

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


def linked_tables(fingerprint: Fingerprint, touched: set[str]) -> set[str]:
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
        linked = linked_tables(before, touched)
        # A MySQL/MariaDB run that only alters and creates (no rows written, nothing dropped)
        # lets the application write meanwhile (online DDL, the online copy), and its
        # rollback tells the application's rows from the alteration's (Sealing.seal): a
        # write elsewhere is told, not a failure.
        # (A column added, dropped or changed is part of its table's ALTER: no rows written.)
        altering = before.dialect == "mysql" and all(
            e[3] in ("alter", "create", "rename") or (e[1] == "column" and e[3] != "write")
            for e in effects
        )
        rows_before, rows_after = facts.get(DATA_BEFORE) or {}, facts.get(DATA_AFTER) or {}
        for name in sorted(set(rows_before) & set(rows_after)):
            old, new = rows_before[name], rows_after[name]
            if f"table:{name}" in touched or old == new:
                continue
            through = name in linked
            why = (
                " (through a trigger or foreign key of a table it touches)"
                if through
                else " (the application wrote while the run only altered tables)"
                if altering
                else ""
            )
            yield Finding(
                severity=Severity.WARNING if through or altering else Severity.ERROR,
                message=f"table {name}, which the run does not touch, changed: rows {old.rows}"
                f" -> {new.rows}, checksum {old.checksum} -> {new.checksum}{why}",
                hint=None
                if through or altering
                else "writes reached it during the run: check the freeze",
                code="untouched-data-changed",
                kind=None if through or altering else FailureKind.DATA_INTEGRITY,
            )

    def __repr__(self) -> str:
        return "untouched_unchanged()"


def untouched_unchanged() -> Validator:
    """POST: objects the plan's statements do not touch have the same definition, and tables
    they do not touch the same rows (row count and checksum), as before the run."""
    return _UntouchedUnchanged()
