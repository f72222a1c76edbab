"""The SQLite catalog reader (``sqlite_master`` and the table pragmas)."""

from __future__ import annotations

import re
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy.fingerprint._helpers import (
    _literal,
    _quote,
    _rows,
    _sorted_parts,
    _squeeze,
    _tables_dict,
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
