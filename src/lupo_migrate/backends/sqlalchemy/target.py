"""The SQLAlchemy target: where a run's statements execute.

One connection per step, opened with a short lock wait (MySQL/MariaDB ``lock_wait_timeout``,
PostgreSQL ``lock_timeout``) so application queries never queue for long behind a waiting
ALTER; a transaction around the step, which on PostgreSQL and SQLite makes DDL transactional
(on MySQL DDL commits at once: the journal and rollback take care of that).

Two parts live apart to keep this module readable in one sitting: the step connection
(:meth:`~SqlAlchemyTarget.step_session`, the shared MySQL connection and its pipeline, the
statement lock, :meth:`~SqlAlchemyTarget.execute`) is the mixin in ``_step_session``, and the
catalog queries behind the checks (row estimates, existing objects and columns, orphans) are
functions in ``_catalog``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from lupo_migrate.backends.sqlalchemy import _blockers, _catalog, _pipeline
from lupo_migrate.backends.sqlalchemy import online_copy as _online_copy
from lupo_migrate.backends.sqlalchemy import pt_osc as _pt_osc
from lupo_migrate.backends.sqlalchemy._concurrent_index import drop_leftovers
from lupo_migrate.backends.sqlalchemy._preimage import (
    BACKUP_PREFIX,
    PreImages,
    attach_backups,
    drop_backups,
)
from lupo_migrate.backends.sqlalchemy._step_session import StepSessions, session_id
from lupo_migrate.backends.sqlalchemy._tables import make_tables
from lupo_migrate.backends.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.core.errors import ConfigurationError
from lupo_migrate.core.fingerprint import Fingerprint, TableData
from lupo_migrate.core.placement import LOOPBACK, ORCHESTRATION_SUFFIX, POSTGRESQL_ORCHESTRATION
from lupo_migrate.sql.online import PT_OSC, REFUSED, check_executor, table_of

__all__ = [
    "ORCHESTRATION_TABLES",
    "SqlAlchemyTarget",
    "attach_backups",
    "connect_error",
    "default_backup_schema",
    "make_engine",
    "usable_url",
]

#: Tables lupo_migrate keeps for itself; never counted against the core table budget.
ORCHESTRATION_TABLES: Final = frozenset(table.name for table in make_tables().all)


#: URL schemes that name no driver (or a spelling SQLAlchemy refuses), opened with the drivers
#: lupo_migrate installs: ``mysql://`` and ``mariadb://`` with PyMySQL, ``postgresql://`` and
#: ``postgres://`` with psycopg2 (SQLAlchemy's defaults, mysqlclient and, from 2.1, psycopg 3,
#: are not installed). A URL naming another driver (``mysql+mysqldb://``) is used as written.
_SCHEMES: Final = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
}


def usable_url(url: str | sa.URL) -> sa.URL:
    """*url* parsed, with the driver lupo_migrate installs where it names none (see
    ``_SCHEMES``); raises ``sqlalchemy.exc.ArgumentError`` when it is not a URL."""
    parsed = sa.make_url(url)
    scheme = _SCHEMES.get(parsed.drivername.lower())
    return parsed if scheme is None else parsed.set(drivername=scheme)


def make_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """An engine for *url* (see :func:`usable_url`); on SQLite, with transactional DDL (BEGIN
    issued by us).

    With PyMySQL, connections accept multi-statement packets (``CLIENT.MULTI_STATEMENTS``),
    which the step pipeline uses; lupo_migrate only ever sends its own writes, escaped by the
    driver, and the migration's own statements in them.

    pysqlite does not open a transaction before DDL by itself, so a failed step would leave
    its earlier statements behind; taking over BEGIN makes a step all-or-nothing, as on
    PostgreSQL.
    """
    engine = sa.create_engine(usable_url(url), **kwargs)
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


def _replica_connection(url: str) -> Any:
    """A driver connection to the replica at *url* (see ``online_copy.ReplicaLag``), with
    the driver lupo_migrate installs (``usable_url``)."""
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    return engine.raw_connection()


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


def default_backup_schema(engine: sa.Engine, names: Mapping[str, str]) -> str | None:
    """Where a target's backup tables go when it is not told: the orchestration schema
    (``names['orchestration']`` unless that is the core one, else the default name:
    ``<db>_lupo_orchestration`` on MySQL/MariaDB, ``lupo_orchestration`` on PostgreSQL); on
    SQLite the backups file :func:`attach_backups` attaches. Created on first use. None only
    for an in-memory SQLite database (nothing outlives it anyway)."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return attach_backups(engine)
    core = names.get("core") or (engine.url.database if dialect != "postgresql" else "public")
    chosen = names.get("orchestration")
    if chosen and chosen != core:
        return chosen
    if dialect == "postgresql":
        return POSTGRESQL_ORCHESTRATION
    return f"{engine.url.database}{ORCHESTRATION_SUFFIX}"


