"""The writes a run makes for every statement and step, compiled once and sent on the raw cursor.

While the storage is bound to a step's connection, the journal intent and done marks, the
ledger row and the run's next state are written several thousand times in a long run; going
through SQLAlchemy Core's statement construction for each costs more than the database does.
These are the same statements, compiled once per storage and executed with the driver's own
cursor. Only for drivers with the ``pyformat`` parameter style (PyMySQL, psycopg2); others use
the ordinary path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from lupo_migrate.ext.sqlalchemy._tables import OrchestrationTables

__all__ = ["HotPath"]


class HotPath:
    """Precompiled hot statements for one storage (one dialect, one set of tables)."""

    def __init__(self, engine: sa.Engine, tables: OrchestrationTables) -> None:
        dialect = engine.dialect
        self.usable = dialect.paramstyle == "pyformat" and dialect.name in ("mysql", "postgresql")
        self._returning = dialect.name == "postgresql"
        self._dialect = dialect
        self._tables = tables
        self._sql: dict[str, str] = {}

    def _compiled(self, name: str, statement: Any) -> str:
        sql = self._sql.get(name)
        if sql is None:
            sql = str(statement.compile(dialect=self._dialect))
            self._sql[name] = sql
        return sql

    @staticmethod
    def _cursor(connection: sa.Connection) -> Any:
        return connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _run(self, connection: sa.Connection, sql: str, params: Mapping[str, Any]) -> Any:
        cursor = self._cursor(connection)
        cursor.execute(sql, dict(params))
        return cursor

    def journal_intent(self, connection: sa.Connection, row: Mapping[str, Any]) -> int:
        """Insert a journal row; its new id."""
        t = self._tables.progress
        names = list(row)
        statement = t.insert().values({n: sa.bindparam(f"v_{n}") for n in names})
        if self._returning:
            statement = statement.returning(t.c.id)
        params = {f"v_{n}": v for n, v in row.items()}
        cursor = self._run(
            connection, self._compiled("intent:" + ",".join(names), statement), params
        )
        try:
            return int(cursor.fetchone()[0] if self._returning else cursor.lastrowid)
        finally:
            cursor.close()

    def journal_done(self, connection: sa.Connection, entry_id: int, at: int) -> int:
        """Mark a journal row done; the number of rows matched."""
        t = self._tables.progress
        statement = (
            t.update().where(t.c.id == sa.bindparam("entry_id")).values(done_at=sa.bindparam("at"))
        )
        cursor = self._run(
            connection, self._compiled("done", statement), {"entry_id": entry_id, "at": at}
        )
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute(
        self,
        connection: sa.Connection,
        name: str,
        statement: Any,
        params: Mapping[str, Any],
    ) -> int:
        """Run a statement built with bind parameters named as in *params*; rows matched."""
        cursor = self._run(connection, self._compiled(name, statement), params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()
