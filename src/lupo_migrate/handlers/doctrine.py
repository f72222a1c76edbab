"""The ``doctrine`` handler: SQL migration files applied statement by statement.

A doctrine file is a SQL script (``DELIMITER``, comments and strings handled as the dialect's
command-line client would, see :mod:`lupo_migrate.sql.split`). Each statement is
rendered for the federation (placeholders, schema renames: :mod:`._federation`) and run through
:meth:`StepContext.execute`, journalled under its 0-based index; statements the journal records
as done are skipped, so a resumed step continues where it stopped.

How a step is undone, first source first:

1. its **down section**: the statements after a line ``-- lupo:down`` (the primary marker; an
   optional ``-- lupo:up`` may open the up section). sql-migrate's ``-- +migrate Down`` and
   ``-- +migrate Up`` are accepted too, for files written for that tool;
2. its **down twin**: ``x.down.sql`` beside ``x.sql`` (``step.meta['down_path']``, set by
   discovery), or the header's ``down`` key (a path ending in ``.sql``, or the SQL itself);
3. a **derived inverse** (:func:`derive_inverse`, in :mod:`._inverse`), for steps whose every
   statement has an obvious inverse needing no pre-image:
   ``CREATE TABLE/VIEW/INDEX/TRIGGER/EVENT/PROCEDURE/FUNCTION x`` becomes ``DROP ... x``;
   ``ALTER TABLE t ADD [COLUMN] c / ADD INDEX i / ADD CONSTRAINT k ...`` drops what it added;
   session statements (``SET``, ``SELECT``, ``START TRANSACTION``, ``COMMIT``) need nothing.
   ``IF NOT EXISTS``/``OR REPLACE``, data changes (``INSERT``, ``UPDATE``...), ``DROP`` and
   ``MODIFY`` are refused: only a pre-image or a backup can undo them.

Undo statements are journalled under ``DOWN_OFFSET + i``. A partly applied step is undone by
the derived inverse of exactly the statements that ran when there is one, else by its down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import DOWN_OFFSET, Step
from lupo_migrate.handlers._federation import render
from lupo_migrate.sql.inverse import derive_inverse as derive_inverse
from lupo_migrate.sql.split import Sections, SplitError, Statement, family, split_sections
from lupo_migrate.sql.touches import touches

__all__ = ["DOWN_OFFSET", "DoctrineHandler", "StepInfo", "derive_inverse"]

#: Journal indexes of undo statements start here (up statements use 0, 1, 2...).


@attrs.frozen(kw_only=True)
class StepInfo:
    """What a doctrine step will run and how it can be undone, known before anything runs.

    Attributes:
        statements: the up statements.
        down_statements: the undo statements (down section, twin or derived), in run order.
        down_source: ``section``, ``twin``, ``derived`` or ``none``.
        invertible: whether a rollback is guaranteed (a down exists, or every statement inverts).
        reasons: why not, one line per refused statement (empty when invertible).
    """

    statements: Sequence[Statement]
    down_statements: Sequence[Statement]
    down_source: str
    invertible: bool
    reasons: tuple[str, ...] = ()


@final
class DoctrineHandler:
    """Applies ``.sql`` migration files statement by statement (see the module docstring).

    Args:
        root: the migrations root; when given, :meth:`can_rollback` reads the file to find an
            in-file down section or a derived inverse. Without it only a down twin counts.
    """

    file_type: str = "doctrine"
    suffixes: tuple[str, ...] = (".sql",)

    def __init__(self, *, root: str | Path | None = None) -> None:
        self._root = Path(root) if root is not None else None

    def __repr__(self) -> str:
        return f"DoctrineHandler(root={str(self._root)!r})" if self._root else "DoctrineHandler()"

    def inspect(
        self,
        step: Step,
        text: str,
        *,
        dialect: str = "mysql",
        read_text: Callable[[str], str] | None = None,
    ) -> StepInfo:
        """The up statements and the rollback of *step* whose file reads *text*.

        Args:
            step: the step.
            text: its file's text.
            dialect: the target's dialect name.
            read_text: reads a file under the root (for a down twin); None: twin unknown.

        Raises:
            StepError: the file (or its twin) cannot be split.
        """
        fam = family(dialect)
        sections = _sections(step, step.path, text, fam)
        source, down = "section", sections.down
        if not sections.has_down:
            kind, value = _down_twin(step) or ("", "")
            where = step.path
            if kind == "path" and read_text is not None:
                kind, where, value = "sql", value, read_text(value)
            if kind != "sql":
                return self._derived(sections.up, fam)
            source, down = "twin", _sections(step, where, value, fam).up
        return StepInfo(
            statements=sections.up, down_statements=down, down_source=source, invertible=True
        )

    def statements(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        names: Mapping[str, str],
        renames: Mapping[str, str],
    ) -> Sequence[Statement]:
        """The up statements of *step*, rendered as they would be executed (``--dry-run``)."""
        fam = family(dialect)
        up = _sections(step, step.path, text, fam).up
        if "${" not in text and not any(old in text for old in renames):
            return up  # nothing to render (a big file's statements stay offsets: _sqlsplit.Spans)
        return tuple(_rendered(s, self._render(step, s, names, renames, fam)) for s in up)

    def apply(self, step: Step, context: Any) -> None:
        """Run the step's up statements not yet done, in order, through the context."""
        fam = family(context.dialect)
        up = _sections(step, step.path, context.read_text(step.path), fam).up
        done = context.done()
        for stmt in up:  # one at a time (a big file's are made as they are read)
            if stmt.index not in done:
                sql = self._render(step, stmt, context.names, context.renames, fam)
                context.execute(sql, index=stmt.index, line=stmt.line)

    def rollback(self, step: Step, context: Any) -> None:
        """Run the step's undo statements not yet done (see the module docstring).

        Raises:
            StepError: the step has no down section, twin or derivable inverse.
        """
        fam = family(context.dialect)
        info = self.inspect(
            step, context.read_text(step.path), dialect=fam, read_text=context.read_text
        )
        done = context.done()
        ran = {i for i in done if i < DOWN_OFFSET}
        down = info.down_statements
        if ran and len(ran) < len(info.statements):
            partial = self._derived(tuple(s for s in info.statements if s.index in ran), fam)
            if partial.invertible or not info.invertible:
                info, down = partial, partial.down_statements
        if not info.invertible:
            raise StepError(
                step.id,
                step.path,
                "cannot be rolled back: it has no down section (-- lupo:down), no .down.sql"
                " twin, and " + "; ".join(info.reasons) + ". Add a down section.",
            )
        for stmt in down:
            if DOWN_OFFSET + stmt.index not in done:
                sql = self._render(step, stmt, context.names, context.renames, fam)
                context.execute(sql, index=DOWN_OFFSET + stmt.index, line=stmt.line)

    def can_rollback(self, step: Step) -> bool:
        """Whether *step* has a down twin, or (with a root) a down section or derived inverse."""
        if _down_twin(step) is not None:
            return True
        if self._root is None:
            return False
        try:
            text = (self._root / step.path).read_bytes().decode("utf-8-sig")
            info = self.inspect(step, text.replace("\r\n", "\n"), read_text=self._read)
            return info.invertible
        except (OSError, UnicodeDecodeError, StepError):
            return False

    def _read(self, relpath: str) -> str:
        assert self._root is not None
        return (self._root / relpath).read_bytes().decode("utf-8-sig").replace("\r\n", "\n")

    def _derived(self, statements: Sequence[Statement], fam: str) -> StepInfo:
        down: list[Statement] = []
        reasons: list[str] = []
        gone_with = _inside_new_tables(statements, fam)
        for stmt in reversed(statements):
            if stmt.index in gone_with:
                continue  # dropping the table the step created undoes it
            inverse = derive_inverse(stmt.text, dialect=fam)
            if isinstance(inverse, str):
                reasons.append(f"statement {stmt.index + 1} (line {stmt.line}): {inverse}")
                continue
            down.extend(Statement(sql, stmt.line, len(down) + k) for k, sql in enumerate(inverse))
        ok = not reasons
        return StepInfo(
            statements=statements,
            down_statements=tuple(down) if ok else (),
            down_source="derived" if ok else "none",
            invertible=ok,
            reasons=tuple(reversed(reasons)),
        )

    @staticmethod
    def _render(
        step: Step, stmt: Statement, names: Mapping[str, str], renames: Mapping[str, str], fam: str
    ) -> str:
        try:
            return render(stmt.text, names=names, renames=renames, dialect=fam)
        except SplitError as error:  # pragma: no cover - the splitter saw the same text
            raise StepError(step.id, step.path, f"line {stmt.line}: {error.message}") from error