@attrs.define
class SqlAlchemyTarget(StepSessions):
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
        backup_schema: where backup tables go: a MySQL/MariaDB database, a PostgreSQL schema,
            the name of a database attached to SQLite's connections; None: beside the
            orchestration tables (see :func:`default_backup_schema`), never the core schema.
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
    # Whether a statement of the current step may have changed its session (a setting, a
    # user variable...): the session ends with the step (see step_session).
    _stale: bool = attrs.field(default=False, init=False, repr=False)
    # Whether the server tells which session holds which table (see holders()).
    _exact: bool | None = attrs.field(default=None, init=False, repr=False)
    # PostgreSQL: invalid indexes a failed CREATE INDEX CONCURRENTLY left and that could not
    # be dropped yet, by table (see _concurrent_index).
    _leftovers: dict[str, set[str]] = attrs.field(factory=dict, init=False, repr=False)

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
        own = session_id(connection)
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
        own = session_id(connection)
        with self.engine.connect() as conn:
            found = _blockers.open_transactions(conn)
        return tuple(str(b) for b in found if b.session != own)

    def algorithm_refused(self, error: BaseException) -> bool:
        """Whether *error* is MySQL/MariaDB refusing an ``ALGORITHM`` / ``LOCK`` clause it
        cannot honour (1845, 1846), or the clause's syntax there (1064): the statement did
        nothing (see ``sql.online``)."""
        orig = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        code = (getattr(orig, "args", None) or [None])[0]
        return self.engine.dialect.name == "mysql" and code in (*REFUSED, 1064)

    def online_copy(
        self,
        connection: Connection,
        statement: str,
        *,
        run_id: str,
        required: bool,
        report: Callable[[Mapping[str, Any]], None],
        stopped: Callable[[], str | None],
        chunk_time: float = 0.1,
        most_threads: int = 25,
        least_rows: int = 10_000,
        tries: int = 4,
        backoff: float = 1.0,
        replicas: Sequence[str] = (),
        most_lag: float = 1.0,
        executor: str = "lupo",
        swap_back: bool = False,
    ) -> str | None:
        """Run *statement* (``ALTER TABLE`` / ``CREATE INDEX``) on MySQL/MariaDB by an online
        copy on the step's *connection* (``backends/sqlalchemy/online_copy``), resuming run
        *run_id*'s earlier copy where it left off. Why it cannot be done exactly (nothing
        was changed; *required*: even a small table is copied), or None once it is done;
        a failure is raised with what it made dropped."""
        table = table_of(statement)
        if self.engine.dialect.name != "mysql" or table is None:
            return "an online copy is made on MySQL/MariaDB only, of ALTER TABLE or CREATE INDEX"
        pipeline = _pipeline.pipeline_of(connection)
        if pipeline is not None:
            pipeline.send()  # the writes held for the next packet go first
        lag = _online_copy.ReplicaLag(replicas, _replica_connection) if replicas else None
        settings = _online_copy.CopySettings(
            chunk_time=chunk_time,
            most_threads=most_threads,
            least_rows=least_rows,
            cutover_tries=max(1, tries),
            backoff=backoff,
            most_lag=most_lag,
            replica_lag=lag,
            swap_back=swap_back,
        )
        dbapi = connection.connection.dbapi_connection
        how: dict[str, Any] = {
            "run_id": run_id,
            "backup_prefix": BACKUP_PREFIX,
            "backup_schema": self.backup_schema,
            "settings": settings,
            "report": report,
            "stopped": stopped,
            "required": required,
        }
        try:
            if check_executor(executor, "copy_executor") == PT_OSC:
                url = self.engine.url
                socket = url.query.get("unix_socket")
                reach = _pt_osc.Connection(
                    host=url.host,
                    port=url.port,
                    user=url.username,
                    password=url.password,
                    socket=socket if isinstance(socket, str) else None,
                )
                _pt_osc.copy_with_pt_osc(dbapi, statement, table, connection=reach, **how)
            else:
                _online_copy.copy_online(dbapi, statement, table, **how)
        except _online_copy.NotCopyable as exc:
            return str(exc)
        finally:
            if lag is not None:
                lag.close()
        return None

    def swap_back(self, run_id: str, statement: str) -> str | None:
        """Swap back the old table run *run_id*'s online copy for *statement* kept current
        (``copy_swap_back``): None once swapped, or why it cannot be (nothing was touched;
        the rollback undoes the step as it would have otherwise)."""
        table = table_of(statement)
        if self.engine.dialect.name != "mysql" or table is None:
            return "no swap-back was kept (one is made on MySQL/MariaDB only)"
        with self.engine.connect() as conn, self.engine.connect() as guard:
            return _online_copy.swap_back(
                conn.connection.dbapi_connection,
                guard.connection.dbapi_connection,
                backup_prefix=BACKUP_PREFIX,
                run_id=run_id,
                table=table,
                backup_schema=self.backup_schema,
                settings=_online_copy.CopySettings(),
            )

    def swap_backs_kept(self, run_id: str) -> set[str]:
        """The tables run *run_id*'s online copies kept a swap-back of (their records'
        names: ``sql.online_copy.CopyNames.revert``); empty off MySQL/MariaDB."""
        if self.engine.dialect.name != "mysql":
            return set()
        with self.engine.connect() as conn:
            return _online_copy.kept_swap_backs(
                conn.connection.dbapi_connection, BACKUP_PREFIX, run_id, self.backup_schema
            )

    def online_copy_state(self, run_id: str, statement: str) -> str | None:
        """Where run *run_id*'s online copy for *statement* stands: None (none was begun),
        ``copying`` (not cut over: the table is untouched) or ``cut over``."""
        table = table_of(statement)
        if self.engine.dialect.name != "mysql" or table is None:
            return None
        with self.engine.connect() as conn:
            return _online_copy.state(
                conn.connection.dbapi_connection, BACKUP_PREFIX, run_id, table
            )

    def settle_online_copies(self, run_id: str, *, keep: bool) -> tuple[str, ...]:
        """Finish run *run_id*'s online copies that had cut over, and drop those that had not
        (their tables are untouched) unless *keep* (they are to be resumed); the tables."""
        if self.engine.dialect.name != "mysql":
            return ()
        with self.engine.connect() as conn:
            return tuple(
                _online_copy.settle(
                    conn.connection.dbapi_connection,
                    BACKUP_PREFIX,
                    run_id,
                    self.backup_schema,
                    keep=keep,
                )
            )

    def online_copies(self) -> list[_online_copy.Underway]:
        """The online copies under way on this database (MySQL/MariaDB; see
        ``backends/sqlalchemy/online_copy``)."""
        if self.engine.dialect.name != "mysql":
            return []
        with self.engine.connect() as conn:
            return _online_copy.underway(conn.connection.dbapi_connection, BACKUP_PREFIX)

    def control_online_copy(self, checkpoint: str, **values: Any) -> None:
        """Set the controls of the copy whose checkpoint table is *checkpoint* (``paused``,
        ``postponed``, ``most_threads``, ``chunk_time``)."""
        with self.engine.connect() as conn:
            _online_copy.set_control(conn.connection.dbapi_connection, checkpoint, **values)

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

    def __attrs_post_init__(self) -> None:
        if self.backup_schema is None:
            # Backup tables never go among the application's tables, whatever the embedding
            # code passes: beside the orchestration tables by default.
            self.backup_schema = default_backup_schema(self.engine, self.names)
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

    @property
    def soft_drops(self) -> bool:
        """Whether a run's ``DROP TABLE`` sets the table aside in the backup schema instead of
        copying its rows first (MySQL/MariaDB with a backup schema of its own)."""
        return (
            self.engine.dialect.name in ("mysql", "postgresql") and self.backup_schema is not None
        )

    def pre_images(self, run_id: str) -> PreImages | None:
        """The pre-image keeper of run *run_id* (see ``_preimage``)."""
        own = frozenset() if self.orchestration_apart else ORCHESTRATION_TABLES
        return PreImages(
            self.engine,
            run_id,
            backup_schema=self.backup_schema,
            limit=self.backup_limit,
            lock_wait=self.lock_wait_timeout,
            exclude=own.__contains__,
        )

    def leftovers(self) -> tuple[str, ...]:
        """Drop what failed ``CREATE INDEX CONCURRENTLY`` statements left and could not be
        dropped then (see ``_concurrent_index``); the names of those still left (their
        lock wait ran out again), which the caller reports."""
        if not self._leftovers:
            return ()
        with self.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            # The driver's own error (the drop runs on its cursor): its lock wait ran out.
            with contextlib.suppress(self.engine.dialect.loaded_dbapi.Error):
                drop_leftovers(connection, self._leftovers)
        return tuple(sorted(n for names in self._leftovers.values() for n in names))

    def drop_backups(self, run_id: str) -> tuple[str, ...]:
        """Drop the backup tables and kept material of run *run_id*; returns their names.
        The triggers of its swap-backs go first: they write into old tables dropped here."""
        if self.engine.dialect.name == "mysql":
            with self.engine.connect() as conn:
                _online_copy.end_run_swap_backs(
                    conn.connection.dbapi_connection, BACKUP_PREFIX, run_id
                )
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
        with self.engine.connect() as connection:
            return _catalog.row_estimates(connection, family, self.core_schema, self._own)

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
        with self._reader(use) as conn:
            dialect = self.engine.dialect.name
            rows = _catalog.existing_objects(conn, wanted, self.core_schema, dialect)
        return ({f"{kind}:{name}" for kind, name in rows} & set(keys)) | found

    def _existing_columns(self, keys: Sequence[str], connection: Connection | None) -> set[str]:
        """Which of *keys* (``column:table.column``) exist, compared without case."""
        tables: dict[str, set[str]] = {}
        for key in keys:
            table, _, column = key[7:].rpartition(".")
            tables.setdefault(table, set()).add(column.lower())
        use = connection if self.transactional_ddl else None
        with self._reader(use) as conn:
            dialect = self.engine.dialect.name
            there = _catalog.existing_columns(conn, tables, self.core_schema, dialect)
        return {
            key
            for key in keys
            if (key[7:].rpartition(".")[0].lower(), key[7:].rpartition(".")[2].lower()) in there
        }

    def orphans(
        self, tables: Sequence[str], connection: Connection | None = None
    ) -> list[tuple[str, str, int]]:
        """Rows of *tables* whose foreign keys point at no row: (table, key, how many)."""
        with self._reader(connection) as conn:
            return _catalog.orphans(conn, tables, self.core_schema)

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
        return {"core_tables": self.core_table_count()}

    def core_table_count(self, connection: Connection | None = None) -> int:
        """How many tables the core schema holds, lupo_migrate's own left out: read on the
        step's *connection* where its DDL is still in its transaction (PostgreSQL, SQLite),
        else on a connection of its own (MySQL's DDL committed at once)."""
        with contextlib.ExitStack() as stack:
            if connection is None or not self.transactional_ddl:
                connection = stack.enter_context(self.engine.connect())
            names = sa.inspect(connection).get_table_names(schema=self.core_schema)
        if not self.orchestration_apart:
            names = [n for n in names if n not in ORCHESTRATION_TABLES]
        return len([n for n in names if not n.startswith(BACKUP_PREFIX)])
