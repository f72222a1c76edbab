"""The writes a run makes for every statement and step, compiled once and sent on the raw cursor.

While the storage is bound to a step's connection, the journal intent and done marks, the
ledger row and the run's next state are written several thousand times in a long run; going
through SQLAlchemy Core's statement construction for each costs more than the database does.
These are the same statements, compiled once per storage and executed with the driver's own
cursor. Only for drivers with the ``pyformat`` parameter style (PyMySQL, psycopg2); others use
the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._tables import OrchestrationTables

__all__ = ["HotPath"]


class HotPath:
    """Precompiled hot statements for one storage (one dialect, one set of tables).

    Statements are named; each is built (``build()``) and compiled on first use only, so the
    hot path never touches SQLAlchemy's statement construction again.
    """

    def __init__(self, engine: sa.Engine, tables: OrchestrationTables) -> None:
        dialect = engine.dialect
        self.usable = dialect.paramstyle == "pyformat" and dialect.name in ("mysql", "postgresql")
        self._returning = dialect.name == "postgresql"
        self._dialect = dialect
        self._tables = tables
        self._sql: dict[str, str] = {}

    def sql(self, name: str, build: Callable[[], Any]) -> str:
        """The compiled text of statement *name* (``build()`` makes it on first use)."""
        sql = self._sql.get(name)
        if sql is None:
            sql = str(build().compile(dialect=self._dialect))
            self._sql[name] = sql
        return sql

    @staticmethod
    def _cursor(connection: sa.Connection) -> Any:
        return connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _run(self, connection: sa.Connection, sql: str, params: Mapping[str, Any]) -> Any:
        cursor = self._cursor(connection)
        cursor.execute(sql, dict(params))
        return cursor

    def intent_sql(self, names: Sequence[str]) -> str:
        """The journal intent insert for a row with these columns."""
        t = self._tables.progress

        def build() -> Any:
            statement = t.insert().values({n: sa.bindparam(f"v_{n}") for n in names})
            return statement.returning(t.c.id) if self._returning else statement

        return self.sql("intent:" + ",".join(names), build)

    def done_sql(self) -> str:
        """The journal done update (``entry_id``, ``at``)."""
        t = self._tables.progress
        return self.sql(
            "done",
            lambda: (
                t.update()
                .where(t.c.id == sa.bindparam("entry_id"))
                .values(done_at=sa.bindparam("at"))
            ),
        )

    def journal_intent(self, connection: sa.Connection, row: Mapping[str, Any]) -> int:
        """Insert a journal row; its id (the one *row* names, else the new one)."""
        params = {f"v_{n}": v for n, v in row.items()}
        cursor = self._run(connection, self.intent_sql(list(row)), params)
        try:
            if "id" in row:
                return int(row["id"])
            return int(cursor.fetchone()[0] if self._returning else cursor.lastrowid)
        finally:
            cursor.close()

    def journal_done(self, connection: sa.Connection, entry_id: int, at: int) -> int:
        """Mark a journal row done; the number of rows matched."""
        cursor = self._run(connection, self.done_sql(), {"entry_id": entry_id, "at": at})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute(
        self,
        connection: sa.Connection,
        name: str,
        build: Callable[[], Any],
        params: Mapping[str, Any],
    ) -> int:
        """Run statement *name* (bind parameters named as in *params*); rows matched."""
        cursor = self._run(connection, self.sql(name, build), params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()
