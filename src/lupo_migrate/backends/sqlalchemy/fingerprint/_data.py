"""Row counts and checksums of tables: :func:`table_data`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy.fingerprint._helpers import _family, _literal, _quote, _str
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.fingerprint import TableData

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
    # Columns by name, not by position: a column a rollback put back (PostgreSQL adds it
    # last) leaves the rows' checksum as it was.
    where = "table_schema = current_schema()" if schema is None else "table_schema = %(s)s"
    columns = sorted(
        _str(c)
        for c in connection.exec_driver_sql(
            f"SELECT column_name FROM information_schema.columns WHERE {where}"
            " AND table_name = %(t)s",
            {"t": name, "s": schema},
        ).scalars()
    )
    row = (
        f"ROW({', '.join('t.' + _quote(connection, c) for c in columns)})::text"
        if columns
        else "''"
    )
    return (
        f"SELECT COUNT(*), COALESCE(SUM(('x' || LEFT(MD5({row}), 15))::bit(60)::bigint), 0)"
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
