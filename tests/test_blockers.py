"""find_blockers, open_transactions and exact on MariaDB, PostgreSQL and SQLite.

Real sessions hold real tables: another connection opens a transaction that reads ``t``
(``BEGIN; SELECT * FROM t``), which keeps a shared lock on ``t`` until it ends. MariaDB runs
twice: exactly, with the ``metadata_lock_info`` plugin (installed for this module if it was
not, and uninstalled again afterwards), and without it, where every open transaction is a
suspect. One database per server serves the whole module.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from databases import MARIADB_SERVER, fresh_database
from lupo_migrate.backends.sqlalchemy import _blockers
from lupo_migrate.backends.sqlalchemy._blockers import (
    LOOK_INTERVAL,
    QUERY_LIMIT,
    Blocker,
    exact,
    find_blockers,
    install_metadata_lock_info,
    open_transactions,
)
from lupo_migrate.errors import InvalidArgumentError

SERVERS = [
    pytest.param("mariadb-metadata_lock_info", marks=pytest.mark.mariadb),
    pytest.param("mariadb-innodb_trx", marks=pytest.mark.mariadb),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]
DDL_SERVERS = [
    pytest.param("mariadb-innodb_trx", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]


@attrs.frozen
class Server:
    """A database on a server, and whether find_blockers is exact there."""

    kind: str  # mariadb or postgresql
    engine: sa.Engine
    exact: bool

    def session(self) -> tuple[sa.Connection, int]:
        """A new connection and its session id, outside any transaction."""
        connection = self.engine.connect()
        ask = "SELECT CONNECTION_ID()" if self.kind == "mariadb" else "SELECT pg_backend_pid()"
        session = int(connection.exec_driver_sql(ask).scalar_one())
        connection.rollback()
        return connection, session

    def read_t(self, connection: sa.Connection) -> None:
        """``BEGIN; SELECT * FROM t``: the transaction stays open with its lock on t."""
        connection.exec_driver_sql("SELECT * FROM t").all()

    def short_lock_wait(self, connection: sa.Connection, seconds: int) -> None:
        """What the target does to step sessions: a short wait for locks."""
        if self.kind == "mariadb":
            connection.exec_driver_sql(f"SET SESSION lock_wait_timeout = {seconds}")
        else:
            connection.exec_driver_sql(f"SET lock_timeout = '{seconds}s'")
        connection.commit()

    def waiting_for_lock(self, session: int) -> bool:
        """Whether *session* is waiting for a lock (seen from a connection of its own)."""
        with self.engine.connect() as observer:
            if self.kind == "mariadb":
                sql = "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %(s)s"
                state = observer.exec_driver_sql(sql, {"s": session}).scalar()
                return state == "Waiting for table metadata lock"
            sql = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(s)s"
            return observer.exec_driver_sql(sql, {"s": session}).scalar() == "Lock"


def _database(kind: str, factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(kind, factory.mktemp(kind)) as url:
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY)")
            connection.exec_driver_sql("CREATE TABLE u (id INT PRIMARY KEY)")
            connection.exec_driver_sql("INSERT INTO t (id) VALUES (1)")
        engine.dispose()
        yield url


@pytest.fixture(name="mariadb_database", scope="module")
def _mariadb_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _database("mariadb", tmp_path_factory)


@pytest.fixture(name="postgresql_database", scope="module")
def _postgresql_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _database("postgresql", tmp_path_factory)


@pytest.fixture(name="metadata_lock_info", scope="module")
def _metadata_lock_info(mariadb_database: str) -> Iterator[None]:
    """The plugin active for the module; the server's prior state restored afterwards."""
    engine = sa.create_engine(MARIADB_SERVER, poolclass=NullPool)
    with engine.connect() as connection:
        before = _blockers._metadata_lock_info_active(connection)
        installed = install_metadata_lock_info(connection)
    if not installed:
        engine.dispose()
        message = "MariaDB's metadata_lock_info plugin cannot be installed on this server"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must run the exact path: install mariadb-plugin files)")
        pytest.skip(message)
    yield
    if not before:
        with engine.connect() as connection:
            connection.exec_driver_sql("UNINSTALL SONAME 'metadata_lock_info'")
    engine.dispose()


