"""What the catalog readers share: row helpers and the parts' order."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from lupo_migrate.core.errors import InvalidArgumentError

Exclude = Callable[[str], bool] | Collection[str]


_Rows = list[tuple[Any, ...]]


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


def _quote(connection: sa.Connection, name: str) -> str:
    return str(connection.dialect.identifier_preparer.quote(name))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _squeeze(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())