def _inside_new_tables(statements: Sequence[Statement], fam: str) -> set[int]:
    """The indexes of the statements that only write rows to, or alter, tables created by
    earlier statements of the same step (and dropped again by their inverse): they need no
    inverse of their own. ``CREATE TABLE t ...; INSERT INTO t ...`` is undone by dropping t.

    Only where nothing else can have been changed through them: not once the step created a
    trigger on such a table (its body may write elsewhere), nor once it altered a table that
    existed before (a foreign key from it could cascade a delete) or ran a statement whose
    effects are not known here (a routine, an event, anything unrecognised). Names are compared as
    written (a table named in another case or schema is another table here: its statement
    then needs an inverse of its own, or a pre-image).
    """
    created: set[str] = set()
    triggered: set[str] = set()
    altered_before = False
    inside: set[int] = set()
    for stmt in statements:
        found = touches(stmt.text, dialect=fam)
        if (
            found
            and not altered_before
            and all(
                t.kind == "table"
                and t.schema is None
                and t.action in ("write", "alter")
                and t.name in created
                and t.name not in triggered
                for t in found
            )
        ):
            inside.add(stmt.index)
            continue
        if not found and not isinstance(derive_inverse(stmt.text, dialect=fam), tuple):
            altered_before = True  # it changes something, and what is not known here
        trigger = any(t.kind == "trigger" and t.action == "create" for t in found)
        for t in found:
            if t.kind in ("routine", "event", "unknown"):
                altered_before = True  # what it does (or calls) is not known here
            if t.kind != "table":
                continue
            if t.action == "create" and t.schema is None:
                if isinstance(derive_inverse(stmt.text, dialect=fam), tuple):
                    created.add(t.name)  # its inverse drops it
            elif t.action == "drop":
                created.discard(t.name)
            elif t.action == "rename" and t.name in created and t.new_name is not None:
                created.discard(t.name)
                created.add(t.new_name)
            elif t.action == "alter" and trigger:
                triggered.add(t.name)
            elif t.action == "alter" and t.name not in created:
                altered_before = True
    return inside


