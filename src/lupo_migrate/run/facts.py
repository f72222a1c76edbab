"""What the plan's statements touch, read once per run and indexed by step (imperative
shell): the facts the checks, the steps and undo share.

:func:`plan_effects` reads, before the run, each step's statements, the objects they touch,
what they need kept to be undone and whether they run apart from a transaction;
:func:`by_step` indexes one fact by step; :func:`inspect_step` asks a step's handler what it
would run and how it goes back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from lupo_migrate.core.errors import LupoMigrateError
from lupo_migrate.core.model import Plan, Step, StepId
from lupo_migrate.core.validation import (
    APART,
    DOWN_STATEMENTS,
    EFFECTS,
    EXPLICIT_DOWN,
    NEEDS,
    NO_ROLLBACK,
    UNKNOWN,
    UNSPLIT,
)
from lupo_migrate.run.shared import _family, _read_under
from lupo_migrate.sql.apart import runs_apart
from lupo_migrate.sql.lint import STATEMENTS, column_effects
from lupo_migrate.sql.needs import needs
from lupo_migrate.sql.touches import in_schema, touches

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = [
    "StatementRows",
    "apart",
    "by_step",
    "inspect_step",
    "plan_effects",
    "restores",
    "statements_of",
]


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


def plan_effects(orch: Wiring, plan: Plan) -> dict[str, Any]:
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
    restoring = restores(orch)  # pre-images put back what a step touched
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
        if not invertible and not (restoring and not mine):
            why = (
                f"statements whose effects cannot be told: {', '.join(mine)}"
                if restoring
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
    orch: Wiring, handler: Any, step: Step
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


def _cannot_undo(orch: Wiring, handler: Any, step: Step) -> str | None:
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


def statements_of(orch: Wiring, listing: Callable[..., Any], step: Step, text: str) -> Any:
    """A handler's statements of *step*, rendered for this target."""
    return listing(
        step,
        text,
        dialect=orch.target.dialect,
        names=orch.target.names,
        renames=orch.target.renames,
    )


def by_step(orch: Wiring, fact: str) -> dict[StepId, Sequence[Any]]:
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


def apart(orch: Wiring, step_id: str) -> bool:
    """Whether *step_id* runs apart: its statements commit one by one (see
    ``sql.apart``), so a failure or a crash leaves what ran before it, as on MySQL."""
    return step_id in orch._facts.get(APART, ())


def restores(orch: Wiring) -> bool:
    """Whether this run's pre-images put objects back (not only compare them)."""
    return orch._pre is not None and bool(getattr(orch._pre, "restores", True))


def inspect_step(orch: Wiring, step: Step) -> Any:
    """The handler's inspection of *step* (its up and down statements, how it is undone), or
    None when its handler has no ``inspect`` (only SQL steps are inspected).

    Raises:
        LupoMigrateError, OSError, UnicodeDecodeError: the file (or its twin) cannot be read
            or split.
    """
    inspect = getattr(orch.registry.lookup(step.file_type), "inspect", None)
    if inspect is None:
        return None
    return inspect(
        step,
        _read_under(orch.root, step.path, step),
        dialect=orch.target.dialect,
        read_text=lambda rel: _read_under(orch.root, rel, step),
    )
