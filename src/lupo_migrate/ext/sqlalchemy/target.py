"""The SQLAlchemy target: where a run's statements execute.

One connection per step, opened with a short lock wait (MySQL/MariaDB ``lock_wait_timeout``,
PostgreSQL ``lock_timeout``) so application queries never queue for long behind a waiting
ALTER; a transaction around the step, which on PostgreSQL and SQLite makes DDL transactional
(on MySQL DDL commits at once: the journal and rollback take care of that).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import attrs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from lupo_migrate._fingerprint import Fingerprint, TableData
from lupo_migrate._quick import LOOPBACK, sibling_store
from lupo_migrate.errors import ConfigurationError, StillRunningError
from lupo_migrate.ext.sqlalchemy import _blockers, _pipeline
from lupo_migrate.ext.sqlalchemy._preimage import BACKUP_PREFIX, PreImages, drop_backups
from lupo_migrate.ext.sqlalchemy._tables import make_tables
from lupo_migrate.ext.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.ext.sqlalchemy.lock import mysql_lock_name

__all__ = ["ORCHESTRATION_TABLES", "SqlAlchemyTarget", "connect_error", "make_engine"]

#: Tables lupo_migrate keeps for itself; never counted against the core table budget.
ORCHESTRATION_TABLES: Final = frozenset(table.name for table in make_tables().all)


def make_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """An engine for *url*; on SQLite, with transactional DDL (BEGIN issued by us).

    With PyMySQL, connections accept multi-statement packets (``CLIENT.MULTI_STATEMENTS``),
    which the step pipeline uses; lupo_migrate only ever sends its own writes, escaped by the
    driver, and the migration's own statements in them.

    pysqlite does not open a transaction before DDL by itself, so a failed step would leave
    its earlier statements behind; taking over BEGIN makes a step all-or-nothing, as on
    PostgreSQL.
    """
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.driver == "pymysql":

        @event.listens_for(engine, "do_connect")
        def _multi_statements(
            _dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]
        ) -> None:
            # Multi-statement packets let a step's journal and ledger writes travel with its
            # statements (see _pipeline). SQLAlchemy's own flags (FOUND_ROWS) are kept.
            cparams["client_flag"] = int(cparams.get("client_flag", 0)) | _pipeline.MULTI_STATEMENTS
            loopback = cparams.get("unix_socket") or cparams.get("host") in LOOPBACK
            if loopback and not any(key.startswith("ssl") for key in cparams):
                cparams["ssl_disabled"] = True  # no opportunistic TLS over loopback (see LOOPBACK)

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA busy_timeout = 10000")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN")

    return engine


def connect_error(url: sa.URL, exc: BaseException) -> ConfigurationError:
    """A one-line error for a failed connection, password hidden, saying what to do."""
    shown = url.render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", None) or exc).split("\n")[0]
    lowered = reason.lower()
    if "access denied" in lowered or "password authentication failed" in lowered:
        hint = "check the user name and password in the database URL (--db or LUPO_MIGRATE_DB)"
    elif "unknown database" in lowered or ("database" in lowered and "does not exist" in lowered):
        hint = "create the database first, or correct its name in the URL"
    elif any(w in lowered for w in ("can't connect", "connection refused", "could not connect")):
        hint = "is the server running, and are host and port right?"
    elif "unable to open database file" in lowered:
        hint = "the SQLite file's directory must exist and be writable"
    else:
        hint = "check the database URL and that the server accepts connections"
    return ConfigurationError(f"cannot connect to {shown}: {reason}; {hint}")


#: The name a SQLite file target's backups database is attached under (see attach_backups).
BACKUPS_ALIAS: Final = "lupo_backups"
#: The engines attach_backups() was called with.
_BACKUPS_ATTACHED: weakref.WeakSet[Engine] = weakref.WeakSet()


def attach_backups(engine: sa.Engine) -> str | None:
    """Give a SQLite file target a database of its own for backup tables (rollback
    material): ``app.lupo-backups.db``, attached to each of *engine*'s connections as
    :data:`BACKUPS_ALIAS`. Returns that name, the ``backup_schema`` to give
    :class:`SqlAlchemyTarget`; None for another database or an in-memory one.

    Not the application's file (lupo_migrate's tables never go there), and not the file of
    the orchestration tables either: a step's transaction writes backups on the target's
    connection while the storage writes the journal on connections of its own, and SQLite
    lets one connection at a time write to a file.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    if engine in _BACKUPS_ATTACHED:  # asked again: one ATTACH per connection is all it takes
        return BACKUPS_ALIAS
    _BACKUPS_ATTACHED.add(engine)
    path = sibling_store(str(database), "lupo-backups")

    @event.listens_for(engine, "connect")
    def attach(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"ATTACH DATABASE ? AS {BACKUPS_ALIAS}", (path,))

    engine.pool.dispose()  # connections opened before get it too
    return BACKUPS_ALIAS