def _rendered(stmt: Statement, text: str) -> Statement:
    """*stmt* with its text rendered as *text* (itself when rendering changed nothing)."""
    return stmt if text is stmt.text else attrs.evolve(stmt, text=text)


def _split(text: str, fam: str) -> Sections:
    """:func:`split_sections`, remembered: a run splits each file before it (the pre-run
    checks read the plan's statements) and again to apply it. Remembered by the text's
    digest, not the text (a big file is not kept twice); the last 4,096 files."""
    key = (hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest(), fam)
    found = _SPLITS.pop(key, None)
    if found is None:
        found = split_sections(text, dialect=fam)
    _SPLITS[key] = found  # the last used last
    if len(_SPLITS) > _SPLITS_KEPT:
        del _SPLITS[next(iter(_SPLITS))]
    return found


#: Files split by :func:`_split`, by (digest of the text, dialect family), least recently
#: used first.
_SPLITS: dict[tuple[bytes, str], Sections] = {}
_SPLITS_KEPT: Final = 4096


def _sections(step: Step, path: str, text: str, fam: str) -> Sections:
    try:
        return _split(text, fam)
    except SplitError as error:
        raise StepError(step.id, path, f"line {error.line}: {error.message}") from error


def _down_twin(step: Step) -> tuple[str, str] | None:
    """``("path", relpath)`` or ``("sql", text)`` from the step's meta, or None."""
    path = step.meta.get("down_path")
    if isinstance(path, str) and path:
        return ("path", path)
    down = step.meta.get("down")
    if isinstance(down, str) and down.strip():
        value = down.strip()
        is_path = value.endswith(".sql") and not any(c.isspace() for c in value)
        return ("path" if is_path else "sql", value)
    return None
