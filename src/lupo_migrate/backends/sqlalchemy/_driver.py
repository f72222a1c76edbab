"""Statements sent through the driver's own cursor, exactly as written.

``Connection.exec_driver_sql`` would still %-format the text on PyMySQL and psycopg2 (breaking
``DATE_FORMAT(x, '%Y')``) and goes through SQLAlchemy's result machinery; migration statements
and lupo_migrate's own catalog looks on a step's connection go through here instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

__all__ = ["raw"]


def raw(connection: Connection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Send *sql* (with *params*, driver style, when given) on *connection*'s driver cursor;
    the rows it returns (none for a statement without a result)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()