@pytest.fixture(name="server", params=SERVERS)
def _server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    kind, _, mode = str(request.param).partition("-")
    url = request.getfixturevalue(f"{kind}_database")
    if mode == "metadata_lock_info":
        request.getfixturevalue("metadata_lock_info")
    elif mode == "innodb_trx":  # as on a server with no lock tables, whatever this one has
        monkeypatch.setattr(_blockers, "_metadata_lock_info_active", lambda _c: False)
        monkeypatch.setattr(_blockers, "_performance_schema_active", lambda _c: False)
    engine = sa.create_engine(url, poolclass=NullPool)
    yield Server(kind, engine, exact=mode != "innodb_trx")
    engine.dispose()


@pytest.fixture(name="ddl_server", params=DDL_SERVERS)
def _ddl_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind = str(request.param).partition("-")[0]
    engine = sa.create_engine(request.getfixturevalue(f"{kind}_database"), poolclass=NullPool)
    yield Server(kind, engine, exact=True)
    engine.dispose()


@pytest.fixture(name="connect")
def _connect() -> Iterator[Callable[[Server], tuple[sa.Connection, int]]]:
    """Sessions that are closed (their transactions ended) when the test ends."""
    opened: list[sa.Connection] = []

    def connect(server: Server) -> tuple[sa.Connection, int]:
        connection, session = server.session()
        opened.append(connection)
        return connection, session

    yield connect
    for connection in opened:
        connection.close()


Connect = Callable[[Server], tuple[sa.Connection, int]]


def _sessions(blockers: tuple[Blocker, ...]) -> set[int]:
    return {b.session for b in blockers}


Look = Callable[[], tuple[Blocker, ...]]


def _settled(look: Look, condition: Callable[[set[int]], bool]) -> tuple[Blocker, ...]:
    """What *look* answers once *condition* holds of its sessions, or after 2 s.

    MariaDB's INNODB_TRX (the non-exact path) shows transactions late, and only to looks
    LOOK_INTERVAL apart.
    """
    found = look()
    deadline = time.monotonic() + 2
    while not condition(_sessions(found)) and time.monotonic() < deadline:
        time.sleep(LOOK_INTERVAL)
        found = look()
    return found