@attrs.define
class SqlAlchemyTarget:
    """Runs a run's statements on a SQLAlchemy engine (the ``Target`` of the orchestrator).

    Args:
        engine: the target database.
        names: federation, logical schema name to physical name.
        renames: literal schema names in SQL to rewrite.
        lock_wait_timeout: seconds a DDL statement waits for a metadata lock before failing.
        core_schema: the schema (MySQL database, PostgreSQL schema) whose tables count against
            the table budget; None for the connection's default.
        orchestration_apart: lupo_migrate's own tables live elsewhere, so every core table
            counts; otherwise its eight tables are left out of the count.
        backup_schema: where backup tables go (None: the core schema): a MySQL/MariaDB
            database, a PostgreSQL schema, the name of a database attached to SQLite's
            connections.
        backup_limit: the most rows a table may hold to be backed up before a run changes it.
        statement_lock: MySQL/MariaDB: a named lock the step connection holds while it runs
            a run's statements. A statement goes on running on the server after its client
            died, and its session (with the lock) ends only when it does: recovery waits
            for the lock before it reads the schema (see :meth:`await_dead_statements`).
            None: the :class:`~lupo_migrate.Orchestrator` given this target names it after
            its run lock.
    """

    engine: Engine
    names: Mapping[str, str] = attrs.field(factory=dict)
    renames: Mapping[str, str] = attrs.field(factory=dict)
    lock_wait_timeout: int = 5
    core_schema: str | None = None
    orchestration_apart: bool = False
    backup_schema: str | None = None
    backup_limit: int = 100_000
    statement_lock: str | None = None
    # MySQL: the connection and transaction consecutive steps share (see step_session).
    _chain: tuple[Connection, Any] | None = attrs.field(default=None, init=False, repr=False)
    # Whether the server tells which session holds which table (see holders()).
    _exact: bool | None = attrs.field(default=None, init=False, repr=False)

    @property
    def dialect(self) -> str:
        """``mariadb``, ``mysql``, ``postgresql`` or ``sqlite``."""
        if getattr(self.engine.dialect, "is_mariadb", False):
            return "mariadb"
        return self.engine.dialect.name

    @property
    def transactional_ddl(self) -> bool:
        """Whether a step's DDL rolls back with its transaction."""
        return self.engine.dialect.name in ("postgresql", "sqlite")

    @contextmanager
    def step_session(self) -> Iterator[Connection]:
        """A connection in a transaction for one step (short lock wait set per connection).

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
        """
        if self.transactional_ddl:
            with self.engine.connect() as connection, connection.begin():
                yield connection
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
            pipeline.defer("SAVEPOINT lupo_step", tag="savepoint")
        else:
            self._raw(connection, "SAVEPOINT lupo_step")
        try:
            yield connection
        except BaseException:
            self._undo_step(connection)
            raise

    def holders(
        self, tables: Sequence[str], connection: Connection | None = None
    ) -> tuple[str, ...] | None:
        """The other sessions whose transactions hold *tables* (a DDL statement on them would
        wait, and queue application queries behind it), described; never *connection*'s own
        session. None when the server cannot tell which session holds which table (MySQL and
        MariaDB without the ``metadata_lock_info`` plugin or ``performance_schema``): then
        the DDL's short lock wait is the bound (see :meth:`lock_wait_suspects`)."""
        if self.engine.dialect.name == "sqlite" or not tables:
            return ()
        if self._exact is None:
            with self.engine.connect() as conn:
                self._exact = _blockers.exact(conn)
        if not self._exact:
            return None
        with self.engine.connect() as conn:
            found = _blockers.find_blockers(conn, tables, schema=self.core_schema)
        own = _session_id(connection)
        return tuple(str(b) for b in found if b.session != own)

    def lock_wait_suspects(
        self, error: BaseException, connection: Connection | None = None
    ) -> tuple[str, ...] | None:
        """When *error* says a statement gave up waiting for a lock (MySQL 1205, PostgreSQL
        55P03): the other sessions with an open transaction, described (the holders are among
        them). None for any other error."""
        orig = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        code = getattr(orig, "pgcode", None) or (getattr(orig, "args", None) or [None])[0]
        if code not in (1205, "55P03"):
            return None
        own = _session_id(connection)
        with self.engine.connect() as conn:
            found = _blockers.open_transactions(conn)
        return tuple(str(b) for b in found if b.session != own)

    def connection_lost(self, error: BaseException) -> bool:
        """Whether *error* says the connection dropped (a statement's outcome is unknown)."""
        if isinstance(error, sa.exc.DBAPIError):
            if error.connection_invalidated:
                return True
            if error.orig is None:
                return False
            error = error.orig
        dbapi = getattr(self.engine.dialect, "loaded_dbapi", None)
        if dbapi is None or not isinstance(error, dbapi.Error):
            return False
        return bool(self.engine.dialect.is_disconnect(error, None, None))

    def discard(self) -> None:
        """Forget the shared step connection after it dropped: nothing of it is committed
        (the server rolled back what was pending), and it is never used again."""
        chain, self._chain = self._chain, None
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
        if chain is not None:
            _pipeline.detach(chain[0])
            if self._statements_locked():
                with contextlib.suppress(Exception):  # a broken session let go of it anyway
                    self._raw(chain[0], f"DO RELEASE_LOCK({_literal(self.statement_lock)})")
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
        own = _session_id(self._chain[0]) if self._chain is not None else None
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
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def __attrs_post_init__(self) -> None:
        # The short lock wait is set once per database connection, not once per step.
        name = self.engine.dialect.name
        if name == "mysql":
            setting = f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout)}"
        elif name == "postgresql":
            setting = f"SET lock_timeout = '{int(self.lock_wait_timeout)}s'"
        else:
            return

        @event.listens_for(self.engine, "connect")
        def _short_lock_wait(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(setting)
            finally:
                cursor.close()
            dbapi_connection.commit()

        self.engine.pool.dispose()  # connections opened before this get the setting too

    def execute(self, connection: Connection, statement: str) -> None:
        """Send one statement exactly as written.

        Through the driver's own cursor with no parameters: ``exec_driver_sql`` would still
        %-format the text on PyMySQL and psycopg2, breaking ``DATE_FORMAT(x, '%Y')``.
        """
        pipeline = _pipeline.pipeline_of(connection)
        if pipeline is not None:
            pipeline.send(statement)  # with the writes held back before it, in one packet
            return
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    def pre_images(self, run_id: str) -> PreImages | None:
        """The pre-image keeper of run *run_id*: restores and compares on MySQL/MariaDB and
        SQLite; on PostgreSQL it compares only (steps are undone by their downs)."""
        own = frozenset() if self.orchestration_apart else ORCHESTRATION_TABLES
        return PreImages(
            self.engine,
            run_id,
            backup_schema=self.backup_schema,
            limit=self.backup_limit,
            exclude=own.__contains__,
        )

    def drop_backups(self, run_id: str) -> tuple[str, ...]:
        """Drop the backup tables and kept material of run *run_id*; returns their names."""
        return drop_backups(self.engine, run_id, self.backup_schema)

    def _own(self, name: str) -> bool:
        """lupo_migrate's own tables in the core schema (never fingerprinted nor counted)."""
        own = not self.orchestration_apart and name in ORCHESTRATION_TABLES
        return own or name.startswith(BACKUP_PREFIX)

    def fingerprint(self) -> Fingerprint:
        """The core schema's fingerprint, lupo_migrate's own tables left out."""
        with self.engine.connect() as connection:
            return read_fingerprint(connection, self.core_schema, exclude=self._own)

    def table_data(self, tables: Sequence[str]) -> dict[str, TableData]:
        """Row count and checksum of each of *tables* (core schema)."""
        with self.engine.connect() as connection:
            return table_data(connection, tables, self.core_schema)

    def row_estimates(self) -> dict[str, int]:
        """About how many rows each core table holds (the catalog's statistics where there
        are some; SQLite counts)."""
        family = "mysql" if self.dialect in ("mysql", "mariadb") else self.dialect
        rows: Iterable[Any]
        with self.engine.connect() as connection:
            if family == "mysql":
                where = "DATABASE()" if self.core_schema is None else "%(s)s"
                rows = connection.exec_driver_sql(
                    "SELECT table_name, COALESCE(table_rows, 0) FROM information_schema.tables"
                    f" WHERE table_schema = {where} AND table_type = 'BASE TABLE'",
                    {"s": self.core_schema},
                )
            elif family == "postgresql":
                rows = connection.exec_driver_sql(
                    "SELECT c.relname, GREATEST(c.reltuples, 0)::bigint FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                    " AND n.nspname = COALESCE(%(s)s, current_schema())",
                    {"s": self.core_schema},
                )
            else:
                names = sa.inspect(connection).get_table_names(schema=self.core_schema)
                quote = connection.dialect.identifier_preparer.quote
                rows = (
                    (n, connection.exec_driver_sql(f"SELECT COUNT(*) FROM {quote(n)}").scalar())
                    for n in names
                )
            return _counts(rows, self._own)

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

    def existing(self, keys: Sequence[str], connection: Connection | None = None) -> set[str]:
        """Which of *keys* (``table:t``, ``view:v``, ``trigger:x``) exist in the core schema.

        Read on the step's connection where its DDL is still in its transaction (PostgreSQL,
        SQLite); on MySQL, whose DDL committed at once, on a pooled connection of its own, so
        the step's held writes keep travelling with its next statement. Triggers are looked
        up only when asked for (MariaDB opens every table's triggers for that view).
        """
        wanted = {
            kind: sorted({k.partition(":")[2] for k in keys if k.startswith(kind + ":")})
            for kind in ("table", "view", "trigger")
        }
        columns = [k for k in keys if k.startswith("column:")]
        found = self._existing_columns(columns, connection) if columns else set()
        if not any(wanted.values()):
            return found
        use = connection if self.transactional_ddl else None
        rows: list[Any] = []
        with self._reader(use) as conn:
            if self.engine.dialect.name == "sqlite":
                names = sorted({n for ns in wanted.values() for n in ns})
                marks = ", ".join("?" * len(names))
                rows = list(
                    conn.exec_driver_sql(
                        f"SELECT type, name FROM sqlite_master WHERE name IN ({marks})",
                        tuple(names),
                    ).all()
                )
            else:
                pg = self.engine.dialect.name == "postgresql"
                here = "current_schema()" if pg else "DATABASE()"
                schema = here if self.core_schema is None else "%(s)s"
                tables = wanted["table"] + wanted["view"]
                if tables:
                    rows += conn.exec_driver_sql(
                        "SELECT CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END,"
                        " table_name FROM information_schema.tables"
                        f" WHERE table_schema = {schema} AND table_name IN %(n)s",
                        {"s": self.core_schema, "n": tuple(tables)},
                    ).all()
                if wanted["trigger"]:
                    rows += conn.exec_driver_sql(
                        "SELECT 'trigger', trigger_name FROM information_schema.triggers"
                        f" WHERE trigger_schema = {schema} AND trigger_name IN %(n)s",
                        {"s": self.core_schema, "n": tuple(wanted["trigger"])},
                    ).all()
        return ({f"{kind}:{name}" for kind, name in rows} & set(keys)) | found

    def _existing_columns(self, keys: Sequence[str], connection: Connection | None) -> set[str]:
        """Which of *keys* (``column:table.column``) exist, compared without case."""
        tables: dict[str, set[str]] = {}
        for key in keys:
            table, _, column = key[7:].rpartition(".")
            tables.setdefault(table, set()).add(column.lower())
        use = connection if self.transactional_ddl else None
        there: set[tuple[str, str]] = set()
        with self._reader(use) as conn:
            if self.engine.dialect.name == "sqlite":
                for table in tables:
                    names = conn.exec_driver_sql(
                        "SELECT name FROM pragma_table_info(?)", (table,)
                    ).scalars()
                    there.update((table.lower(), str(name).lower()) for name in names)
            else:
                pg = self.engine.dialect.name == "postgresql"
                here = "current_schema()" if pg else "DATABASE()"
                schema = here if self.core_schema is None else "%(s)s"
                rows = conn.exec_driver_sql(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    f" WHERE table_schema = {schema} AND table_name IN %(n)s",
                    {"s": self.core_schema, "n": tuple(tables)},
                ).all()
                there.update((str(t).lower(), str(c).lower()) for t, c in rows)
        return {
            key
            for key in keys
            if (key[7:].rpartition(".")[0].lower(), key[7:].rpartition(".")[2].lower()) in there
        }

    def orphans(
        self, tables: Sequence[str], connection: Connection | None = None
    ) -> list[tuple[str, str, int]]:
        """Rows of *tables* whose foreign keys point at no row: (table, key, how many)."""
        found = []
        with self._reader(connection) as conn:
            inspector = sa.inspect(conn)
            quote = conn.dialect.identifier_preparer.quote
            present = set(inspector.get_table_names(schema=self.core_schema))
            for table in tables:
                if table not in present:
                    continue
                for fk in inspector.get_foreign_keys(table, schema=self.core_schema):
                    parent = fk["referred_table"]
                    cols = fk["constrained_columns"]
                    # SQLite may leave the parent's columns implicit: its primary key.
                    refs = (
                        fk["referred_columns"]
                        or inspector.get_pk_constraint(parent)["constrained_columns"]
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

    def time_query(self, sql: str, *, repeat: int = 3) -> float | None:
        """The fastest of *repeat* runs of *sql* (seconds, rows fetched); None if it fails."""
        best: float | None = None
        try:
            with self.engine.connect() as connection:
                for _ in range(repeat):
                    started = time.perf_counter()
                    connection.exec_driver_sql(sql).fetchall()
                    took = time.perf_counter() - started
                    best = took if best is None else min(best, took)
                connection.rollback()
        except sa.exc.DBAPIError:
            return None
        return best

    def facts(self) -> Mapping[str, Any]:
        """``core_tables``: tables in the core schema, lupo_migrate's own left out."""
        with self.engine.connect() as connection:
            names = sa.inspect(connection).get_table_names(schema=self.core_schema)
        if not self.orchestration_apart:
            names = [n for n in names if n not in ORCHESTRATION_TABLES]
        names = [n for n in names if not n.startswith(BACKUP_PREFIX)]
        return {"core_tables": len(names)}


def _literal(text: str | None) -> str:
    """*text* as a MySQL string literal (lock names: lupo_migrate's own)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "''") + "'"


def _session_id(connection: Connection | None) -> int | None:
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


def _counts(rows: Iterable[Any], own: Any) -> dict[str, int]:
    return {str(name): int(count or 0) for name, count in rows if not own(str(name))}
