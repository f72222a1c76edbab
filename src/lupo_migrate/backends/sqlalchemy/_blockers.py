"""Who would hold up DDL on a table: the other sessions whose transactions hold it.

An ``ALTER TABLE t`` needs an exclusive lock on ``t``; while it waits, every later query on
``t`` queues behind it. A plain ``BEGIN; SELECT * FROM t`` left open is enough to start that
(InnoDB keeps a shared metadata lock on ``t`` until the transaction ends, PostgreSQL an
``AccessShareLock``). So before DDL the caller looks for the holders with
:func:`find_blockers`, waits for them as long as it is willing to, and otherwise names them.

Per database:

- MariaDB with the ``metadata_lock_info`` plugin (:func:`install_metadata_lock_info`):
  exact. ``information_schema.METADATA_LOCK_INFO`` tells which session holds which table;
  ``PROCESSLIST`` and ``INNODB_TRX`` add user, state, query and the transaction's age.
- MySQL 8 (or MariaDB with ``performance_schema`` on): exact. ``performance_schema``'s
  ``metadata_locks`` (granted locks) joined with ``threads`` for the session id.
- MySQL/MariaDB with neither: not exact, and conservative. Every other session with an open
  InnoDB transaction (``INNODB_TRX``) is a suspect, with ``tables=()``; a transaction that
  reads only other tables, or other databases, is reported all the same.
- PostgreSQL: exact. Granted ``pg_locks`` on the tables' relations, with ``pg_stat_activity``.
- SQLite: one writer at a time and no sessions to name: nothing is ever reported.

A session that is itself waiting (for a metadata lock, on MySQL and MariaDB) is not reported for
the locks a DDL statement takes before it upgrades to exclusive (shared-upgradable and the
like): it is queued behind the holders, not one of them. What its open transaction holds is
still reported. The connection passed in is never reported, whatever it holds.

Waiting for the holders to go is the caller's loop; it should pause :data:`LOOK_INTERVAL`
between looks. MySQL/MariaDB's ``INNODB_TRX`` (the non-exact path, and the transaction ages
everywhere) is a server-wide copy that InnoDB refreshes only when it was last read more than
0.1 s ago: looks closer together, by anyone, keep reading the same stale copy.

Reading other sessions needs the ``PROCESS`` privilege on MySQL/MariaDB (and ``INNODB_TRX``
refuses without it); on PostgreSQL a role without ``pg_read_all_stats`` sees no state nor query
of other users' sessions. PostgreSQL's prepared transactions hold locks with no session and
are not reported. Driver errors propagate as SQLAlchemy's ``DBAPIError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from lupo_migrate.core.errors import InvalidArgumentError

__all__ = [
    "LOOK_INTERVAL",
    "QUERY_LIMIT",
    "Blocker",
    "exact",
    "find_blockers",
    "install_metadata_lock_info",
    "open_transactions",
]

#: Characters of a session's query kept in :attr:`Blocker.query`.
QUERY_LIMIT: Final = 200

#: Seconds to pause between two looks of a waiting loop, at least (``INNODB_TRX`` is refreshed
#: only when it was last read more than 0.1 s ago).
LOOK_INTERVAL: Final = 0.15

#: Metadata lock modes a DDL statement holds while it waits to upgrade to exclusive.
_DDL_WAITING_MODES: Final = frozenset(
    {"SHARED_UPGRADABLE", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE"}
)

_FAMILIES: Final = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}


@attrs.frozen
class Blocker:
    """Another session with an open transaction, holding (or suspected of holding) tables.

    Attributes:
        session: MySQL/MariaDB connection (process list) id, PostgreSQL backend pid.
        user: the session's database user ('' when not known).
        host: the client host, without its port ('' for a local socket or when not known).
        seconds: how long its transaction has been open (on MySQL/MariaDB, for a holder with
            no InnoDB transaction, how long it has been in its current state).
        state: what it is doing: ``idle in transaction``, ``active``, ``Sleep``...
        query: its current or last query, cut to :data:`QUERY_LIMIT` characters; None when
            not known (an idle MySQL/MariaDB session shows none).
        tables: which of the requested tables it holds, in the order asked; empty when the
            server cannot tell (see :func:`exact`) and in :func:`open_transactions`.
    """

    session: int
    user: str
    host: str
    seconds: int
    state: str
    query: str | None
    tables: tuple[str, ...] = ()

    def __str__(self) -> str:
        who = f"{self.user}@{self.host}" if self.host else self.user or "unknown user"
        text = f"session {self.session} ({who}, transaction open {self.seconds} s, {self.state})"
        return f"{text} holding {', '.join(self.tables)}" if self.tables else text


def find_blockers(
    connection: Connection, tables: Sequence[str], *, schema: str | None = None
) -> tuple[Blocker, ...]:
    """Other sessions holding a lock on any of *tables*, oldest transaction first.

    Args:
        connection: where to look from; its own session is never reported.
        tables: table names, unquoted, as the server spells them.
        schema: the tables' database (MySQL/MariaDB) or schema (PostgreSQL); by default the
            connection's current one.

    Returns:
        The holders, each with the requested tables it holds. Where :func:`exact` is False
        (MySQL/MariaDB without lock tables), every other open transaction instead, with
        ``tables=()``: any of them may hold the tables. Always empty on SQLite.

    Raises:
        InvalidArgumentError: *tables* is a single string, or holds something else than names.
    """
    names = _names(tables)
    family = _family(connection)
    if not names or family is None:
        return ()
    if family == "postgresql":
        return _postgresql_holders(connection, names, schema)
    if _metadata_lock_info_active(connection):
        return _metadata_lock_info_holders(connection, names, schema)
    if _performance_schema_active(connection):
        return _performance_schema_holders(connection, names, schema)
    return _suspects(connection)


def open_transactions(connection: Connection, *, older_than: int = 0) -> tuple[Blocker, ...]:
    """Every other session with an open transaction on any table, oldest first.

    The suspects to name when the exact holders cannot be told. On PostgreSQL, client sessions
    of the connection's database; on MySQL/MariaDB, InnoDB transactions of the whole server.

    Args:
        connection: where to look from; its own session is never reported.
        older_than: only transactions open at least this many seconds.

    Raises:
        InvalidArgumentError: *older_than* is not a whole number of seconds, 0 or more.
    """
    if not isinstance(older_than, int) or isinstance(older_than, bool) or older_than < 0:
        raise InvalidArgumentError(
            f"older_than must be a whole number of seconds, 0 or more; got {older_than!r}"
        )
    family = _family(connection)
    if family == "postgresql":
        found = _postgresql_transactions(connection)
    elif family == "mysql":
        found = _suspects(connection)
    else:
        found = ()
    return tuple(b for b in found if b.seconds >= older_than)


def exact(connection: Connection) -> bool:
    """Whether :func:`find_blockers` can tell which tables a session holds on this server.

    True on PostgreSQL and SQLite; on MySQL/MariaDB when the ``metadata_lock_info`` plugin is
    active or ``performance_schema`` instruments metadata locks. False for other databases.
    """
    family = _family(connection)
    if family == "mysql":
        return _metadata_lock_info_active(connection) or _performance_schema_active(connection)
    return family == "postgresql" or connection.dialect.name == "sqlite"


def install_metadata_lock_info(connection: Connection) -> bool:
    """Install MariaDB's ``metadata_lock_info`` plugin unless it is active already.

    Installing a plugin commits the connection's open transaction, like any such statement,
    and lasts beyond the connection (the server records it). :func:`find_blockers` never
    installs it by itself.

    Returns:
        Whether the plugin is active now: False on other databases (MySQL included), and
        where the server refuses (no privilege, plugin library missing).
    """
    if _family(connection) != "mysql":
        return False
    if _metadata_lock_info_active(connection):
        return True
    try:
        connection.exec_driver_sql("INSTALL SONAME 'metadata_lock_info'")
    except sa.exc.DBAPIError:
        return False
    return _metadata_lock_info_active(connection)


def _family(connection: Connection) -> str | None:
    return _FAMILIES.get(connection.dialect.name)


def _names(tables: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tables, str | bytes) or not all(isinstance(t, str) for t in tables):
        raise InvalidArgumentError(
            f"tables must be a sequence of table names, like ['orders']; got {tables!r}"
        )
    return tuple(dict.fromkeys(tables))


def _cut(query: str | None) -> str | None:
    return None if query is None else query[:QUERY_LIMIT]


def _client_host(host: str | None) -> str:
    """MySQL's ``host:port`` (``localhost`` over a socket) without the port."""
    host = host or ""
    head, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        host = head
    return host.removeprefix("[").removesuffix("]")


