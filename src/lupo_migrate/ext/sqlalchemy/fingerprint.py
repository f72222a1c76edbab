"""Read schema fingerprints and table data checksums with a handful of bulk queries.

``read_fingerprint`` describes a whole schema in a fixed number of queries: on MySQL/MariaDB,
nine ``information_schema`` queries (tables, columns, index parts, foreign key parts, checks,
views, triggers, routines, parameters); on PostgreSQL, eight catalog queries; on SQLite,
``sqlite_master`` joined with the table-valued pragmas. Never table-by-table reflection: a
1,000-table schema costs what the bare catalog queries cost, plus the assembling
(``benchmarks/fingerprint.py``).

``table_data`` summarises tables' rows as a count and an order-independent checksum (the sum of
a 60-bit hash of each row, computed by the server on MySQL and PostgreSQL).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate._fingerprint import Fingerprint, TableData
from lupo_migrate.errors import InvalidArgumentError, StorageError

__all__ = ["read_fingerprint", "table_data"]

Exclude = Callable[[str], bool] | Collection[str]
_Rows = list[tuple[Any, ...]]

# --------------------------------------------------------------------------- MySQL / MariaDB

_MY_TABLES: Final = (
    "SELECT table_name, table_type, engine, table_collation, table_comment, create_options"
    " FROM information_schema.tables WHERE table_schema = %(s)s"
)
_MY_COLUMNS: Final = (
    "SELECT table_name, column_name, column_type, is_nullable, column_default,"
    " character_set_name, collation_name, column_comment, extra, generation_expression"
    " FROM information_schema.columns WHERE table_schema = %(s)s"
    " ORDER BY table_name, ordinal_position"
)
_MY_INDEXES: Final = (
    "SELECT table_name, index_name, non_unique, column_name, sub_part, index_type, collation,"
    " index_comment FROM information_schema.statistics WHERE table_schema = %(s)s"
    " ORDER BY table_name, index_name, seq_in_index"
)
_MY_FOREIGN_KEYS: Final = (
    "SELECT k.table_name, k.constraint_name, k.column_name, k.referenced_table_schema,"
    " k.referenced_table_name, k.referenced_column_name, r.update_rule, r.delete_rule"
    " FROM information_schema.key_column_usage k"
    " JOIN information_schema.referential_constraints r"
    " ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name"
    " AND r.table_name = k.table_name"
    " WHERE k.table_schema = %(s)s AND k.referenced_table_name IS NOT NULL"
    " ORDER BY k.table_name, k.constraint_name, k.ordinal_position"
)
# MariaDB names checks per table (check_constraints has table_name); MySQL per schema.
_MY_CHECKS: Final = (
    "SELECT tc.table_name, tc.constraint_name, cc.check_clause"
    " FROM information_schema.table_constraints tc"
    " JOIN information_schema.check_constraints cc"
    " ON cc.constraint_schema = tc.constraint_schema AND cc.constraint_name = tc.constraint_name"
    "{mariadb}"
    " WHERE tc.table_schema = %(s)s AND tc.constraint_type = 'CHECK'"
)
_MY_VIEWS: Final = (
    "SELECT table_name, view_definition, check_option, security_type"
    " FROM information_schema.views WHERE table_schema = %(s)s"
)
_MY_TRIGGERS: Final = (
    "SELECT trigger_name, event_object_table, event_manipulation, action_timing, action_order,"
    " action_statement, sql_mode FROM information_schema.triggers WHERE trigger_schema = %(s)s"
)
_MY_ROUTINES: Final = (
    "SELECT routine_type, routine_name, dtd_identifier, routine_definition, is_deterministic,"
    " sql_data_access, security_type, routine_comment, sql_mode"
    " FROM information_schema.routines WHERE routine_schema = %(s)s"
)
_MY_PARAMETERS: Final = (
    "SELECT routine_type, specific_name, parameter_mode, parameter_name, dtd_identifier"
    " FROM information_schema.parameters WHERE specific_schema = %(s)s AND ordinal_position > 0"
    " ORDER BY specific_name, ordinal_position"
)

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
    "SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisunique, x.indisprimary"
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

# --------------------------------------------------------------------------- SQLite

_SQLITE_MASTER: Final = (
    "SELECT type, name, tbl_name, sql FROM {schema}sqlite_master"
    " WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
_SQLITE_COLUMNS: Final = (
    'SELECT m.name, p.name, p.type, p."notnull", p.dflt_value, p.pk, p.hidden'
    " FROM {schema}sqlite_master m JOIN pragma_table_xinfo(m.name, {name}) p"
    " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY m.name, p.cid"
)
_SQLITE_INDEXES: Final = (
    'SELECT m.name, l.name, l."unique", l.origin, l.partial, i.name, i."desc", i.coll'
    " FROM {schema}sqlite_master m JOIN pragma_index_list(m.name, {name}) l"
    " JOIN pragma_index_xinfo(l.name, {name}) i"
    " WHERE m.type = 'table' AND i.key = 1 ORDER BY m.name, l.name, i.seqno"
)
_SQLITE_FOREIGN_KEYS: Final = (
    'SELECT m.name, f.id, f."table", f."from", f."to", f.on_update, f.on_delete, f.match'
    " FROM {schema}sqlite_master m JOIN pragma_foreign_key_list(m.name, {name}) f"
    " WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq"
)


def read_fingerprint(
    connection: sa.Connection, schema: str | None = None, *, exclude: Exclude = ()
) -> Fingerprint:
    """The fingerprint of *schema* (default: the connection's current database or schema).

    Args:
        connection: an open connection (MySQL/MariaDB, PostgreSQL or SQLite).
        schema: the MySQL database, PostgreSQL schema or attached SQLite database to read.
        exclude: table names to leave out (or a predicate on the name): typically
            lupo_migrate's own tables when they live in the same schema.

    Raises:
        StorageError: the catalog could not be read (the reason and the schema are named).
        InvalidArgumentError: an unsupported database.
    """
    skip = exclude if callable(exclude) else frozenset(exclude).__contains__
    family = _family(connection)
    reader = {"mysql": _read_mysql, "postgresql": _read_postgresql, "sqlite": _read_sqlite}
    try:
        objects = reader[family](connection, schema)
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).split("\n")[0]
        raise StorageError(
            f"cannot read the schema {schema or '(current)'} for its fingerprint: {reason}"
        ) from exc
    kept = {
        key: value
        for key, value in objects.items()
        if not (key.startswith("table:") and skip(key[6:]))
        and not (key.startswith("trigger:") and skip(value.get("table", "")))
    }
    return Fingerprint(dialect=family, objects=kept)


def _family(connection: sa.Connection) -> str:
    name = connection.dialect.name
    family = {"mariadb": "mysql"}.get(name, name)
    if family not in ("mysql", "postgresql", "sqlite"):
        raise InvalidArgumentError(
            f"schema fingerprints support MySQL/MariaDB, PostgreSQL and SQLite, not {name}."
        )
    return family


def _rows(connection: sa.Connection, sql: str, params: Mapping[str, Any]) -> _Rows:
    return [tuple(row) for row in connection.exec_driver_sql(sql, dict(params)).all()]


def _str(value: Any) -> Any:
    """Text as text (some servers return bytes for catalog columns)."""
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def _tables_dict(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"columns": [], "indexes": [], "foreign_keys": [], "checks": []} for name in names
    }


def _sorted_parts(tables: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects keyed ``table:<name>``; named parts (all but columns) sorted by name."""
    out = {}
    for name, table in tables.items():
        for part in ("indexes", "foreign_keys", "checks"):
            table[part] = sorted(table[part], key=lambda p: str(p["name"]))
        out[f"table:{name}"] = table
    return out


# --------------------------------------------------------------------------- MySQL / MariaDB


def _read_mysql(connection: sa.Connection, schema: str | None) -> dict[str, dict[str, Any]]:
    if schema is None:
        schema = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        if schema is None:
            raise InvalidArgumentError("no database selected: name the schema to fingerprint.")
    p = {"s": schema}
    tables_rows = [tuple(map(_str, r)) for r in _rows(connection, _MY_TABLES, p)]
    names = [r[0] for r in tables_rows if r[1] != "VIEW"]
    tables = _tables_dict(names)
    for name, _type, engine, collation, comment, options in tables_rows:
        if name in tables:
            tables[name]["options"] = {
                "engine": engine,
                "collation": collation,
                "comment": comment,
                "create_options": options,
            }
    for row in _rows(connection, _MY_COLUMNS, p):
        name, column, ctype, nullable, default, charset, collation, comment, extra, gen = map(
            _str, row
        )
        if name in tables:
            tables[name]["columns"].append(
                {
                    "name": column,
                    "type": ctype,
                    "nullable": nullable == "YES",
                    "default": default,
                    "charset": charset,
                    "collation": collation,
                    "comment": comment,
                    "extra": extra,
                    "generated": gen or None,
                }
            )
    indexes: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(connection, _MY_INDEXES, p):
        name, index, non_unique, column, sub_part, itype, collation, comment = map(_str, row)
        if name not in tables:
            continue
        entry = indexes.get((name, index))
        if entry is None:
            entry = indexes[(name, index)] = {
                "name": index,
                "unique": not int(non_unique),
                "type": itype,
                "comment": comment,
                "columns": [],
            }
            tables[name]["indexes"].append(entry)
        entry["columns"].append([column, sub_part, collation])
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(connection, _MY_FOREIGN_KEYS, p):
        name, constraint, column, ref_schema, ref_table, ref_column, on_update, on_delete = map(
            _str, row
        )
        if name not in tables:
            continue
        entry = keys.get((name, constraint))
        if entry is None:
            entry = keys[(name, constraint)] = {
                "name": constraint,
                "columns": [],
                "references": [None if ref_schema == schema else ref_schema, ref_table],
                "referenced_columns": [],
                "on_update": on_update,
                "on_delete": on_delete,
            }
            tables[name]["foreign_keys"].append(entry)
        entry["columns"].append(column)
        entry["referenced_columns"].append(ref_column)
    mariadb = " AND cc.table_name = tc.table_name" if _is_mariadb(connection) else ""
    for row in _rows(connection, _MY_CHECKS.format(mariadb=mariadb), p):
        name, constraint, clause = map(_str, row)
        if name in tables:
            tables[name]["checks"].append({"name": constraint, "clause": clause})
    objects = _sorted_parts(tables)
    for row in _rows(connection, _MY_VIEWS, p):
        name, definition, check_option, security = map(_str, row)
        objects[f"view:{name}"] = {
            "definition": definition,
            "check_option": check_option,
            "security": security,
        }
    for row in _rows(connection, _MY_TRIGGERS, p):
        name, table, event, timing, order, statement, sql_mode = map(_str, row)
        objects[f"trigger:{name}"] = {
            "table": table,
            "event": event,
            "timing": timing,
            "order": int(order),
            "statement": statement,
            "sql_mode": sql_mode,
        }
    parameters: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for row in _rows(connection, _MY_PARAMETERS, p):
        rtype, name, mode, pname, dtd = map(_str, row)
        parameters[(rtype, name)].append([mode, pname, dtd])
    for row in _rows(connection, _MY_ROUTINES, p):
        rtype, name, returns, body, deterministic, access, security, comment, sql_mode = map(
            _str, row
        )
        objects[f"routine:{rtype.lower()}:{name}"] = {
            "parameters": parameters.get((rtype, name), []),
            "returns": returns,
            "body": body,
            "deterministic": deterministic,
            "data_access": access,
            "security": security,
            "comment": comment,
            "sql_mode": sql_mode,
        }
    return objects


def _is_mariadb(connection: sa.Connection) -> bool:
    return bool(getattr(connection.dialect, "is_mariadb", False))


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
    for name, index, definition, unique, primary in _rows(connection, _PG_INDEXES, p):
        if name in tables:
            tables[name]["indexes"].append(
                {
                    "name": index,
                    "unique": bool(unique),
                    "primary": bool(primary),
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


# --------------------------------------------------------------------------- SQLite


def _read_sqlite(connection: sa.Connection, schema: str | None) -> dict[str, dict[str, Any]]:
    prefix = "" if schema is None else f"{_quote(connection, schema)}."
    name_arg = "'main'" if schema is None else _literal(schema)
    fmt = {"schema": prefix, "name": name_arg}
    master = _rows(connection, _SQLITE_MASTER.format(**fmt), {})
    tables = _tables_dict(name for kind, name, _, _ in master if kind == "table")
    for kind, name, _, sql in master:
        if kind == "table":
            tables[name]["options"] = {"without_rowid": _without_rowid(sql or "")}
            tables[name]["checks"] = _sqlite_checks(sql or "")
    for name, column, ctype, notnull, default, pk, hidden in _rows(
        connection, _SQLITE_COLUMNS.format(**fmt), {}
    ):
        if name in tables:
            tables[name]["columns"].append(
                {
                    "name": column,
                    "type": ctype,
                    "nullable": not notnull and not pk,
                    "default": default,
                    "primary_key": int(pk),
                    "hidden": int(hidden),
                }
            )
    indexes: dict[tuple[str, str], dict[str, Any]] = {}
    for name, index, unique, origin, partial, column, desc, collation in _rows(
        connection, _SQLITE_INDEXES.format(**fmt), {}
    ):
        if name not in tables:
            continue
        entry = indexes.get((name, index))
        if entry is None:
            # Automatic indexes (sqlite_autoindex_t_1) are named after their order of creation:
            # describe them by what they index instead.
            shown = index if origin == "c" else f"({origin})"
            entry = indexes[(name, index)] = {
                "name": shown,
                "unique": bool(unique),
                "origin": origin,
                "partial": bool(partial),
                "columns": [],
            }
            tables[name]["indexes"].append(entry)
        entry["columns"].append([column, bool(desc), collation])
    for entry in indexes.values():
        if entry["origin"] != "c":
            entry["name"] = f"{entry['name']}{entry['columns']}"
    keys: dict[tuple[str, int], dict[str, Any]] = {}
    for name, fk_id, ref_table, column, ref_column, on_update, on_delete, match in _rows(
        connection, _SQLITE_FOREIGN_KEYS.format(**fmt), {}
    ):
        if name not in tables:
            continue
        entry = keys.get((name, fk_id))
        if entry is None:
            entry = keys[(name, fk_id)] = {
                "name": "",
                "references": ref_table,
                "columns": [],
                "referenced_columns": [],
                "on_update": on_update,
                "on_delete": on_delete,
                "match": match,
            }
            tables[name]["foreign_keys"].append(entry)
        entry["columns"].append(column)
        entry["referenced_columns"].append(ref_column)
    for entry in keys.values():  # SQLite's key ids change with order: name them by content
        entry["name"] = f"{entry['columns']}->{entry['references']}{entry['referenced_columns']}"
    objects = _sorted_parts(tables)
    for kind, name, table, sql in master:
        if kind == "view":
            objects[f"view:{name}"] = {"definition": _squeeze(sql)}
        elif kind == "trigger":
            objects[f"trigger:{name}"] = {"table": table, "definition": _squeeze(sql)}
    return objects


def _quote(connection: sa.Connection, name: str) -> str:
    return str(connection.dialect.identifier_preparer.quote(name))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _squeeze(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())


_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*(?:,\s*STRICT\s*)?;?\s*\Z", re.I)
_CHECK = re.compile(r"(?:\bCONSTRAINT\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)\s+)?\bCHECK\s*\(", re.I)


def _without_rowid(sql: str) -> bool:
    return bool(_WITHOUT_ROWID.search(sql))


def _sqlite_checks(sql: str) -> list[dict[str, Any]]:
    """CHECK constraints of a SQLite CREATE TABLE text (SQLite has no catalog for them).

    Unnamed checks are named by their clause, so that adding a column does not rename them.
    """
    checks = []
    masked = _mask_quoted(sql)
    for match in _CHECK.finditer(masked):
        start = match.end() - 1
        depth = 0
        for end in range(start, len(masked)):
            depth += {"(": 1, ")": -1}.get(masked[end], 0)
            if depth == 0:
                break
        clause = " ".join(sql[start + 1 : end].split())
        checks.append({"name": match.group(1) or f"check({clause})", "clause": clause})
    return checks


def _mask_quoted(sql: str) -> str:
    """*sql* with the inside of quoted strings and identifiers blanked (same length)."""
    out = list(sql)
    quote = None
    for i, char in enumerate(sql):
        if quote is None:
            if char in "'\"`[":
                quote = "]" if char == "[" else char
        elif char == quote:
            quote = None
        else:
            out[i] = " "
    return "".join(out)


# --------------------------------------------------------------------------- table data


def table_data(
    connection: sa.Connection, tables: Iterable[str], schema: str | None = None
) -> dict[str, TableData]:
    """Row count and order-independent checksum of each of *tables*.

    The checksum is the sum of a 60-bit hash (the first 15 hex digits of MD5) of each row's
    values as text, so equal multisets of rows give equal checksums; it is computed by the
    server on MySQL/MariaDB and PostgreSQL, by Python on SQLite. Checksums compare within one
    database family only.

    Raises:
        StorageError: a table cannot be read (its name and the reason are given).
    """
    family = _family(connection)
    result = {}
    for name in tables:
        try:
            if family == "sqlite":
                result[name] = _sqlite_data(connection, name, schema)
            else:
                sql = (_mysql_data if family == "mysql" else _pg_data)(connection, name, schema)
                rows, total = connection.exec_driver_sql(sql).one()
                result[name] = TableData(rows=int(rows), checksum=str(int(total)))
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).split("\n")[0]
            raise StorageError(f"cannot checksum table {name}: {reason}") from exc
    return result


def _qualified(connection: sa.Connection, name: str, schema: str | None) -> str:
    table = _quote(connection, name)
    return table if schema is None else f"{_quote(connection, schema)}.{table}"


def _mysql_data(connection: sa.Connection, name: str, schema: str | None) -> str:
    where = "table_schema = DATABASE()" if schema is None else f"table_schema = {_literal(schema)}"
    columns = connection.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns"
        f" WHERE {where} AND table_name = %(t)s ORDER BY ordinal_position",
        {"t": name},
    ).scalars()
    parts = [f"IFNULL(HEX(CAST({_quote(connection, _str(c))} AS BINARY)), '-')" for c in columns]
    row = f"CONCAT_WS('#', {', '.join(parts)})" if parts else "''"
    return (
        f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)), 0)"
        f" FROM {_qualified(connection, name, schema)}"
    )


def _pg_data(connection: sa.Connection, name: str, schema: str | None) -> str:
    return (
        "SELECT COUNT(*), COALESCE(SUM(('x' || LEFT(MD5(t::text), 15))::bit(60)::bigint), 0)"
        f" FROM {_qualified(connection, name, schema)} AS t"
    )


def _sqlite_data(connection: sa.Connection, name: str, schema: str | None) -> TableData:
    rows = 0
    total = 0
    result = connection.exec_driver_sql(f"SELECT * FROM {_qualified(connection, name, schema)}")
    for row in result:
        text = "#".join("-" if v is None else f"{type(v).__name__}:{v!r}" for v in row)
        total += int(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:15], 16)
        rows += 1
    return TableData(rows=rows, checksum=str(total))
