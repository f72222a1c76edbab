"""PostgreSQL's part of the pre-images: a table's definition from its fingerprint entry, and
bringing a table back to it with its rows kept.

PostgreSQL prints no ``CREATE TABLE`` of a table, but the catalog says all a rollback needs:
columns (type, collation, default, nullability, identity, generation), indexes
(``pg_get_indexdef``), the constraints they back, foreign keys and checks
(``pg_get_constraintdef``), triggers (``pg_get_triggerdef``); ``read_fingerprint`` reads it.

* :func:`create_statements`: recreate a table that is gone (refilled from its copy afterwards);
  sequences its defaults draw from are made again if they went with it.
* :func:`alter_back`: ``ALTER TABLE`` statements that bring a table that is there back to its
  definition before the run: renamed columns get their names back, what the pre-image lacks
  goes, columns come back (as nullable first: the caller fills them from what was set aside,
  then runs the returned ``SET NOT NULL`` statements), types, defaults and nullability come
  back, then indexes, the constraints they back, foreign keys and checks. A column comes back
  last: PostgreSQL cannot put a column in its old place without rebuilding the table (which
  views, foreign keys and grants depend on), so the column order can differ afterwards; the
  rollback says so.

Pure: entries in, statement texts out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["alter_back", "create_statements", "foreign_keys", "quote", "sequences"]

_NEXTVAL = re.compile(r"nextval\('((?:[^']|'')+)'(?:::regclass)?\)")


def quote(name: str) -> str:
    """*name* as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _column(column: Mapping[str, Any], *, with_null: bool = True) -> str:
    """A column's definition (name, type, collation, default or identity or generation)."""
    parts = [quote(column["name"]), str(column["type"])]
    if column.get("collation"):
        parts.append(f"COLLATE {quote(column['collation'])}")
    generated = column.get("generated")
    identity = column.get("identity")
    if generated == "s" and column.get("default"):
        parts.append(f"GENERATED ALWAYS AS ({column['default']}) STORED")
    elif identity in ("a", "d"):
        parts.append(f"GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY")
    elif column.get("default") is not None:
        parts.append(f"DEFAULT {column['default']}")
    if with_null and not column.get("nullable", True):
        parts.append("NOT NULL")
    return " ".join(parts)


def sequences(entry: Mapping[str, Any]) -> list[str]:
    """The sequences the table's column defaults draw from (``nextval('s'::regclass)``)."""
    found = []
    for column in entry.get("columns", ()):
        match = _NEXTVAL.search(str(column.get("default") or ""))
        if match:
            found.append(match.group(1).replace("''", "'"))
    return found