def _oldest_first(blockers: Iterable[Blocker]) -> tuple[Blocker, ...]:
    return tuple(sorted(blockers, key=lambda b: (-b.seconds, b.session)))


def _gathered(rows: Iterable[RowMapping], names: Sequence[str]) -> tuple[Blocker, ...]:
    """One blocker per session from rows of (session, table, who...), tables in *names* order."""
    held: dict[int, set[str]] = {}
    first: dict[int, RowMapping] = {}
    for row in rows:
        session = int(row["session"])
        first.setdefault(session, row)
        held.setdefault(session, set()).add(str(row["table_name"]))
    return _oldest_first(
        _blocker(row, tables=tuple(n for n in names if n in held[s])) for s, row in first.items()
    )


def _blocker(row: RowMapping, *, tables: tuple[str, ...] = ()) -> Blocker:
    return Blocker(
        session=int(row["session"]),
        user=str(row["user_name"] or ""),
        host=_client_host(row["host"]),
        seconds=max(0, int(row["seconds"] or 0)),
        state=str(row["state"] or ""),
        query=_cut(row["query"]),
        tables=tables,
    )


# --- MySQL and MariaDB -----------------------------------------------------------------------

#: Seconds since ``trx_started``, which InnoDB shows in the system time zone, not the session's.
_MYSQL_AGE: Final = (
    "TIMESTAMPDIFF(SECOND, x.trx_started,"
    " COALESCE(CONVERT_TZ(NOW(), @@session.time_zone, 'SYSTEM'), NOW()))"
)

