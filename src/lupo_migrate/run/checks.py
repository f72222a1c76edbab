"""The checks around a run (shell): pre- and post-validation and the facts they compare
(fingerprints, rows of untouched tables, probe times), drift when nothing is pending
(:func:`check_left`) and the schema recorded for the next run. What the plan's statements
touch is read by :mod:`lupo_migrate.run.facts`; each step's during-validation is
:func:`lupo_migrate.run.step.check_step`.

Functions of a :class:`~lupo_migrate.run.wiring.Wiring` (``orch``).
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core import state as sm
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import LupoMigrateError, SchemaDriftError
from lupo_migrate.core.fingerprint import Fingerprint
from lupo_migrate.core.model import (
    FailureKind,
    Finding,
    Outcome,
    Plan,
    Run,
    Severity,
    Stage,
    Step,
    ValidationContext,
)
from lupo_migrate.core.ports import Validator
from lupo_migrate.core.validation import (
    BEFORE,
    DATA_AFTER,
    DATA_BEFORE,
    DOWN_STATEMENTS,
    EFFECTS,
    ESTIMATES,
    FINGERPRINT,
    PROBES_AFTER,
    PROBES_BEFORE,
    RECORDED,
    SOFT_DROP,
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
from lupo_migrate.handlers._contain import check_steps
from lupo_migrate.run import observers
from lupo_migrate.run import step as _stepping
from lupo_migrate.run.facts import by_step, plan_effects, restores
from lupo_migrate.run.shared import _family, _files_root, _read_under
from lupo_migrate.sql.lint import STATEMENTS, risky_statements

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

logger = logging.getLogger("lupo_migrate")


def validate(orch: Wiring, run: Run, stage: Stage, plan: Plan) -> sm.Event:
    validators: list[Validator] = list(orch.validators)
    facts: dict[str, Any] = {}
    if stage is Stage.PRE:
        validators[:0] = [dependencies_applied()]
        if orch.table_budget is not None:
            validators.append(table_budget(orch.table_budget))
            facts.update(orch.target.facts())
        limit = getattr(orch.target, "backup_limit", None)
        if limit is not None and restores(orch):
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
    observers.emit(
        orch, run, "validation", stage=stage.value, passed=not failing, findings=len(findings)
    )
    if failing:
        return sm.ValidationFailed(stage, findings)
    return sm.ValidationPassed(stage, findings)


def file_findings(orch: Wiring, plan: Plan) -> tuple[Finding, ...]:
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


def not_sql(orch: Wiring, plan: Plan) -> tuple[Finding, ...]:
    """PRE: statements of the plan's SQL files that do not start with a SQL statement word of
    the target's dialect (``SELEC x``): the run is refused before anything runs, with the
    file and line (``lupo-migrate check`` says the same)."""
    from lupo_migrate.sql.effects import check_sql, check_statements

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


def handler_findings(orch: Wiring, run: Run, plan: Plan) -> tuple[Finding, ...]:
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


def measure(orch: Wiring, stage: Stage, plan: Plan) -> dict[str, Any]:
    """The facts the schema, data and probe validators compare (see ``core.validation``).

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


def time_probes(orch: Wiring) -> dict[str, float | None]:
    timer = getattr(orch.target, "time_query", None)
    if timer is None:
        return {}
    return {name: timer(sql) for name, sql in orch.probes.items()}


def record_schema(orch: Wiring, run: Run, *, when: Outcome | None) -> None:
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


def check_left(orch: Wiring) -> tuple[Finding, ...]:
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
