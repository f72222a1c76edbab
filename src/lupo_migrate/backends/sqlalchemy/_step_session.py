"""The step connection of :class:`~lupo_migrate.backends.sqlalchemy.target.SqlAlchemyTarget`.

:class:`StepSessions` holds how the target gives each step its connection: :meth:`step_session`,
the connection and transaction consecutive MySQL/MariaDB steps share (``core.chain``), the PyMySQL
pipeline on it (``_pipeline``), undoing a failed step's writes, :meth:`flush`, the statement
lock that connection holds while a run's statements run, and :meth:`execute`.

Apart from ``target.py`` so that module stays readable in one sitting: this is the stateful
plumbing of one connection, while the target module says what a target is and what it reads.
The class is a mixin of ``SqlAlchemyTarget`` only, with no state of its own: the attributes it
uses are the target's fields, declared here for the type checker.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lupo_migrate.backends.sqlalchemy import _pipeline
from lupo_migrate.backends.sqlalchemy._concurrent_index import create_concurrently
from lupo_migrate.backends.sqlalchemy._driver import raw
from lupo_migrate.backends.sqlalchemy.lock import mysql_lock_name
from lupo_migrate.core.errors import StillRunningError, StorageError
from lupo_migrate.sql.apart import concurrent_index_table
from lupo_migrate.sql.session_state import changes_session

__all__ = ["StepSessions", "session_id"]


class StepSessions:
    """The step connection of a ``SqlAlchemyTarget``, its pipeline and its statement lock."""

    if not TYPE_CHECKING:
        # No slots of its own, so the target (a slotted attrs class) keeps no __dict__;
        # hidden from mypy, which would hold the fields assigned below to this empty tuple.
        __slots__ = ()

    # The target's fields and properties (see SqlAlchemyTarget).
    engine: Engine
    statement_lock: str | None
    _chain: tuple[Connection, Any] | None
    _stale: bool
    _leftovers: dict[str, set[str]]

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

        @property
        def transactional_ddl(self) -> bool: ...

    @contextmanager
    def step_session(self) -> Iterator[Connection]:
        """A connection in a transaction for one step (short lock wait set per connection),
        whose session is as the engine's client would start a file's: see *Fresh sessions*.

        PostgreSQL and SQLite: a fresh transaction per step, committed when the block ends.

        MySQL/MariaDB, where DDL commits at once anyway: consecutive steps share one
        connection and a step only sets a savepoint. What a step writes through the
        connection (its DML, and the journal, ledger and run state when the storage is bound
        to it) stays pending until the next statement's implicit commit or :meth:`flush`: so
        a step costs the commits its DDL makes, no more. Pending writes are always committed
        before anything runs that cannot be undone (DDL commits them first), and DML commits
        atomically with them. If the block raises, the step's own writes are rolled back
        (to the savepoint, or the whole transaction when a DDL already committed what came
        before) and the earlier steps' writes are committed.

        With PyMySQL the savepoint, the journal marks and the ledger row are held back in the
        connection's pipeline and travel with the step's statements (see ``_pipeline``).

        *Fresh sessions.* ``mariadb db < file.sql``, ``psql -f file.sql`` and
        ``sqlite3 db < file.sql`` each start a file in a new session, and what a file
        leaves there (a setting, a user variable, a temporary table...) never reaches the
        next. So here:

        - what a session remembers of every statement is reset at each step's start: MySQL's
          ``LAST_INSERT_ID()`` and ``ROW_COUNT()`` (0, as in a new session) by the two
          statements sent with the step's first one (see ``_STEP_START``); PostgreSQL's
          ``lastval()`` and ``currval()`` by ``DISCARD SEQUENCES`` (undefined again);
        - a step whose statements may change their session in any other way (see
          ``sql.session_state``) ends it: on MySQL the shared connection is committed
          and closed after the step, on PostgreSQL the step's connection is closed instead
          of going back to the pool; the next step opens a new one;
        - SQLite gives every step a new connection (``last_insert_rowid()``, ``changes()``
          and ``total_changes()`` cannot be reset otherwise), except an in-memory database,
          which lives only as long as its one connection.
        """
        if self.transactional_ddl:
            with self.engine.connect() as connection:
                try:
                    with connection.begin():
                        if self.engine.dialect.name == "postgresql":
                            self._raw(connection, "DISCARD SEQUENCES")
                        yield connection
                finally:
                    if self._stale or self._sqlite_file():
                        connection.invalidate()  # its session is never handed out again
                    self._stale = False
            return
        if self._chain is None:
            connection = self.engine.connect()
            self._chain = (connection, connection.begin())
            self._take_statement_lock(connection)
            if _pipeline.supports_pipelining(connection):
                _pipeline.attach(connection)
        connection, _transaction = self._chain
        pipeline = _pipeline.pipeline_of(connection)
        if pipeline is not None:
            # Sent with the step's first statement, after what the previous step held back
            # (which a rollback to the savepoint leaves alone).
            for sql in _STEP_START:
                pipeline.defer(sql, tag="savepoint", urgent=True)
        else:
            for sql in _STEP_START:
                self._raw(connection, sql)
        try:
            yield connection
        except BaseException:
            self._undo_step(connection)
            raise
        if self._stale:
            self.flush()  # its session ends with it: the next step starts a new one

    @contextmanager
    def apart_session(self) -> Iterator[Connection]:
        """A connection for a step that runs apart (PostgreSQL statements that cannot run
        in a transaction block, see ``sql.apart``): in autocommit, so each statement,
        and each journal row written through it, commits on its own, as MySQL's DDL does.
        Its session starts as a step's (``DISCARD SEQUENCES``) and is never handed out again.

        Raises:
            StorageError: the target is not PostgreSQL (no other database needs it).
        """
        if self.engine.dialect.name != "postgresql":
            raise StorageError(
                f"a step that runs apart needs PostgreSQL, not {self.engine.dialect.name}"
            )
        with self.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                self._raw(connection, "DISCARD SEQUENCES")
                yield connection
            finally:
                connection.invalidate()  # a file's SET stays in it: never handed out again
                self._stale = False

    def _sqlite_file(self) -> bool:
        """Whether the target is a SQLite database in a file (a connection of its own per
        step costs little there; an in-memory database would be lost with its connection)."""
        database = self.engine.url.database
        return self.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")

    def discard(self) -> None:
        """Forget the shared step connection after it dropped: nothing of it is committed
        (the server rolled back what was pending), and it is never used again."""
        chain, self._chain = self._chain, None
        self._stale = False  # the session is gone with the connection
        if chain is not None:
            with contextlib.suppress(Exception):
                _pipeline.detach(chain[0])
            with contextlib.suppress(Exception):
                chain[0].invalidate()
            with contextlib.suppress(Exception):
                chain[0].close()

    def _undo_step(self, connection: Connection) -> None:
        """Roll the failed step's writes back, keep the earlier steps' ones, commit those."""
        if connection.invalidated or connection.closed:
            self.discard()  # it dropped: the server rolled back what was pending
            return
        pipeline = _pipeline.pipeline_of(connection)
        if pipeline is not None and "savepoint" in pipeline.discard(since="savepoint"):
            self.flush()  # nothing of the step reached the server; what came before goes
            return
        try:
            self._raw(connection, "ROLLBACK TO SAVEPOINT lupo_step")
        except Exception:  # a DDL committed the savepoint away: only this step is pending
            try:
                if self._chain is not None:
                    self._chain[1].rollback()
            except Exception:  # the connection dropped
                self.discard()
                return
            self._close_chain()
        self.flush()

    def flush(self) -> None:
        """Commit what consecutive steps left pending and release their connection."""
        if self._chain is None:
            return
        try:
            pipeline = _pipeline.pipeline_of(self._chain[0])
            if pipeline is not None:
                pipeline.send()
            self._chain[1].commit()
        finally:
            self._close_chain()

    def _close_chain(self) -> None:
        chain, self._chain = self._chain, None
        stale, self._stale = self._stale, False
        if chain is not None:
            _pipeline.detach(chain[0])
            if self._statements_locked():
                with contextlib.suppress(Exception):  # a broken session let go of it anyway
                    self._raw(chain[0], f"DO RELEASE_LOCK({_literal(self.statement_lock)})")
            if stale:  # what a step left in its session goes with it
                with contextlib.suppress(Exception):
                    chain[0].invalidate()
            chain[0].close()

    def adopt_statement_lock(self, base: str) -> None:
        """Name the statement lock after *base* (the run lock's name) unless one was given:
        the orchestrator calls this, so a target built directly (an embedding host) gets the
        same protection as the command line's (see ``statement_lock``)."""
        if self.statement_lock is None:
            self.statement_lock = mysql_lock_name(f"{base}:statements")

    def _statements_locked(self) -> bool:
        return self.statement_lock is not None and self.dialect in ("mysql", "mariadb")

    def _take_statement_lock(self, connection: Connection) -> None:
        """Hold the statement lock on the step connection (see ``statement_lock``)."""
        if not self._statements_locked():
            return
        name = _literal(self.statement_lock)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"SELECT GET_LOCK({name}, 0), IS_USED_LOCK({name})")
            got, holder = cursor.fetchone() or (0, None)
        finally:
            cursor.close()
        if not got:  # a dead run's statement still runs (recovery waits for it first)
            self._chain = None
            connection.close()
            raise StillRunningError(int(holder or 0), *self._running(int(holder or 0)), 0.0)

    def dead_statement(self) -> int | None:
        """The session of a run whose process or connection died that still runs one of its
        statements (it holds the statement lock), or None."""
        if not self._statements_locked():
            return None
        own = session_id(self._chain[0]) if self._chain is not None else None
        with self.engine.connect() as conn:
            holder = conn.exec_driver_sql(
                f"SELECT IS_USED_LOCK({_literal(self.statement_lock)})"
            ).scalar()
        return None if holder is None or int(holder) == own else int(holder)

    def await_dead_statements(self, timeout: float) -> float:
        """Wait, up to *timeout* seconds, until no statement of a dead run runs any more;
        returns the seconds waited.

        Raises:
            StillRunningError: one still runs after *timeout* (its session, its statement).
        """
        began = time.monotonic()
        while (session := self.dead_statement()) is not None:
            waited = time.monotonic() - began
            if waited >= timeout:
                raise StillRunningError(session, *self._running(session), waited)
            time.sleep(min(0.2, timeout - waited))
        return time.monotonic() - began

    def _running(self, session: int) -> tuple[str | None, float | None]:
        """What *session* runs, and for how long (None, None when the server does not say)."""
        with contextlib.suppress(sa.exc.DBAPIError), self.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT INFO, TIME FROM information_schema.PROCESSLIST WHERE ID = %s",
                (session,),
            ).first()
            if row is not None:
                return (None if row[0] is None else str(row[0])), float(row[1])
        return None, None

    @staticmethod
    def _raw(connection: Connection, sql: str) -> None:
        raw(connection, sql)

    def execute(self, connection: Connection, statement: str) -> None:
        """Send one statement exactly as written.

        Through the driver's own cursor with no parameters: ``exec_driver_sql`` would still
        %-format the text on PyMySQL and psycopg2, breaking ``DATE_FORMAT(x, '%Y')``.
        """
        family = _FAMILY.get(self.dialect)
        if family is not None and not self._stale and changes_session(statement, family):
            self._stale = True
        if family == "postgresql" and (table := concurrent_index_table(statement)) is not None:
            send = functools.partial(self._raw, connection)
            create_concurrently(connection, statement, table, send, self._leftovers)
            return
        pipeline = _pipeline.pipeline_of(connection)
        if pipeline is not None:
            pipeline.run(statement)  # with the writes that must run before it, in one packet
            return
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    @contextmanager
    def _reader(self, connection: Connection | None) -> Iterator[Connection]:
        """Where a check after a step reads: the step's own connection, which sees its
        uncommitted writes (on MySQL the writes held for its next packet are sent first);
        without one, a connection of its own."""
        if connection is not None:
            pipeline = _pipeline.pipeline_of(connection)
            if pipeline is not None:
                pipeline.send()
            yield connection
        else:
            with self.engine.connect() as own:
                yield own


#: Sent before a MySQL step's first statement: ``LAST_INSERT_ID()`` back to the 0 of a new
#: session, then the step's savepoint (after which ``ROW_COUNT()`` reads 0, as in a new
#: session). ``FOUND_ROWS()`` has no value of its own in a new session (the server's
#: reused thread keeps the last one it had), so it is left alone.
_STEP_START: Final = ("DO LAST_INSERT_ID(0)", "SAVEPOINT lupo_step")
_FAMILY: Final = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}


def _literal(text: str | None) -> str:
    """*text* as a MySQL string literal (lock names: lupo_migrate's own)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "''") + "'"


def session_id(connection: Connection | None) -> int | None:
    """The server's id of *connection*'s session (MySQL thread id, PostgreSQL backend pid),
    read from the driver without a query; None when it cannot be told."""
    if connection is None:
        return None
    try:
        raw: Any = connection.connection.dbapi_connection
        if hasattr(raw, "thread_id"):  # PyMySQL, mysqlclient
            return int(raw.thread_id())
        info = getattr(raw, "info", None)  # psycopg2
        return int(info.backend_pid) if info is not None else None
    except Exception:  # a closed connection: nothing of its own to leave out
        return None
