"""The catalog queries behind :class:`~lupo_migrate.backends.sqlalchemy.target.SqlAlchemyTarget`'s
checks: row estimates, which tables, views, triggers and columns exist, and rows whose foreign
keys point at no row.

Apart from ``target.py`` so that module stays readable in one sitting. These are plain
functions of a connection and a schema, one query (or a few) per dialect; the target decides
which connection they read on (the step's own, or one of its own) and what it leaves out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["existing_columns", "existing_objects", "orphans", "row_estimates"]


def row_estimates(
    connection: Connection, family: str, schema: str | None, own: Callable[[str], bool]
) -> dict[str, int]:
    """About how many rows each table of *schema* holds (the catalog's statistics where there
    are some; SQLite counts), tables *own* says are lupo_migrate's left out.

    Args:
        family: ``mysql`` (MariaDB too), ``postgresql`` or ``sqlite``.
    """
    rows: Iterable[Any]
    if family == "mysql":
        where = "DATABASE()" if schema is None else "%(s)s"
        rows = connection.exec_driver_sql(
            "SELECT table_name, COALESCE(table_rows, 0) FROM information_schema.tables"
            f" WHERE table_schema = {where} AND table_type = 'BASE TABLE'",
            {"s": schema},
        )
    elif family == "postgresql":
        rows = connection.exec_driver_sql(
            "SELECT c.relname, GREATEST(c.reltuples, 0)::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname = COALESCE(%(s)s, current_schema())",
            {"s": schema},
        )
    else:
        names = sa.inspect(connection).get_table_names(schema=schema)
        quote = connection.dialect.identifier_preparer.quote
        rows = (
            (n, connection.exec_driver_sql(f"SELECT COUNT(*) FROM {quote(n)}").scalar())
            for n in names
        )
    return _counts(rows, own)


def existing_objects(
    conn: Connection, wanted: Mapping[str, list[str]], schema: str | None, dialect: str
) -> list[Any]:
    """``(kind, name)`` rows of the objects of *wanted* (names by kind: ``table``, ``view``,
    ``trigger``) that exist in *schema*; *dialect* is the engine's dialect name."""
    rows: list[Any] = []
    if dialect == "sqlite":
        names = sorted({n for ns in wanted.values() for n in ns})
        marks = ", ".join("?" * len(names))
        rows = list(
            conn.exec_driver_sql(
                f"SELECT type, name FROM sqlite_master WHERE name IN ({marks})",
                tuple(names),
            ).all()
        )
    else:
        pg = dialect == "postgresql"
        here = "current_schema()" if pg else "DATABASE()"
        where = here if schema is None else "%(s)s"
        tables = wanted["table"] + wanted["view"]
        if tables:
            rows += conn.exec_driver_sql(
                "SELECT CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END,"
                " table_name FROM information_schema.tables"
                f" WHERE table_schema = {where} AND table_name IN %(n)s",
                {"s": schema, "n": tuple(tables)},
            ).all()
        if wanted["trigger"]:
            rows += conn.exec_driver_sql(
                "SELECT 'trigger', trigger_name FROM information_schema.triggers"
                f" WHERE trigger_schema = {where} AND trigger_name IN %(n)s",
                {"s": schema, "n": tuple(wanted["trigger"])},
            ).all()
    return rows


def existing_columns(
    conn: Connection, tables: Collection[str], schema: str | None, dialect: str
) -> set[tuple[str, str]]:
    """The ``(table, column)`` pairs of *tables* in *schema*, both lowercased; *dialect* is
    the engine's dialect name."""
    there: set[tuple[str, str]] = set()
    if dialect == "sqlite":
        for table in tables:
            names = conn.exec_driver_sql(
                "SELECT name FROM pragma_table_info(?)", (table,)
            ).scalars()
            there.update((table.lower(), str(name).lower()) for name in names)
    else:
        pg = dialect == "postgresql"
        here = "current_schema()" if pg else "DATABASE()"
        where = here if schema is None else "%(s)s"
        rows = conn.exec_driver_sql(
            "SELECT table_name, column_name FROM information_schema.columns"
            f" WHERE table_schema = {where} AND table_name IN %(n)s",
            {"s": schema, "n": tuple(tables)},
        ).all()
        there.update((str(t).lower(), str(c).lower()) for t, c in rows)
    return there


def orphans(
    conn: Connection, tables: Sequence[str], schema: str | None
) -> list[tuple[str, str, int]]:
    """Rows of *tables* whose foreign keys point at no row: (table, key, how many)."""
    found = []
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    present = set(inspector.get_table_names(schema=schema))
    for table in tables:
        if table not in present:
            continue
        for fk in inspector.get_foreign_keys(table, schema=schema):
            parent = fk["referred_table"]
            cols = fk["constrained_columns"]
            # SQLite may leave the parent's columns implicit: its primary key.
            refs = (
                fk["referred_columns"] or inspector.get_pk_constraint(parent)["constrained_columns"]
            )
            pairs = zip(cols, refs, strict=True)
            match = " AND ".join(f"p.{quote(r)} = c.{quote(c)}" for c, r in pairs)
            given = " AND ".join(f"c.{quote(c)} IS NOT NULL" for c in cols)
            count = conn.exec_driver_sql(
                f"SELECT COUNT(*) FROM {quote(table)} c WHERE {given} AND NOT EXISTS"
                f" (SELECT 1 FROM {quote(parent)} p WHERE {match})"
            ).scalar()
            if count:
                found.append((table, str(fk.get("name") or ",".join(cols)), int(count)))
    return found


def _counts(rows: Iterable[Any], own: Any) -> dict[str, int]:
    return {str(name): int(count or 0) for name, count in rows if not own(str(name))}