def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class TestFindBlockers:
    def test_reader_in_open_transaction_is_named(self, server: Server, connect: Connect) -> None:
        """A session that read t in a still open transaction is named, with who it is."""
        me, _ = connect(server)
        reader, reader_id = connect(server)
        server.read_t(reader)
        found = _settled(lambda: find_blockers(me, ["t"]), lambda s: reader_id in s)
        blocker = next(b for b in found if b.session == reader_id)
        assert blocker.seconds >= 0
        assert blocker.user == server.engine.url.username
        assert blocker.host in ("127.0.0.1", "localhost", "::1")
        assert blocker.state in ("Sleep", "idle in transaction")
        assert blocker.query is None or len(blocker.query) <= QUERY_LIMIT
        if server.exact:
            assert found == (blocker,)
            assert blocker.tables == ("t",)
        else:
            assert blocker.tables == ()

    def test_table_nobody_holds_has_no_blockers_when_exact(
        self, server: Server, connect: Connect
    ) -> None:
        """Exactly: nobody holds u; conservatively, the open transaction is still a suspect."""
        me, _ = connect(server)
        reader, reader_id = connect(server)
        server.read_t(reader)
        if server.exact:
            assert find_blockers(me, ["u"]) == ()
        else:
            found = _settled(lambda: find_blockers(me, ["u"]), lambda s: reader_id in s)
            assert reader_id in _sessions(found)

    def test_several_tables_name_the_ones_held(self, server: Server, connect: Connect) -> None:
        """Asked about u and t, the reader of t holds t only (in the order asked)."""
        me, _ = connect(server)
        reader, reader_id = connect(server)
        server.read_t(reader)
        reader.exec_driver_sql("SELECT * FROM u").all()
        look = lambda: find_blockers(me, ["u", "t", "missing"])  # noqa: E731
        found = {b.session: b.tables for b in _settled(look, lambda s: reader_id in s)}
        assert found[reader_id] == (("u", "t") if server.exact else ())

    def test_blocker_is_gone_once_it_commits(self, server: Server, connect: Connect) -> None:
        """After the reader commits, it is no longer reported (polling in one transaction)."""
        me, _ = connect(server)
        reader, reader_id = connect(server)
        server.read_t(reader)
        me.exec_driver_sql("SELECT 1").all()  # the caller's transaction spans both looks
        look: Look = lambda: find_blockers(me, ["t"])  # noqa: E731
        assert reader_id in _sessions(_settled(look, lambda s: reader_id in s))
        reader.commit()
        found = _settled(look, lambda s: reader_id not in s)
        assert reader_id not in _sessions(found)
        if server.exact:
            assert found == ()

    def test_own_open_transaction_is_never_reported(self, server: Server, connect: Connect) -> None:
        """The connection that asks holds t itself, and is not in the answer."""
        me, my_id = connect(server)
        server.read_t(me)
        if server.exact:
            assert find_blockers(me, ["t"]) == ()
        reader, reader_id = connect(server)  # seen only after ours began: the answer is fresh
        server.read_t(reader)
        for look in (lambda: find_blockers(me, ["t"]), lambda: open_transactions(me)):
            found = _settled(look, lambda s: reader_id in s)
            assert reader_id in _sessions(found)
            assert my_id not in _sessions(found)

    def test_waiting_ddl_is_not_a_holder(self, server: Server, connect: Connect) -> None:
        """An ALTER queued behind the reader is not named; the reader is."""
        me, _ = connect(server)
        reader, reader_id = connect(server)
        ddl, ddl_id = connect(server)
        server.short_lock_wait(ddl, 5)
        server.read_t(reader)
        failure: list[BaseException] = []

        def alter() -> None:
            try:
                ddl.exec_driver_sql(f"ALTER TABLE t ADD COLUMN c{uuid.uuid4().hex[:8]} INT")
                ddl.commit()
            except Exception as exc:  # reported by the assertion below
                failure.append(exc)

        thread = threading.Thread(target=alter)
        thread.start()
        try:
            assert _wait_until(lambda: server.waiting_for_lock(ddl_id))
            found = _settled(lambda: find_blockers(me, ["t"]), lambda s: reader_id in s)
        finally:
            reader.rollback()
            thread.join()
        assert not failure
        assert ddl_id not in _sessions(found)
        assert reader_id in _sessions(found)
        if server.exact:
            assert _sessions(found) == {reader_id}

    def test_schema_named_explicitly(self, server: Server, connect: Connect) -> None:
        """schema= picks where the tables are, whatever the asking connection's default
        (without lock tables, every open transaction is a suspect in any schema)."""
        reader, reader_id = connect(server)
        server.read_t(reader)
        if server.kind == "mariadb":  # asked from a connection with no current database
            home = str(server.engine.url.database)
            engine = sa.create_engine(server.engine.url.set(database=""), poolclass=NullPool)
        else:
            home, engine = "public", server.engine
        with engine.connect() as me:
            if server.exact:
                assert _sessions(find_blockers(me, ["t"], schema=home)) == {reader_id}
                assert find_blockers(me, ["t"], schema="elsewhere") == ()
            else:
                look = lambda: find_blockers(me, ["t"], schema="elsewhere")  # noqa: E731
                assert reader_id in _sessions(_settled(look, lambda s: reader_id in s))
        engine.dispose()

    def test_nothing_to_look_for_has_no_blockers(self, server: Server, connect: Connect) -> None:
        """No tables asked about: nothing is reported, held or not."""
        me, _ = connect(server)
        reader, _ = connect(server)
        server.read_t(reader)
        assert find_blockers(me, []) == ()


