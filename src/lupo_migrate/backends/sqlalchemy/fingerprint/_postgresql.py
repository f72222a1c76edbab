"""The PostgreSQL catalog reader (``pg_catalog``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy.fingerprint._helpers import _rows, _sorted_parts, _tables_dict

# --------------------------------------------------------------------------- PostgreSQL

_PG_TABLES: Final = (
    "SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p', 'v', 'm')"
)


_PG_COLUMNS: Final = (
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid), co.collname, col_description(c.oid, a.attnum),"
    " a.attidentity, a.attgenerated"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100"
    " WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
)


_PG_INDEXES: Final = (
    "SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisunique, x.indisprimary,"
    " EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid"
    " AND k.contype = 'u')"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
    " WHERE n.nspname = %(s)s"
)


_PG_CONSTRAINTS: Final = (
    "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)"
    " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(s)s AND k.contype IN ('f', 'c', 'x')"
)


_PG_VIEWS: Final = (
    "SELECT c.relname, c.relkind, pg_get_viewdef(c.oid) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(s)s AND c.relkind IN ('v', 'm')"
)


_PG_TRIGGERS: Final = (
    "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
    " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(s)s AND NOT t.tgisinternal"
)


_PG_ROUTINES: Final = (
    "SELECT p.prokind, p.proname, pg_get_function_identity_arguments(p.oid),"
    " pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = %(s)s AND p.prokind IN ('f', 'p')"
)


# --------------------------------------------------------------------------- PostgreSQL


def _read_postgresql(connection: sa.Connection, schema: str | None) -> dict[str, dict[str, Any]]:
    if schema is None:
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
    p = {"s": schema}
    relations = _rows(connection, _PG_TABLES, p)
    tables = _tables_dict(name for name, kind, _ in relations if kind in ("r", "p"))
    for name, kind, comment in relations:
        if name in tables:
            tables[name]["options"] = {"partitioned": kind == "p", "comment": comment}
    view_columns: dict[str, list[list[Any]]] = defaultdict(list)
    for row in _rows(connection, _PG_COLUMNS, p):
        name, column, ctype, nullable, default, collation, comment, identity, generated = row
        if name in tables:
            tables[name]["columns"].append(
                {
                    "name": column,
                    "type": ctype,
                    "nullable": bool(nullable),
                    "default": default,
                    "collation": collation,
                    "comment": comment,
                    "identity": identity or None,
                    "generated": generated or None,
                }
            )
        else:
            view_columns[name].append([column, ctype])
    for name, index, definition, unique, primary, constraint in _rows(connection, _PG_INDEXES, p):
        if name in tables:
            tables[name]["indexes"].append(
                {
                    "name": index,
                    "unique": bool(unique),
                    "primary": bool(primary),
                    "constraint": bool(constraint),  # backs a UNIQUE constraint
                    "definition": definition,
                }
            )
    for name, constraint, kind, definition in _rows(connection, _PG_CONSTRAINTS, p):
        if name in tables:
            part = "foreign_keys" if kind == "f" else "checks"
            tables[name][part].append({"name": constraint, "definition": definition})
    objects = _sorted_parts(tables)
    for name, kind, definition in _rows(connection, _PG_VIEWS, p):
        objects[f"view:{name}"] = {
            "materialized": kind == "m",
            "definition": definition,
            "columns": view_columns.get(name, []),
        }
    for name, table, definition in _rows(connection, _PG_TRIGGERS, p):
        objects[f"trigger:{name}"] = {"table": table, "definition": definition}
    for kind, name, arguments, definition in _rows(connection, _PG_ROUTINES, p):
        rtype = "procedure" if kind == "p" else "function"
        objects[f"routine:{rtype}:{name}({arguments})"] = {"definition": definition}
    return objects
