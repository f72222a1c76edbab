"""Columns a run added to tables that were there before it (shell): what a rollback would lose.

Undoing ``ALTER TABLE t ADD COLUMN c`` drops ``c``, and with it every value the application
wrote into it after the run. So when a run completes, the values the run left in each column
it added are kept, by key (a table without a key: the values alone), in a backup table: only
those other than NULL and the column's literal default, which for a plain ``ADD COLUMN`` is
none at all, whatever the table's size. Before a rollback, the values in the column now that
are not among those kept are the application's: the rollback lists them and is refused unless
the operator says the run's change is undone anyway (see ``core.undo_plan.refusal``).

Rows inserted since with NULL or the literal default in the column, and rows the application
deleted, lose nothing when the column goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _rows

__all__ = ["added_columns", "keep_values", "literal_default", "written_since"]

#: A quoted literal, as the catalogs give a column's default (``'new'``, PostgreSQL
#: ``'new'::character varying``), or a plain number.
_QUOTED: Final = re.compile(r"\A'((?:[^']|'')*)'(?:::[\w\s\"\[\]]+)?\Z")
_NUMBER: Final = re.compile(r"\A\(?(-?\d+(?:\.\d+)?)\)?(?:::[\w\s]+)?\Z")


def literal_default(default: str | None) -> str | None:
    """The text of a column's default when it is a literal (``'new'``, ``0``), else None
    (no default, NULL, or an expression such as ``CURRENT_TIMESTAMP``)."""
    if default is None:
        return None
    text = str(default).strip()
    if text.lower() in ("true", "false"):  # PostgreSQL booleans, as ``::text`` writes them
        return text.lower()
    quoted = _QUOTED.match(text)
    if quoted:
        return quoted[1].replace("''", "'")
    number = _NUMBER.match(text)
    return number[1] if number else None


def added_columns(
    before: Mapping[str, Any],
    now: Iterable[str],
    renamed: Mapping[str, str],
) -> list[str]:
    """The columns of a table now (*now*, generated ones left out) that its fingerprint
    entry *before* the run does not have; *renamed* maps a column's name now to its name
    before the run."""
    was = {c["name"] for c in before.get("columns", ())}
    return [c for c in now if renamed.get(c, c) not in was]


def keep_values(
    conn: sa.Connection,
    table: str,
    column: str,
    key: Sequence[str],
    default: str | None,
    into: str,
) -> int:
    """Keep in table *into* (qualified, quoted) the *key* and *column* of the rows of *table*
    (quoted) whose value is not NULL and not the literal *default*; how many. None kept:
    *into* is not created."""
    q = conn.dialect.identifier_preparer.quote_identifier
    selected = ", ".join(q(c) for c in (*key, column))
    where, params = _holding(conn, "t", column, default)
    count = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} AS t WHERE {where}"), params)
    found = int(count.scalar_one())
    if found:
        conn.execute(
            sa.text(f"CREATE TABLE {into} AS SELECT {selected} FROM {table} AS t WHERE {where}"),
            params,
        )
        _rows.index_key(conn, into, key)
    return found


def written_since(
    conn: sa.Connection,
    table: str,
    column: str,
    key: Sequence[str],
    default: str | None,
    kept: str | None,
    shown: int = 5,
) -> tuple[int, list[str]]:
    """The rows of *table* whose value in *column* is not NULL, not the literal *default*,
    and not the one the run left (kept in *kept*, see :func:`keep_values`): how many, and
    the first *shown* of them (``[key] value``)."""
    q = conn.dialect.identifier_preparer.quote_identifier
    where, params = _holding(conn, "t", column, default)
    if kept is not None:
        same = [f"v.{q(k)} = t.{q(k)}" for k in key]
        same.append(f"{_text(conn, 'v', column)} = {_text(conn, 't', column)}")
        where += f" AND NOT EXISTS (SELECT 1 FROM {kept} AS v WHERE {' AND '.join(same)})"
    count = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} AS t WHERE {where}"), params)
    found = int(count.scalar_one())
    if not found:
        return 0, []
    selected = ", ".join(f"t.{q(c)}" for c in (*key, column))
    order = f" ORDER BY {', '.join(f't.{q(k)}' for k in key)}" if key else ""
    rows = conn.execute(
        sa.text(f"SELECT {selected} FROM {table} AS t WHERE {where}{order} LIMIT {int(shown)}"),
        params,
    )
    return found, [
        (f"[{', '.join(str(v) for v in row[:-1])}] " if key else "") + repr(row[-1]) for row in rows
    ]


def _holding(
    conn: sa.Connection, alias: str, column: str, default: str | None
) -> tuple[str, dict[str, Any]]:
    """A condition: *column* of *alias* holds a value other than NULL and *default*."""
    q = conn.dialect.identifier_preparer.quote_identifier
    where = f"{alias}.{q(column)} IS NOT NULL"
    if default is None:
        return where, {}
    text = _text(conn, alias, column)
    mine = "CAST(:default AS BINARY)" if conn.dialect.name == "mysql" else ":default"
    return f"{where} AND {text} <> {mine}", {"default": default}


def _text(conn: sa.Connection, alias: str, column: str) -> str:
    """*column* of *alias* as text compared byte for byte (MySQL's collations would take
    ``'x'`` for ``'X'``)."""
    col = f"{alias}.{conn.dialect.identifier_preparer.quote_identifier(column)}"
    if conn.dialect.name == "postgresql":
        return f"{col}::text"
    if conn.dialect.name == "sqlite":
        return f"CAST({col} AS TEXT)"
    return f"CAST({col} AS BINARY)"