#: Who a process is: user, host, state (or command when it has none), query.
_MYSQL_WHO: Final = (
    "COALESCE(p.USER, '') AS user_name, p.HOST AS host,"
    " COALESCE(NULLIF(p.STATE, ''), p.COMMAND, x.trx_state) AS state, p.INFO AS query"
)


def _metadata_lock_info_active(connection: Connection) -> bool:
    status = connection.execute(
        sa.text(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS"
            " WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
        )
    ).scalar()
    return status == "ACTIVE"


def _performance_schema_active(connection: Connection) -> bool:
    try:
        if not connection.execute(sa.text("SELECT @@performance_schema")).scalar():
            return False
        enabled = connection.execute(
            sa.text(
                "SELECT ENABLED FROM performance_schema.setup_instruments"
                " WHERE NAME = 'wait/lock/metadata/sql/mdl'"
            )
        ).scalar()
    except sa.exc.DBAPIError:  # no privilege on performance_schema
        return False
    return enabled == "YES"


def _mysql_holders(
    connection: Connection, sql: str, names: Sequence[str], schema: str | None
) -> tuple[Blocker, ...]:
    """Run a holders query (rows: session, table_name, mode, waiting, who, seconds)."""
    rows = connection.execute(
        sa.text(sql).bindparams(sa.bindparam("names", expanding=True)),
        {"schema": schema, "names": list(names)},
    ).mappings()
    kept = [
        row
        for row in rows
        if not (row["waiting"] and str(row["mode"]).removeprefix("MDL_") in _DDL_WAITING_MODES)
    ]
    return _gathered(kept, names)


def _metadata_lock_info_holders(
    connection: Connection, names: Sequence[str], schema: str | None
) -> tuple[Blocker, ...]:
    """MariaDB's ``METADATA_LOCK_INFO`` (granted locks only); waiting by process state."""
    sql = (
        "SELECT m.THREAD_ID AS session, m.TABLE_NAME AS table_name, m.LOCK_MODE AS mode,"
        f" COALESCE(p.STATE LIKE 'Waiting for%', 0) AS waiting, {_MYSQL_WHO},"
        f" COALESCE({_MYSQL_AGE}, p.TIME) AS seconds"
        " FROM information_schema.METADATA_LOCK_INFO m"
        " JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID"
        " LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = m.THREAD_ID"
        " WHERE m.LOCK_TYPE = 'Table metadata lock'"
        " AND m.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND m.TABLE_NAME IN :names"
        " AND m.THREAD_ID <> CONNECTION_ID()"
    )
    return _mysql_holders(connection, sql, names, schema)