def _keys(table: str, entry: Mapping[str, Any], indexes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The statements making *indexes* of *entry* and the constraints they back."""
    out = []
    for index in indexes:
        out.append(str(index["definition"]))
        if index.get("primary"):
            out.append(
                f"ALTER TABLE {table} ADD CONSTRAINT {quote(index['name'])}"
                f" PRIMARY KEY USING INDEX {quote(index['name'])}"
            )
        elif index.get("constraint"):
            out.append(
                f"ALTER TABLE {table} ADD CONSTRAINT {quote(index['name'])}"
                f" UNIQUE USING INDEX {quote(index['name'])}"
            )
    return out


def _constraints(table: str, parts: Iterable[Mapping[str, Any]]) -> list[str]:
    return [
        f"ALTER TABLE {table} ADD CONSTRAINT {quote(part['name'])} {part['definition']}"
        for part in parts
    ]


def foreign_keys(table: str, parts: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The statements adding foreign keys *parts* to *table* without checking the rows
    (``NOT VALID``: the rows they refer to may not be back yet), and those validating them
    once every table's rows are back."""
    adding, validating = [], []
    for part in parts:
        definition = str(part["definition"])
        if definition.endswith(" NOT VALID"):  # it was so before the run: it stays so
            adding.append(f"ALTER TABLE {table} ADD CONSTRAINT {quote(part['name'])} {definition}")
            continue
        adding.append(
            f"ALTER TABLE {table} ADD CONSTRAINT {quote(part['name'])} {definition} NOT VALID"
        )
        validating.append(f"ALTER TABLE {table} VALIDATE CONSTRAINT {quote(part['name'])}")
    return adding, validating


def create_statements(table: str, entry: Mapping[str, Any]) -> list[str]:
    """The statements recreating table *table* (quoted, qualified as needed) from its
    fingerprint *entry*: the sequences its defaults draw from, the table, its indexes and the
    constraints they back, and its checks (foreign keys: :func:`foreign_keys`; triggers are
    the caller's)."""
    out = [f"CREATE SEQUENCE IF NOT EXISTS {_qualify(s)}" for s in sequences(entry)]
    columns = ", ".join(_column(c) for c in entry.get("columns", ()))
    out.append(f"CREATE TABLE {table} ({columns})")
    out += _keys(table, entry, entry.get("indexes", ()))
    out += _constraints(table, entry.get("checks", ()))
    return out


def _qualify(sequence: str) -> str:
    """A sequence name as ``nextval`` shows it (``s`` or ``schema.s``, quoted where it must
    be), as an identifier."""
    return ".".join(p if p.startswith('"') else quote(p) for p in sequence.split("."))


def alter_back(
    table: str,
    before: Mapping[str, Any],
    now: Mapping[str, Any],
    renamed: Mapping[str, str],
) -> tuple[list[list[str]], list[str], list[str], list[str]]:
    """How to bring table *table* (quoted) from its entry *now* back to *before*, rows kept.

    Returns:
        The statements in stages (each stage after the previous one ran), the columns
        added back (to be filled), the statements to run once they are filled (their
        ``NOT NULL``, keys, checks), and those to run once every table is back with its
        rows (its foreign keys, added unchecked, then validated).
    """
    stages: list[list[str]] = []
    # 1. columns the run renamed get their names back
    have = {c["name"] for c in now.get("columns", ())}
    wanted = {c["name"]: c for c in before.get("columns", ())}
    back = [
        f"ALTER TABLE {table} RENAME COLUMN {quote(new)} TO {quote(old)}"
        for new, old in renamed.items()
        if new in have and old not in have and old in wanted
    ]
    current: dict[str, Mapping[str, Any]] = {}
    for column in now.get("columns", ()):  # by their names once stage 1 ran
        name = column["name"]
        if name in renamed and renamed[name] not in have and renamed[name] in wanted:
            name = renamed[name]
        current[name] = column
    stages.append(back)
    # 2. constraints, indexes and columns the pre-image lacks (or has otherwise)
    drops: list[str] = []
    for part in ("foreign_keys", "checks"):
        had = {p["name"]: p for p in before.get(part, ())}
        for p in now.get(part, ()):
            if had.get(p["name"]) != p:
                drops.append(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {quote(p['name'])}")
    had_index = {i["name"]: i for i in before.get("indexes", ())}
    for index in now.get("indexes", ()):
        if had_index.get(index["name"]) != index:
            if index.get("primary") or index.get("constraint"):
                drops.append(
                    f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {quote(index['name'])}"
                )
            drops.append(f"DROP INDEX IF EXISTS {_index_name(table, index['name'])}")
    for name in current:
        if name not in wanted:
            drops.append(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {quote(name)}")
    stages.append(drops)
    # 3. columns back, as nullable; their types, defaults and nullability
    added: list[str] = []
    changes: list[str] = []
    after_fill: list[str] = []
    for name, column in wanted.items():
        was = current.get(name)
        if was is None:
            changes.append(f"ALTER TABLE {table} ADD COLUMN {_column(column, with_null=False)}")
            added.append(name)
            if not column.get("nullable", True):
                after_fill.append(f"ALTER TABLE {table} ALTER COLUMN {quote(name)} SET NOT NULL")
            continue
        if was.get("type") != column.get("type"):
            changes.append(
                f"ALTER TABLE {table} ALTER COLUMN {quote(name)} TYPE {column['type']}"
                f" USING {quote(name)}::{column['type']}"
            )
        if was.get("default") != column.get("default") and not column.get("identity"):
            if column.get("default") is None:
                changes.append(f"ALTER TABLE {table} ALTER COLUMN {quote(name)} DROP DEFAULT")
            else:
                changes.append(
                    f"ALTER TABLE {table} ALTER COLUMN {quote(name)}"
                    f" SET DEFAULT {column['default']}"
                )
        if was.get("nullable") != column.get("nullable"):
            verb = "DROP" if column.get("nullable", True) else "SET"
            after_fill.append(f"ALTER TABLE {table} ALTER COLUMN {quote(name)} {verb} NOT NULL")
    stages.append(changes)
    # 4. indexes, the constraints they back, checks and foreign keys of the pre-image
    has_index = {i["name"]: i for i in now.get("indexes", ())}
    missing = [i for i in before.get("indexes", ()) if has_index.get(i["name"]) != i]
    keys = _keys(table, before, missing)
    has = {p["name"]: p for p in now.get("checks", ())}
    keys += _constraints(table, [p for p in before.get("checks", ()) if has.get(p["name"]) != p])
    has = {p["name"]: p for p in now.get("foreign_keys", ())}
    adding, validating = foreign_keys(
        table, [p for p in before.get("foreign_keys", ()) if has.get(p["name"]) != p]
    )
    # foreign keys last of all: the tables they refer to may not be back yet
    return [s for s in stages if s], added, after_fill + keys, adding + validating


def _index_name(table: str, name: str) -> str:
    """Index *name* in *table*'s schema (an index lives in its table's schema)."""
    schema, dot, _ = table.rpartition(".")
    return f"{schema}.{quote(name)}" if dot else quote(name)