class TestOpenTransactions:
    def test_lists_the_other_session(self, server: Server, connect: Connect) -> None:
        """The reader's transaction is listed (not ours); not when asked for older ones."""
        me, my_id = connect(server)
        server.read_t(me)
        reader, reader_id = connect(server)
        server.read_t(reader)
        found = _settled(lambda: open_transactions(me), lambda s: reader_id in s)
        assert reader_id in _sessions(found)
        assert my_id not in _sessions(found)
        assert all(b.tables == () for b in found)
        assert [b.seconds for b in found] == sorted((b.seconds for b in found), reverse=True)
        assert reader_id not in _sessions(open_transactions(me, older_than=3600))

    def test_session_outside_a_transaction_is_not_listed(
        self, server: Server, connect: Connect
    ) -> None:
        """A connected session with no open transaction is no suspect."""
        me, _ = connect(server)
        _idle, idle_id = connect(server)
        assert idle_id not in _sessions(open_transactions(me))

    @pytest.mark.parametrize("older_than", [-1, 1.5, "5", True])
    def test_older_than_must_be_whole_seconds(self, older_than: Any) -> None:
        """A negative, fractional or non-number bound is refused before anything is read."""
        with pytest.raises(InvalidArgumentError, match="older_than"):
            open_transactions(None, older_than=older_than)  # type: ignore[arg-type]


class TestExact:
    def test_says_what_find_blockers_can_tell(self, server: Server) -> None:
        """Exact with the plugin and on PostgreSQL; not with InnoDB's transactions alone."""
        with server.engine.connect() as connection:
            assert exact(connection) is server.exact

    @pytest.mark.mariadb
    def test_performance_schema_query_runs_on_mariadb(self, mariadb_database: str) -> None:
        """The MySQL 8 path's query is valid here; exact when performance_schema is on."""
        engine = sa.create_engine(mariadb_database, poolclass=NullPool)
        with engine.connect() as connection:
            found = _blockers._performance_schema_holders(connection, ["t"], None)
            if not _blockers._performance_schema_active(connection):
                assert found == ()
        engine.dispose()


class TestInstallMetadataLockInfo:
    @pytest.mark.mariadb
    @pytest.mark.usefixtures("metadata_lock_info")
    def test_active_plugin_is_reported_installed(self, mariadb_database: str) -> None:
        """Asking again while the plugin is active changes nothing and says True."""
        engine = sa.create_engine(mariadb_database, poolclass=NullPool)
        with engine.connect() as connection:
            assert install_metadata_lock_info(connection) is True
            assert exact(connection) is True
        engine.dispose()

    @pytest.mark.postgresql
    def test_not_on_postgresql(self, postgresql_database: str) -> None:
        """PostgreSQL has no such plugin: False."""
        engine = sa.create_engine(postgresql_database, poolclass=NullPool)
        with engine.connect() as connection:
            assert install_metadata_lock_info(connection) is False
        engine.dispose()


