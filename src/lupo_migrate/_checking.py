"""The checks around a run (shell, part of the ``Orchestrator``): the facts pre- and
post-validation compare (fingerprints, rows of untouched tables, probe times, the plan's
statements and effects); each step's during-validation, which reads them, is
:func:`lupo_migrate._stepping.check_step`.

Functions of the orchestrator's own state: each takes it as ``orch``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import attrs

from lupo_migrate import _observing, _stepping, _undoing
from lupo_migrate import _state as sm
from lupo_migrate._clock import to_stamp
from lupo_migrate._fingerprint import Fingerprint
from lupo_migrate._model import (
    FailureKind,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate._runtime import (
    _family,
    _files_root,
    _read_under,
)
from lupo_migrate._validation import (
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
    all_of,
    backup_limit,
    declared_effects,
    dependencies_applied,
    performance_probes,
    rollback_available,
    schema_drift,
    table_budget,
    touched_keys,
    untouched_unchanged,
)
from lupo_migrate.errors import (
    LupoMigrateError,
    SchemaDriftError,
)
from lupo_migrate.handlers._apart import runs_apart
from lupo_migrate.handlers._contain import check_steps
from lupo_migrate.handlers._lint import STATEMENTS, column_effects, risky_statements
from lupo_migrate.handlers._needs import needs
from lupo_migrate.handlers._touch import in_schema, touches
from lupo_migrate.typing import Validator

if TYPE_CHECKING:
    from lupo_migrate._runner import Orchestrator

logger = logging.getLogger("lupo_migrate")


def validate(orch: Orchestrator, run: Run, stage: Stage, plan: Plan) -> sm.Event:
    validators: list[Validator] = list(orch.validators)
    facts: dict[str, Any] = {}
    if stage is Stage.PRE:
        validators[:0] = [dependencies_applied()]
        if orch.table_budget is not None:
            validators.append(table_budget(orch.table_budget))
            facts.update(orch.target.facts())
        limit = getattr(orch.target, "backup_limit", None)
        if limit is not None and _undoing.restores(orch):
            validators.append(backup_limit(limit))
        validators += [
            rollback_available(orch.allow_irreversible),
            schema_drift(fail=orch.drift == "error"),
            risky_statements(
                forbid=orch.forbid, ignore=orch.lint_ignore, dialect=_family(orch.target)
            ),
        ]
    else:
        validators += [
            declared_effects(),
            untouched_unchanged(),
            performance_probes(orch.probe_threshold),
        ]
    try:
        facts.update(measure(orch, stage, plan))
    except LupoMigrateError as error:
        failure = Finding(
            severity=Severity.ERROR,
            message=f"{stage.value}-validation could not measure the target: {error}",
            code="measure-failed",
            kind=FailureKind.CRITICAL_VALIDATION,
        )
        orch.storage.record_findings(run.id, [failure])
        return sm.ValidationFailed(stage, (failure,))
    context = ValidationContext(
        stage=stage,
        plan=plan,
        run=run,
        applied=orch.storage.applied(orch.target_name),
        facts=facts,
    )
    findings = tuple(all_of(*validators)(context))
    if stage is Stage.PRE:
        findings += file_findings(orch, plan) + not_sql(orch, plan)
    if stage is Stage.POST:
        findings += handler_findings(orch, run, plan)
    if findings:
        orch.storage.record_findings(run.id, findings)
    failing = sum(1 for f in findings if f.severity.fails)
    _observing.emit(
        orch, run, "validation", stage=stage.value, passed=not failing, findings=len(findings)
    )
    if failing:
        return sm.ValidationFailed(stage, findings)
    return sm.ValidationPassed(stage, findings)


def file_findings(orch: Orchestrator, plan: Plan) -> tuple[Finding, ...]:
    """PRE: files the plan's steps would read, write or delete outside the files directory
    (handlers with a ``check_files``: agent folders, documentation), so the run is refused
    before anything runs; each step checks again when it runs."""
    return tuple(
        check_steps(
            orch.registry,
            plan.steps,
            read_text=lambda step: _read_under(orch.root, step.path, step),
            files_root=_files_root(orch.root, orch.files_root),
        )
    )


def not_sql(orch: Orchestrator, plan: Plan) -> tuple[Finding, ...]:
    """PRE: statements of the plan's SQL files that do not start with a SQL statement word of
    the target's dialect (``SELEC x``): the run is refused before anything runs, with the
    file and line (``lupo-migrate check`` says the same)."""
    from lupo_migrate.handlers._effects import check_sql, check_statements

    found: list[Finding] = []
    ups, downs = by_step(orch, STATEMENTS), by_step(orch, DOWN_STATEMENTS)
    unsplit = set(orch._facts.get(UNSPLIT, ()))
    for step in plan.steps:  # SQL files with no statement listed: empty, or cannot be split
        if step.file_type != "doctrine" or step.id not in unsplit:
            continue
        try:
            text = _read_under(orch.root, step.path, step)
        except (LupoMigrateError, OSError, UnicodeDecodeError):
            continue  # the step itself will say why
        found += [
            attrs.evolve(f, kind=FailureKind.CRITICAL_VALIDATION, step_id=step.id)
            for f in check_sql(text, path=step.path, dialect=orch.target.dialect, step=True)
        ]
    for step_id in dict.fromkeys([*ups, *downs]):
        path = next(iter(ups.get(step_id) or downs[step_id]))[1]
        rows = itertools.chain(ups.get(step_id, ()), downs.get(step_id, ()))
        statements = ((line or 0, sql) for _sid, _path, line, sql in rows)
        found += [
            attrs.evolve(f, kind=FailureKind.CRITICAL_VALIDATION, step_id=step_id)
            for f in check_statements(statements, path=path, dialect=orch.target.dialect)
        ]
    return tuple(found)


def handler_findings(orch: Orchestrator, run: Run, plan: Plan) -> tuple[Finding, ...]:
    """What handlers with a ``validate(steps, context_for)`` find about the steps of theirs
    the run applied (documentation: headers, mixed epochs, stamp regressions)."""
    applied = set(run.applied)
    by_type: dict[str, list[Step]] = {}
    for step in plan.steps:
        if step.id in applied:
            by_type.setdefault(step.file_type, []).append(step)
    found: list[Finding] = []
    for file_type, steps in by_type.items():
        check = getattr(orch.registry.lookup(file_type), "validate", None)
        if check is not None:
            found += check(steps, lambda step: _stepping.context(orch, run, step, None))
    return tuple(found)


def measure(orch: Orchestrator, stage: Stage, plan: Plan) -> dict[str, Any]:
    """The facts the schema, data and probe validators compare (see ``_validation``).

    PRE reads the plan's statements and what they touch, the live and the recorded
    fingerprints, the rows of the tables the plan leaves alone and the probe times; POST
    reads them again (the statements' effects are kept from PRE).
    """
    if stage is Stage.PRE:
        orch._facts = plan_effects(orch, plan)
        orch._facts[PROBES_BEFORE] = time_probes(orch)
    facts = dict(orch._facts)
    if stage is Stage.POST:
        facts[PROBES_AFTER] = time_probes(orch)
    read = getattr(orch.target, "fingerprint", None)
    if read is None:
        return facts
    taken = getattr(orch._pre, "fingerprint", None)  # read a moment ago (MySQL)
    core = getattr(orch.target, "core_schema", None)
    live = taken if stage is Stage.PRE and taken is not None and core is None else read()
    if stage is Stage.PRE:
        facts[FINGERPRINT] = live
        kept = getattr(orch.storage, "fingerprint", None)
        text = kept(orch.target_name) if kept is not None and orch.drift != "off" else None
        facts[RECORDED] = None if text is None else Fingerprint.from_json(text)
        touched = touched_keys(facts[EFFECTS])
        estimates = orch.target.row_estimates()  # type: ignore[attr-defined]
        facts[ESTIMATES] = estimates
        facts[SOFT_DROP] = bool(getattr(orch.target, "soft_drops", False))
        untouched = sorted(
            name
            for name, rows in estimates.items()
            if f"table:{name}" not in touched and rows <= orch.integrity_limit
        )
        facts[DATA_BEFORE] = orch.target.table_data(untouched)  # type: ignore[attr-defined]
        orch._facts = {**facts, BEFORE: live}
    else:
        facts[FINGERPRINT] = live
        before = facts.get(DATA_BEFORE) or {}
        facts[DATA_AFTER] = orch.target.table_data(  # type: ignore[attr-defined]
            [n for n in before if f"table:{n}" in live.objects]
        )
        orch._after = live
    return facts


def time_probes(orch: Orchestrator) -> dict[str, float | None]:
    timer = getattr(orch.target, "time_query", None)
    if timer is None:
        return {}
    return {name: timer(sql) for name, sql in orch.probes.items()}


class StatementRows(Sequence[tuple[StepId, str, "int | None", str]]):
    """The plan's statements as the STATEMENTS fact lists them, (step id, path, line, SQL)
    each, kept as each step's statements as its handler listed them: the rows are made as
    they are read (a file of 100,000 statements is not held a second time as rows)."""

    def __init__(self, parts: Sequence[tuple[StepId, str, Sequence[Any]]]) -> None:
        self._parts = tuple(parts)  # (step id, path, statements with .line and .text)

    def __len__(self) -> int:
        return sum(len(listed) for _sid, _path, listed in self._parts)

    def __iter__(self) -> Iterator[tuple[StepId, str, int | None, str]]:
        for step_id, path, listed in self._parts:
            for stmt in listed:
                yield step_id, path, stmt.line, stmt.text

    @overload
    def __getitem__(self, at: int) -> tuple[StepId, str, int | None, str]: ...

    @overload
    def __getitem__(self, at: slice) -> list[tuple[StepId, str, int | None, str]]: ...

    def __getitem__(
        self, at: int | slice
    ) -> tuple[StepId, str, int | None, str] | list[tuple[StepId, str, int | None, str]]:
        if isinstance(at, slice):
            return list(itertools.islice(self, *at.indices(len(self))))
        count = len(self)
        if not -count <= at < count:
            raise IndexError("statement index out of range")
        at %= count
        for step_id, path, listed in self._parts:
            if at < len(listed):
                stmt = listed[at]
                return step_id, path, stmt.line, stmt.text
            at -= len(listed)
        raise AssertionError("unreachable")  # pragma: no cover

    def by_step(self) -> dict[StepId, Sequence[tuple[StepId, str, int | None, str]]]:
        """The rows of each step that has any (each a view of this one), as rows grouped by
        their first field would be: a step that lists no statement is not there."""
        return {
            step_id: StatementRows([(step_id, path, listed)])
            for step_id, path, listed in self._parts
            if len(listed)
        }


def plan_effects(orch: Orchestrator, plan: Plan) -> dict[str, Any]:
    """The plan's statements (from handlers that can list them) and what they touch."""
    statements: list[tuple[StepId, str, Sequence[Any]]] = []  # each step's, as listed
    downs: list[tuple[str, str, int | None, str]] = []
    explicit: set[str] = set()
    effects: list[tuple[str, str, str, str, str | None]] = []
    unknown: list[tuple[str, str]] = []
    family = _family(orch.target)
    core = orch.target.names.get("core")
    no_rollback: list[tuple[str, str]] = []
    kept: dict[tuple[str, str, str, tuple[str, ...]], None] = {}  # in order, each once
    writes: set[tuple[str, str, str, str, str | None]] = set()
    unsplit: list[str] = []
    apart: list[str] = []
    restores = _undoing.restores(orch)  # pre-images put back what a step touched
    for step in plan.steps:
        handler = orch.registry.lookup(step.file_type)
        listing = getattr(handler, "statements", None)
        if listing is None:
            declared = _declared_effects(orch, handler, step)
            if declared is not None:
                effects += declared
            elif step.file_type != "documentation":
                unknown.append((step.id, step.file_type))
            why = _cannot_undo(orch, handler, step)
            if why is not None:
                no_rollback.append((step.id, why))
            continue
        info = None
        try:
            text = _read_under(orch.root, step.path, step)
            listed = statements_of(orch, listing, step, text)
            inspect = getattr(handler, "inspect", None)
            if inspect is not None:
                info = inspect(
                    step,
                    text,
                    dialect=orch.target.dialect,
                    read_text=lambda rel, step=step: _read_under(orch.root, rel, step),
                )
                if info.down_source in ("section", "twin"):
                    explicit.add(step.id)
                if info.down_source == "section":  # a plugin's info may list no statements
                    listed_down = getattr(info, "down_statements", ())
                    downs += [(step.id, step.path, d.line, d.text) for d in listed_down]
        except (LupoMigrateError, OSError, UnicodeDecodeError):
            unknown.append((step.id, "unreadable"))  # the step itself will say why
            unsplit.append(step.id)
            continue
        if not listed:
            unsplit.append(step.id)
        # `-- transaction: false` in its header (text in a comment header, a bool in YAML)
        said = str(step.meta.get("transaction")).lower() in ("false", "no", "off")
        if hasattr(orch.target, "apart_session") and (
            runs_apart(text, [stmt.text for stmt in listed], family)
            or (said and family == "postgresql")
        ):
            apart.append(step.id)
        mine: list[str] = []
        statements.append((step.id, step.path, listed))
        for stmt in listed:
            for need in needs(stmt.text, dialect=family):
                if need.schema in (None, core):
                    kept[(step.id, need.table, need.what, need.columns)] = None
            found = touches(stmt.text, dialect=family)
            for touch in found:
                if touch.kind == "unknown":
                    unknown.append((step.id, touch.name))
                    mine.append(touch.name)
            for touch in in_schema(found, core):  # a table moved out of core is gone from it
                if touch.kind == "unknown":
                    continue
                effect = (step.id, touch.kind, touch.name, touch.action, touch.new_name)
                if touch.action == "write":  # rows written: once a step says all (a seed's
                    if effect in writes:  # 100,000 INSERTs are one effect, not 100,000)
                        continue
                    writes.add(effect)
                effects.append(effect)
            for table, action, column, new in column_effects(stmt.text, family):
                renamed = None if new is None else f"{table}.{new}"
                effects.append((step.id, "column", f"{table}.{column}", action, renamed))
        invertible = info.invertible if info is not None else handler.can_rollback(step)
        if not invertible and not (restores and not mine):
            why = (
                f"statements whose effects cannot be told: {', '.join(mine)}"
                if restores
                else "; ".join(getattr(info, "reasons", ())) or "no down section"
            )
            no_rollback.append((step.id, why))
    return {
        NO_ROLLBACK: tuple(no_rollback),
        STATEMENTS: StatementRows(statements),
        DOWN_STATEMENTS: tuple(downs),
        EFFECTS: tuple(effects),
        NEEDS: tuple(kept),
        UNKNOWN: tuple(unknown),
        EXPLICIT_DOWN: frozenset(explicit),
        UNSPLIT: tuple(unsplit),
        APART: tuple(apart),
    }


def _declared_effects(
    orch: Orchestrator, handler: Any, step: Step
) -> list[tuple[str, str, str, str, str | None]] | None:
    """What a handler that lists no statements says its step touches (``effects()``), or
    None when it cannot say (then the step's effects are unknown)."""
    declare = getattr(handler, "effects", None)
    if declare is None:
        return None
    try:
        text = _read_under(orch.root, step.path, step)
        found = declare(
            step,
            text,
            dialect=orch.target.dialect,
            names=orch.target.names,
            renames=orch.target.renames,
        )
    except (LupoMigrateError, OSError, UnicodeDecodeError):
        return None  # the step itself will say why when it runs
    return [(step.id, kind, name, action, new) for kind, name, action, new in found]


def _cannot_undo(orch: Orchestrator, handler: Any, step: Step) -> str | None:
    """Why a step whose handler lists no statements cannot be undone, or None: from the
    handler's ``inspect`` of the file where it has one (``module``: a ``down``), else
    from ``can_rollback``."""
    inspect = getattr(handler, "inspect", None)
    if inspect is None:
        return (
            None if handler.can_rollback(step) else f"its {step.file_type} handler cannot undo it"
        )
    try:
        text = _read_under(orch.root, step.path, step)
        info = inspect(step, text, dialect=orch.target.dialect, read_text=None)
    except (LupoMigrateError, OSError, UnicodeDecodeError):
        return None  # the step itself will say why when it runs
    return None if info.invertible else "; ".join(info.reasons) or "no way to undo it"


def statements_of(orch: Orchestrator, listing: Callable[..., Any], step: Step, text: str) -> Any:
    """A handler's statements of *step*, rendered for this target."""
    return listing(
        step,
        text,
        dialect=orch.target.dialect,
        names=orch.target.names,
        renames=orch.target.renames,
    )


def by_step(orch: Orchestrator, fact: str) -> dict[StepId, Sequence[Any]]:
    """A per-step fact of the plan (rows whose first field is the step), by step: built
    once per run, not scanned once per step."""
    rows = orch._facts.get(fact, ())
    cached = orch._indexes.get(fact)
    if cached is not None and cached[0] is rows:
        return cached[1]
    index: dict[StepId, Sequence[Any]]
    if isinstance(rows, StatementRows):
        index = dict(rows.by_step())
    else:
        lists: dict[StepId, list[Any]] = {}
        for row in rows:
            lists.setdefault(row[0], []).append(row)
        index = dict(lists)
    orch._indexes[fact] = (rows, index)
    return index


def record_schema(orch: Orchestrator, run: Run, *, when: Outcome | None) -> None:
    """Keep the schema as a run that ended *when* (None: that is completing) left it: the
    next run's drift reference.

    A run that failed and rolled back leaves the reference alone: the schema is as it
    was, and a drift found before it must not become the reference by the way.
    """
    keep = getattr(orch.storage, "record_fingerprint", None)
    read = getattr(orch.target, "fingerprint", None)
    after, orch._after = orch._after, None
    if keep is None or read is None or run.outcome is not when:
        return
    if after is None:
        after = read()
    keep(orch.target_name, after.to_json(), to_stamp(orch.clock.now()))


def apart(orch: Orchestrator, step_id: str) -> bool:
    """Whether *step_id* runs apart: its statements commit one by one (see
    ``handlers._apart``), so a failure or a crash leaves what ran before it, as on MySQL."""
    return step_id in orch._facts.get(APART, ())


def check_left(orch: Orchestrator) -> tuple[Finding, ...]:
    """With nothing pending: the tables the last run left must still be there.

    A database recreated, emptied or restored from an older backup while lupo_migrate's
    record of it stayed would otherwise read "nothing to do". One catalog query (the
    target's ``existing``) over the tables of the fingerprint the last run recorded.

    Returns:
        A warning when some are gone and drift is only reported (``warn``); else nothing.

    Raises:
        SchemaDriftError: some are gone (drift ``error``, the default); nothing was applied.
    """
    kept = getattr(orch.storage, "fingerprint", None)
    exists = getattr(orch.target, "existing", None)
    if orch.drift == "off" or kept is None or exists is None:
        return ()
    text = kept(orch.target_name)
    if text is None:
        return ()
    tables = sorted(k for k in Fingerprint.from_json(text).objects if k.startswith("table:"))
    if not tables:
        return ()
    there = exists(tables)
    missing = [key[6:] for key in tables if key not in there]
    if not missing:
        return ()
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    engine = getattr(orch.storage, "engine", None)
    where = "" if engine is None else f" (the migration_* tables in {_described(orch.storage)})"
    message = (
        f"nothing is pending, but {len(missing)} of the {len(tables)} table(s) the last run"
        f" left are gone: {shown}. lupo_migrate's record of target {orch.target_name}{where}"
        " still lists every migration as applied. If the database was recreated on purpose,"
        " remove that record and apply again; if the tables went by mistake, restore them."
        " Nothing was applied"
    )
    if orch.drift == "error":
        raise SchemaDriftError(message, missing)
    return (Finding(severity=Severity.WARNING, message=message, code="schema-drift"),)


def _described(storage: Any) -> str:
    """Where *storage* keeps its tables: its URL (password hidden) and schema, if any."""
    url = storage.engine.url.render_as_string(hide_password=True)
    tables = getattr(storage, "tables", None)
    schema = getattr(getattr(tables, "system_state", None), "schema", None)
    return f"{url}, schema {schema}" if schema else url
