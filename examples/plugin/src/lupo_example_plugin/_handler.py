"""The ``seed`` handler: applies and undoes ``.seed.csv`` files (format: :mod:`._reading`).

Applying runs each INSERT through :meth:`~lupo_migrate.typing.StepContext.execute`, journalled
under the row's 0-based index; rows the journal records as done are skipped, so a resumed step
goes on where it stopped. Undoing runs the DELETEs under ``DOWN_OFFSET + index``, only for the
rows that ran when the step stopped partway.

Two optional methods, besides the :class:`~lupo_migrate.typing.Handler` protocol, let the
orchestrator look at a step before it runs: :meth:`SeedHandler.statements` (``apply --dry-run``
prints them, the pre-run checks read which tables they touch) and :meth:`SeedHandler.inspect`
(how the step is undone).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, final

import attrs

from lupo_example_plugin._reading import MAX_ROWS, PLACEHOLDER, SUFFIX, SeedFile, parse_seed
from lupo_example_plugin._sql import family, quote_identifier, sql_literal
from lupo_migrate import Step
from lupo_migrate.errors import StepError
from lupo_migrate.typing import StepContext

__all__ = ["DOWN_OFFSET", "SeedHandler", "SeedInfo", "SeedStatement"]

#: Journal indexes of the undo statements start here; the INSERTs use 0, 1, 2... (below
#: ``MAX_ROWS``), and from 20,000 on lupo_migrate keeps undo records.
DOWN_OFFSET: Final = MAX_ROWS


@attrs.frozen
class SeedStatement:
    """One statement of a seed step, as :meth:`SeedHandler.statements` lists it.

    Attributes:
        text: the SQL, rendered for the target (no trailing ``;``).
        line: the 1-based line of its row in the file.
        index: its journal index (the row's 0-based position; undo: ``DOWN_OFFSET +``).
    """

    text: str
    line: int
    index: int


@attrs.frozen(kw_only=True)
class SeedInfo:
    """How a seed step is undone, as :meth:`SeedHandler.inspect` tells the orchestrator.

    Attributes:
        invertible: always True: every row has a key to delete it by.
        down_source: ``section``: the step brings its own exact undo, like a doctrine file's
            down section, so a large table needs no backup copy (the rows are still compared
            with the pre-run state after a rollback).
        reasons: why it cannot be undone (always empty).
    """

    invertible: bool = True
    down_source: str = "section"
    reasons: tuple[str, ...] = ()


def _family(step: Step, dialect: str) -> str:
    """The dialect's quoting family, or a StepError saying seed files cannot target it."""
    try:
        return family(dialect)
    except ValueError as error:
        raise StepError(
            step.id, step.path, f"{error}. Use a SQL migration for this database."
        ) from None


def _render_table(
    step: Step,
    seed: SeedFile,
    *,
    dialect: str,
    names: Mapping[str, str],
    renames: Mapping[str, str],
) -> str:
    """The table, quoted, with a ``${name}`` schema replaced and a literal schema renamed."""
    parts = seed.table.split(".")
    out: list[str] = []
    for position, part in enumerate(parts):
        placeholder = PLACEHOLDER.fullmatch(part)
        if placeholder is not None:
            if placeholder[1] not in names:
                known = ", ".join("${" + k + "}" for k in sorted(names)) or "none"
                raise StepError(
                    step.id,
                    step.path,
                    f"line {seed.table_line}: unknown placeholder {part} in table"
                    f" {seed.table!r}; known: {known}. Correct it, or give the federation"
                    " that name (schemas in lupo.toml)",
                )
            part = names[placeholder[1]]
        elif position == 0 and len(parts) == 2:
            part = renames.get(part, part)
        out.append(quote_identifier(part, dialect=dialect))
    return ".".join(out)


@final
@attrs.frozen
class SeedHandler:
    """Applies and undoes ``.seed.csv`` files (type ``seed``; see the module docstring).

    Stateless, so one instance serves every step; the ``lupo_migrate.handlers`` entry point
    names the class, and lupo_migrate calls it with no arguments.
    """

    file_type: str = "seed"
    suffixes: tuple[str, ...] = (SUFFIX,)

    def statements(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        names: Mapping[str, str],
        renames: Mapping[str, str],
    ) -> tuple[SeedStatement, ...]:
        """The INSERTs of *step*, rendered as :meth:`apply` would run them (``--dry-run``).

        Raises:
            StepError: the file is not a usable seed, or the dialect is not supported.
        """
        seed = parse_seed(step, text)
        return self._inserts(step, seed, dialect=dialect, names=names, renames=renames)

    def inspect(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        read_text: Callable[[str], str] | None = None,
    ) -> SeedInfo:
        """How *step* is undone: by its own DELETEs, known before it runs.

        Raises:
            StepError: the file is not a usable seed.
        """
        del dialect, read_text  # the same for every database; no other file is needed
        parse_seed(step, text)
        return SeedInfo()

    def apply(self, step: Step, context: StepContext) -> None:
        """Insert the rows the journal does not record as done, in file order."""
        seed = parse_seed(step, context.read_text(step.path))
        done = context.done()
        inserts = self._inserts(
            step, seed, dialect=context.dialect, names=context.names, renames=context.renames
        )
        for statement in inserts:
            if statement.index not in done:
                context.execute(statement.text, index=statement.index, line=statement.line)

    def rollback(self, step: Step, context: StepContext) -> None:
        """Delete the inserted rows by their key, newest first.

        When the step stopped partway (the journal records some INSERTs as done), only those
        rows are deleted; otherwise all of them. DELETEs already done are skipped, so an
        interrupted rollback can be carried on.
        """
        seed = parse_seed(step, context.read_text(step.path))
        _family(step, context.dialect)
        table = _render_table(
            step, seed, dialect=context.dialect, names=context.names, renames=context.renames
        )
        column = quote_identifier(seed.columns[seed.key], dialect=context.dialect)
        done = context.done()
        ran = {index for index in done if index < DOWN_OFFSET}
        for index in reversed(range(len(seed.rows))):
            if (ran and index not in ran) or DOWN_OFFSET + index in done:
                continue
            row = seed.rows[index]
            value = sql_literal(row.values[seed.key], dialect=context.dialect)
            context.execute(
                f"DELETE FROM {table} WHERE {column} = {value}",
                index=DOWN_OFFSET + index,
                line=row.line,
            )

    def can_rollback(self, step: Step) -> bool:
        """Always True: every row has a key (checked when the file is read)."""
        del step
        return True

    @staticmethod
    def _inserts(
        step: Step,
        seed: SeedFile,
        *,
        dialect: str,
        names: Mapping[str, str],
        renames: Mapping[str, str],
    ) -> tuple[SeedStatement, ...]:
        _family(step, dialect)
        table = _render_table(step, seed, dialect=dialect, names=names, renames=renames)
        columns = ", ".join(quote_identifier(c, dialect=dialect) for c in seed.columns)
        return tuple(
            SeedStatement(
                f"INSERT INTO {table} ({columns}) VALUES"
                f" ({', '.join(sql_literal(v, dialect=dialect) for v in row.values)})",
                row.line,
                index,
            )
            for index, row in enumerate(seed.rows)
        )