class TestSqlite:
    def test_nothing_is_ever_reported(self, tmp_path: Path) -> None:
        """One writer at a time and no sessions: exact, and empty even while t is written."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", poolclass=NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        with engine.connect() as writer, engine.connect() as me:
            writer.exec_driver_sql("INSERT INTO t (id) VALUES (1)")
            assert find_blockers(me, ["t"]) == ()
            assert open_transactions(me) == ()
            assert exact(me) is True
            assert install_metadata_lock_info(me) is False
        engine.dispose()


class TestLockWaitBound:
    def test_alter_behind_a_reader_gives_up_and_releases_queued_readers(
        self, ddl_server: Server, connect: Connect
    ) -> None:
        """With a 1 s lock wait, a blocked ALTER fails after about 1 s (MariaDB 1205,
        PostgreSQL 55P03), and a SELECT that queued behind it returns when it gives up."""
        server = ddl_server
        holder, _ = connect(server)
        ddl, ddl_id = connect(server)
        reader, _ = connect(server)
        server.short_lock_wait(ddl, 1)
        server.read_t(holder)
        alter: dict[str, Any] = {}
        read: dict[str, Any] = {}

        def run_alter() -> None:
            alter["start"] = time.monotonic()
            try:
                ddl.exec_driver_sql(f"ALTER TABLE t ADD COLUMN c{uuid.uuid4().hex[:8]} INT")
            except sa.exc.DBAPIError as exc:
                alter["error"] = exc.orig
            alter["end"] = time.monotonic()

        def run_read() -> None:
            read["start"] = time.monotonic()
            read["rows"] = reader.exec_driver_sql("SELECT id FROM t").all()
            read["end"] = time.monotonic()

        alter_thread = threading.Thread(target=run_alter)
        alter_thread.start()
        read_thread = threading.Thread(target=run_read)
        try:
            assert _wait_until(lambda: server.waiting_for_lock(ddl_id), seconds=3)
            read_thread.start()
            read_thread.join(timeout=10)
            alter_thread.join(timeout=10)
        finally:
            holder.rollback()
            alter_thread.join()
            if read_thread.is_alive():
                read_thread.join()

        error = alter.get("error")
        assert error is not None, "the ALTER should have given up waiting"
        if server.kind == "mariadb":
            assert error.args[0] == 1205
        else:
            assert error.pgcode == "55P03"
        assert 0.9 <= alter["end"] - alter["start"] < 3
        assert read["rows"] == [(1,)]
        assert read["end"] - read["start"] < 3
        assert read["end"] >= alter["end"] - 0.5  # it had queued behind the ALTER


class TestBlocker:
    def test_names_session_who_age_state_and_tables(self) -> None:
        """The text names the session, user@host, the transaction's age, state and tables."""
        blocker = Blocker(42, "app", "localhost", 12, "idle in transaction", None, ("orders",))
        assert str(blocker) == (
            "session 42 (app@localhost, transaction open 12 s, idle in transaction) holding orders"
        )

    def test_without_host_nor_tables(self) -> None:
        """No host: the user alone; no tables known: no 'holding' part."""
        assert str(Blocker(7, "app", "", 3, "Sleep", None)) == (
            "session 7 (app, transaction open 3 s, Sleep)"
        )

    def test_several_tables_and_unknown_user(self) -> None:
        """Several tables are listed with commas; an empty user reads 'unknown user'."""
        blocker = Blocker(1, "", "", 0, "active", "SELECT 1", ("a", "b"))
        assert str(blocker) == "session 1 (unknown user, transaction open 0 s, active) holding a, b"


class TestHelpers:
    @pytest.mark.parametrize(
        ("raw", "host"),
        [
            ("127.0.0.1:40860", "127.0.0.1"),
            ("localhost", "localhost"),
            ("[::1]:5000", "::1"),
            ("", ""),
            (None, ""),
        ],
    )
    def test_client_host_drops_the_port(self, raw: str | None, host: str) -> None:
        """MySQL's host:port becomes the host alone."""
        assert _blockers._client_host(raw) == host

    def test_oldest_transaction_first(self) -> None:
        """Longest open first; equal ages by session id."""
        young = Blocker(1, "a", "", 1, "Sleep", None)
        old = Blocker(9, "a", "", 30, "Sleep", None)
        twin = Blocker(3, "a", "", 1, "Sleep", None)
        assert _blockers._oldest_first([young, old, twin]) == (old, young, twin)

    def test_long_query_is_cut(self) -> None:
        """A query is kept up to QUERY_LIMIT characters."""
        assert _blockers._cut("x" * 500) == "x" * QUERY_LIMIT
        assert _blockers._cut(None) is None

    @pytest.mark.parametrize("tables", ["orders", [b"orders"], [1]])
    def test_tables_must_be_names(self, tables: Any) -> None:
        """A bare string (a common slip) or non-strings are refused with the value shown."""
        with pytest.raises(InvalidArgumentError, match="sequence of table names"):
            _blockers._names(tables)