def _performance_schema_holders(
    connection: Connection, names: Sequence[str], schema: str | None
) -> tuple[Blocker, ...]:
    """``performance_schema.metadata_locks``: granted table locks; waiting = a pending one."""
    sql = (
        "SELECT t.PROCESSLIST_ID AS session, l.OBJECT_NAME AS table_name, l.LOCK_TYPE AS mode,"
        " EXISTS (SELECT 1 FROM performance_schema.metadata_locks w"
        " WHERE w.OWNER_THREAD_ID = l.OWNER_THREAD_ID AND w.LOCK_STATUS = 'PENDING') AS waiting,"
        f" {_MYSQL_WHO}, COALESCE({_MYSQL_AGE}, p.TIME) AS seconds"
        " FROM performance_schema.metadata_locks l"
        " JOIN performance_schema.threads t ON t.THREAD_ID = l.OWNER_THREAD_ID"
        " JOIN information_schema.PROCESSLIST p ON p.ID = t.PROCESSLIST_ID"
        " LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = t.PROCESSLIST_ID"
        " WHERE l.OBJECT_TYPE = 'TABLE' AND l.LOCK_STATUS = 'GRANTED'"
        " AND l.OBJECT_SCHEMA = COALESCE(:schema, DATABASE()) AND l.OBJECT_NAME IN :names"
        " AND t.PROCESSLIST_ID <> CONNECTION_ID()"
    )
    return _mysql_holders(connection, sql, names, schema)


def _suspects(connection: Connection) -> tuple[Blocker, ...]:
    """Every other session with an InnoDB transaction, whatever it holds (``tables=()``).

    ``INNODB_TRX`` is a copy (see :data:`LOOK_INTERVAL`): a transaction may show a moment
    after it started or ended. Rows of sessions gone from the process list are such leftovers
    and are dropped, except session 0 (a recovered, prepared XA transaction).
    """
    rows = connection.execute(
        sa.text(
            f"SELECT x.trx_mysql_thread_id AS session, {_MYSQL_WHO},"
            f" {_MYSQL_AGE} AS seconds"
            " FROM information_schema.INNODB_TRX x"
            " LEFT JOIN information_schema.PROCESSLIST p ON p.ID = x.trx_mysql_thread_id"
            " WHERE x.trx_mysql_thread_id <> CONNECTION_ID()"
            " AND (p.ID IS NOT NULL OR x.trx_mysql_thread_id = 0)"
        )
    ).mappings()
    return _oldest_first(_blocker(row) for row in rows)


# --- PostgreSQL ------------------------------------------------------------------------------

#: Who a backend is, and since when its transaction (or, without one, its query) runs.
_PG_WHO: Final = (
    "COALESCE(a.usename, '') AS user_name, host(a.client_addr) AS host,"
    " COALESCE(a.state, '') AS state, a.query AS query,"
    " CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()"
    " - COALESCE(a.xact_start, a.query_start, a.backend_start))) AS bigint) AS seconds"
)


def _fresh_activity(connection: Connection) -> None:
    # pg_stat_activity is read once per transaction and kept: drop that copy so a caller
    # polling inside one transaction sees sessions come and go.
    connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))


def _postgresql_holders(
    connection: Connection, names: Sequence[str], schema: str | None
) -> tuple[Blocker, ...]:
    _fresh_activity(connection)
    rows = connection.execute(
        sa.text(
            f"SELECT l.pid AS session, c.relname AS table_name, {_PG_WHO} FROM pg_locks l"
            " JOIN pg_class c ON c.oid = l.relation"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND n.nspname = COALESCE(:schema, current_schema()) AND c.relname IN :names"
        ).bindparams(sa.bindparam("names", expanding=True)),
        {"schema": schema, "names": list(names)},
    ).mappings()
    return _gathered(rows, names)


def _postgresql_transactions(connection: Connection) -> tuple[Blocker, ...]:
    _fresh_activity(connection)
    rows = connection.execute(
        sa.text(
            f"SELECT a.pid AS session, {_PG_WHO} FROM pg_stat_activity a"
            " WHERE a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()"
            " AND a.datname = current_database() AND a.backend_type = 'client backend'"
        )
    ).mappings()
    return _oldest_first(_blocker(row) for row in rows)
