"""The ``seed`` file type: rows of a CSV file inserted into a table, one INSERT per row.

A seed file ends in ``.seed.csv``. Its header is YAML front matter, read by lupo_migrate
itself like a Markdown file's (so ``id``, ``depends_on``, ``version`` and ``description`` mean
what they mean everywhere); the CSV follows, its first line naming the columns::

    ---
    id: seed_countries
    depends_on: [create_countries]
    table: countries            # optional: default, the file name (V2__countries -> countries)
    key: code                   # optional: default, the first column
    ---
    code,name,population
    fr,France,68170000
    ci,Côte d'Ivoire,31170000
    aq,Antarctica,

- **table** may name a schema: ``sales.countries``, or ``${core}.countries`` for the
  federation's physical name of ``core``; a literal schema is renamed like in SQL files
  (``--rename sales=test``). Table and column names are quoted exactly as written, so on
  PostgreSQL write them as the catalog stores them (lower case for unquoted names).
- **values**: an empty field is NULL; a canonical integer that fits in 64 bits (``42``,
  ``-7``, not ``007`` or ``+1``) is written as a number; anything else is a string literal,
  escaped for the dialect (see :func:`lupo_example_plugin.sql_literal`).
- **key**: every row needs a value in the key column, unique in the file. The rollback deletes
  the rows it inserted by that value, newest first, so the key must be unique in the table too
  (a primary key): a duplicate would make the INSERT fail, which is what keeps the rollback
  exact.
- **size**: at most 10,000 rows (``MAX_ROWS``) per file, the statements a step's journal
  has room for; split a larger seed into several files.

This module reads and checks a seed file; :mod:`lupo_example_plugin._handler` renders and runs
it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Final

import attrs

from lupo_migrate import Step
from lupo_migrate.errors import StepError

__all__ = ["MAX_ROWS", "PLACEHOLDER", "SUFFIX", "SeedFile", "SeedRow", "parse_seed"]

#: The file name ending the seed handler claims during discovery.
SUFFIX: Final = ".seed.csv"
#: The most rows one seed file may hold: lupo_migrate lays out a step's journal as statements
#: from 0, undo statements from 10,000 (``DOWN_OFFSET``) and the undo records
#: ``StepContext.record`` keeps from 20,000, as for SQL files.
MAX_ROWS: Final = 10_000
#: A federation placeholder standing for a whole schema name (``${core}``).
PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen(kw_only=True)
class SeedRow:
    """One data row: its 1-based line in the file and its values (None for NULL)."""

    line: int
    values: tuple[str | None, ...]


@attrs.frozen(kw_only=True)
class SeedFile:
    """A seed file, read and checked, nothing rendered yet.

    Attributes:
        table: the table as written (``countries``, ``${core}.countries``).
        table_line: the header line naming it (1 when the file name does).
        columns: the column names, in file order.
        key: the position of the key column in *columns*.
        rows: the data rows, in file order.
    """

    table: str
    table_line: int = 1
    columns: tuple[str, ...]
    key: int = 0
    rows: tuple[SeedRow, ...] = ()


def _error(step: Step, line: int, message: str) -> StepError:
    return StepError(step.id, step.path, f"line {line}: {message}")


def _header_end(step: Step, lines: list[str]) -> int:
    """The 0-based index of the first line after the front matter (0 when there is none)."""
    if lines[0].rstrip() == "---":
        for index in range(1, len(lines)):
            if lines[index].rstrip() in ("---", "..."):
                return index + 1
        raise _error(step, 1, "the header opened by '---' is never closed; add a '---' line")
    for index, line in enumerate(lines):
        if line.rstrip() == "---":
            # lupo_migrate reads "key: value" lines closed by '---' as a header that lacks its
            # opening line; reading them as CSV instead would insert the header as rows.
            raise _error(
                step, index + 1, "'---' closes a header never opened; add a '---' line first"
            )
    return 0


def _header_line(lines: list[str], end: int, key: str) -> int:
    """The line of header field *key*, for error messages; 1 when it is not there."""
    pattern = re.compile(rf"{re.escape(key)}\s*:")
    return next((i + 1 for i in range(end) if pattern.match(lines[i])), 1)


def _default_table(step: Step) -> str:
    """``V2__countries.seed.csv`` -> ``countries``: the file name less suffix and version."""
    name = step.path.rpartition("/")[2]
    stem = name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) else name
    return stem.rpartition("__")[2]


def _table(step: Step, lines: list[str], end: int) -> tuple[str, int]:
    """The table as written, checked, and the line naming it."""
    table = step.meta.get("table", _default_table(step))
    line = _header_line(lines, end, "table")
    if not isinstance(table, str) or not table.strip():
        raise _error(step, line, f"'table' must name a table (table: countries), not {table!r}")
    parts = table.strip().split(".")
    if (
        len(parts) > 2
        or not all(parts)
        or any("${" in part and not PLACEHOLDER.fullmatch(part) for part in parts)
    ):
        raise _error(
            step,
            line,
            f"table {table!r} is not 'name', 'schema.name' or '${{core}}.name'; write one of"
            " those (a placeholder stands for a whole schema name)",
        )
    return table.strip(), line


def _records(step: Step, lines: list[str], end: int) -> Iterator[tuple[int, list[str]]]:
    """The CSV records after the header, each with the file line it starts on."""
    reader = csv.reader((line + "\n" for line in lines[end:]), strict=True)
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _error(
                step, end + reader.line_num, f"not valid CSV ({error}); check the quotes"
            ) from None
        if record:  # a blank line reads as []
            yield end + start, record
        start = reader.line_num + 1


def _key_position(step: Step, columns: tuple[str, ...], line: int, lines: list[str]) -> int:
    """Where the key column is; raises for a column without a name or named twice."""
    for position, name in enumerate(columns):
        if not name:
            raise _error(step, line, f"column {position + 1} has no name; name every column")
        if name in columns[:position]:
            raise _error(step, line, f"column {name!r} is named twice; name each column once")
    key = step.meta.get("key", columns[0])
    if key not in columns:
        raise _error(
            step,
            _header_line(lines, line - 1, "key"),
            f"key column {key!r} is not one of the columns ({', '.join(columns)}); name one of"
            " them, or leave 'key' out to use the first",
        )
    return columns.index(key)


def parse_seed(step: Step, text: str) -> SeedFile:
    """Read and check the seed file of *step*, whose text is *text*.

    Every row is checked before any statement runs, so a bad file changes nothing.

    Raises:
        StepError: the file is not a usable seed; the message names the file and the line,
            shows the value at fault and says what to do.
    """
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    end = _header_end(step, lines)
    table, table_line = _table(step, lines, end)
    columns: tuple[str, ...] = ()
    key = 0
    rows: list[SeedRow] = []
    seen: dict[str, int] = {}
    for line, record in _records(step, lines, end):
        if not columns:
            columns = tuple(name.strip() for name in record)
            key = _key_position(step, columns, line, lines)
            continue
        if len(record) != len(columns):
            raise _error(
                step,
                line,
                f"{len(record)} value(s) for {len(columns)} column(s) ({', '.join(columns)}):"
                f" {','.join(record)!r}; quote a value that holds a comma",
            )
        for name, value in zip(columns, record, strict=True):
            if "\x00" in value:
                raise _error(step, line, f"column {name!r} holds a NUL character; remove it")
        value = record[key]
        if not value:
            raise _error(
                step,
                line,
                f"key column {columns[key]!r} is empty; every row needs a key, since the"
                " rollback deletes the row by it",
            )
        if value in seen:
            raise _error(
                step,
                line,
                f"key {columns[key]}={value!r} repeats line {seen[value]}; make keys unique",
            )
        if len(rows) == MAX_ROWS:
            raise _error(
                step,
                line,
                f"more than {MAX_ROWS} rows; split the file in two (a step's journal keeps"
                f" {MAX_ROWS} statements)",
            )
        seen[value] = line
        rows.append(SeedRow(line=line, values=tuple(v if v else None for v in record)))
    if not columns:
        raise _error(
            step, end + 1, "no column names; the first line after the header names the columns"
        )
    return SeedFile(table=table, table_line=table_line, columns=columns, key=key, rows=tuple(rows))
