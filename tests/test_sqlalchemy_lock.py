"""SqlAlchemyLock on SQLite, MariaDB and PostgreSQL, beyond the contract of check_lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import database_params, fresh_database
from lupo_migrate.backends import ManualClock
from lupo_migrate.backends.sqlalchemy import (
    SqlAlchemyLock,
    SqlAlchemyStorage,
    mysql_lock_name,
    postgresql_lock_key,
)
from lupo_migrate.backends.sqlalchemy._tables import ensure_state_row
from lupo_migrate.backends.sqlalchemy.lock import HOLDER_GRACE
from lupo_migrate.errors import InvalidArgumentError, LockError, LockHeldError

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)

MakeEngine = Callable[[], sa.Engine]


@pytest.fixture(name="new_engine")
def _new_engine(database_url: str) -> Iterator[MakeEngine]:
    """Engines on one fresh database: each stands for another process."""
    engines: list[sa.Engine] = []

    def make() -> sa.Engine:
        engines.append(sa.create_engine(database_url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture(name="server_engine", params=database_params()[1:])
def _server_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeEngine]:
    """Like new_engine, on MariaDB and PostgreSQL only (locks held by a connection)."""
    engines: list[sa.Engine] = []

    def make() -> sa.Engine:
        engines.append(sa.create_engine(url))
        return engines[-1]

    with fresh_database(request.param, tmp_path) as url:
        yield make
        for engine in engines:
            engine.dispose()


def _kind(engine: sa.Engine) -> str:
    return {"mariadb": "mysql"}.get(engine.dialect.name, engine.dialect.name)


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_lock_creates_its_own_tables(new_engine: MakeEngine) -> None:
    """A lock on an empty database works without SqlAlchemyStorage.ensure_schema()."""
    engine = new_engine()
    lock = SqlAlchemyLock(engine, "main")
    assert lock.holder() is None
    assert "migration_system_state" in sa.inspect(engine).get_table_names()
    SqlAlchemyStorage(engine).ensure_schema()  # and the storage accepts what it made


def test_holder_is_recorded_in_system_state(new_engine: MakeEngine) -> None:
    """Holder, since and heartbeat are in the target's migration_system_state row."""
    engine = new_engine()
    clock = ManualClock(T0)
    lock = SqlAlchemyLock(engine, "main-lock", target="main", clock=clock)
    storage = SqlAlchemyStorage(engine)
    with lock.acquire("host-1:42"):
        clock.advance(timedelta(seconds=7))
        lock.heartbeat("host-1:42")
        state = storage.system_state("main")
        assert state is not None
        assert (state.lock_name, state.lock_holder, state.lock_since, state.heartbeat) == (
            "main-lock",
            "host-1:42",
            20240301120000,
            20240301120007,
        )
    state = storage.system_state("main")
    assert state is not None
    assert state.lock_holder is None


def test_long_names_work(new_engine: MakeEngine) -> None:
    """A lock name far over MySQL's 64 characters works (hashed for GET_LOCK)."""
    name = "target-" + "x" * 150
    a, b = SqlAlchemyLock(new_engine(), name), SqlAlchemyLock(new_engine(), name)
    assert len(a.server_name) <= 64
    with a.acquire("alice") as info:
        assert b.holder() == info
        with pytest.raises(LockHeldError) as err:
            b.acquire("bob").__enter__()
        assert err.value.holder == "alice"
    assert b.holder() is None


def test_hashing_helpers() -> None:
    """Short names pass through, long ones are hashed; PG keys are signed 64-bit."""
    assert mysql_lock_name("db:main") == "db:main"
    long = mysql_lock_name("n" * 65)
    assert long.startswith("lupo:")
    assert len(long) == 45
    key = postgresql_lock_key("main")
    assert -(2**63) <= key < 2**63
    assert key == postgresql_lock_key("main")


def test_dedicated_connection_is_not_pooled(new_engine: MakeEngine) -> None:
    """While held, the engine's pool has nothing checked out: the lock's connection is its own."""
    engine = new_engine()
    lock = SqlAlchemyLock(engine, "main")
    lock.holder()  # tables made
    with lock.acquire("alice"):
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def _kill_holder(engine: sa.Engine, lock: SqlAlchemyLock) -> None:
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if _kind(engine) == "mysql":
            ident = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": lock.server_name})
            conn.execute(sa.text(f"KILL {int(ident.scalar_one())}"))
        else:
            pid = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})


def test_killed_holder_connection_frees_the_lock(server_engine: MakeEngine) -> None:
    """When the holding connection dies (KILL, pg_terminate_backend) the lock is free at once.

    (SQLite holds no connection: its lease expires instead, see test_sqlite_lease_expires.)
    """
    new_engine = server_engine
    a = SqlAlchemyLock(new_engine(), "main")
    b = SqlAlchemyLock(new_engine(), "main")
    with a.acquire("alice"):
        _kill_holder(new_engine(), a)
        assert _wait_until(lambda: b.holder() is None), b.holder()
        with pytest.raises(LockError, match="lost"):
            a.heartbeat("alice")
        with b.acquire("bob") as info:
            assert a.holder() == info
    assert b.holder() is None  # a's exit did not clear bob's record, and bob let go


def test_a_holder_not_yet_recorded_is_still_named(server_engine: MakeEngine) -> None:
    """Refused in the instant between the server's grant and the holder's record: the taker
    looks again and names the holder instead of "another process"."""
    engine = server_engine()
    a = SqlAlchemyLock(engine, "main")
    b = SqlAlchemyLock(server_engine(), "main")
    a.holder()  # tables exist
    with engine.connect() as granted:  # the server's grant, without the record
        if _kind(engine) == "mysql":
            granted.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": a.server_name})
        else:
            granted.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": a.server_key})
        token = f"{a._user(granted)}/x"

        def late_record() -> None:
            time.sleep(0.15)
            t = a.tables.system_state
            with engine.begin() as tx:
                ensure_state_row(tx, a.tables, a.target)
                row = {"lock_name": a.name, "lock_holder": "late@host:1", "lock_since": 1}
                tx.execute(
                    t.update()
                    .where(t.c.target == a.target)
                    .values({**row, "heartbeat": 1, "lock_token": token})
                )

        thread = threading.Thread(target=late_record)
        started = time.monotonic()
        thread.start()
        with pytest.raises(LockHeldError) as err:
            b.acquire("bob").__enter__()
        thread.join()
    assert err.value.holder == "late@host:1"
    assert time.monotonic() - started < HOLDER_GRACE + 0.5


def test_held_error_from_another_process_names_the_holder(
    new_engine: MakeEngine, database_url: str
) -> None:
    """Another process holding the lock is named in LockHeldError, with since-when."""
    lock = SqlAlchemyLock(new_engine(), "main")
    lock.holder()  # create the tables before the child races for them
    script = (
        "import sys, sqlalchemy as sa\n"
        "from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock\n"
        "lock = SqlAlchemyLock(sa.create_engine(sys.argv[1]), 'main')\n"
        "with lock.acquire('child@host:7'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError) as err:
            lock.acquire("parent", timeout=0.2).__enter__()
        assert err.value.holder == "child@host:7"
        assert err.value.since is not None
        assert len(str(err.value.since)) == 14
        assert "child@host:7" in str(err.value)
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(30)
    assert child.returncode == 0
    with lock.acquire("parent", timeout=5) as info:
        assert info.owner == "parent"


def test_sqlite_lease_expires(tmp_path: Path) -> None:
    """A crashed holder's SQLite lease is taken over once lease_ttl passes without heartbeat."""
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    clock = ManualClock(T0)
    ttl = timedelta(seconds=60)
    a = SqlAlchemyLock(sa.create_engine(url), "main", clock=clock, lease_ttl=ttl)
    b = SqlAlchemyLock(sa.create_engine(url), "main", clock=clock, lease_ttl=ttl)
    with a.acquire("alice"):
        clock.advance(timedelta(seconds=50))
        a.heartbeat("alice")  # renews until 12:01:50
        clock.advance(timedelta(seconds=50))
        with pytest.raises(LockHeldError):
            b.acquire("bob").__enter__()
        clock.advance(timedelta(seconds=11))
        assert b.holder() is None
        with pytest.raises(LockError, match="lost"):
            a.heartbeat("alice")
        with b.acquire("bob") as info:
            assert a.holder() == info
        with b.acquire("bob") as info:  # released: taken again
            pass
    assert b.holder() is None


def test_names_must_fit_the_table() -> None:
    """Lock names and targets longer than the indexed column (191) are refused up front."""
    with pytest.raises(InvalidArgumentError, match="1 to 191"):
        SqlAlchemyLock(sa.create_engine("sqlite://"), "n" * 192)


def test_sqlite_needs_the_table() -> None:
    """On SQLite the lease row is the lock: heartbeat_table=False is refused."""
    with pytest.raises(InvalidArgumentError, match="heartbeat_table"):
        SqlAlchemyLock(sa.create_engine("sqlite://"), "main", heartbeat_table=False)


def test_without_heartbeat_table(server_engine: MakeEngine) -> None:
    """heartbeat_table=False: exclusive all the same, no table, holder known only locally."""
    new_engine = server_engine
    engine = new_engine()
    a = SqlAlchemyLock(engine, "main", heartbeat_table=False)
    b = SqlAlchemyLock(new_engine(), "main", heartbeat_table=False)
    with a.acquire("alice") as info:
        assert a.holder() == info
        a.heartbeat("alice")
        with pytest.raises(LockHeldError) as err:
            b.acquire("bob").__enter__()
        assert err.value.holder is None
        with pytest.raises(LockError):
            b.heartbeat("bob")
    assert a.holder() is None
    assert sa.inspect(engine).get_table_names() == []


def test_unreachable_server_is_a_lock_error() -> None:
    """A lock on an unreachable server fails with a one-line LockError."""
    lock = SqlAlchemyLock(sa.create_engine("mysql+pymysql://root@127.0.0.1:1/x"), "main")
    with pytest.raises(LockError) as err:
        lock.holder()
    assert "\n" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_a_sqlite_lease_whose_process_died_is_free_at_once(tmp_path: Path) -> None:
    """A holder killed on this machine leaves its lease to the next taker at once (recover
    right after a crash); a holder recorded from another machine keeps it until it expires."""
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    lock = SqlAlchemyLock(sa.create_engine(url), "main")
    lock.holder()  # the tables, before the child
    script = (
        "import os, sys, sqlalchemy as sa\n"
        "from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock\n"
        "lock = SqlAlchemyLock(sa.create_engine(sys.argv[1]), 'main')\n"
        "with lock.acquire('doomed'):\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    child = subprocess.run([sys.executable, "-c", script, url], check=False)
    assert child.returncode == -9
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        holder, token = conn.execute(
            sa.text(
                "SELECT lock_holder, lock_token FROM migration_system_state"
                " WHERE lock_holder IS NOT NULL"
            )
        ).one()
    assert holder == "doomed"  # the row still names it, lease unexpired
    assert lock.holder() is None
    with lock.acquire("recover", timeout=0) as info:
        assert info.owner == "recover"
        assert lock.holder() == info
    elsewhere = "otherhost|" + token.split("|", 1)[1]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE migration_system_state SET lock_holder = 'far', lock_token = :t,"
                " lock_since = 20240301120000, heartbeat = 20240301120000,"
                " lock_expires = 29990101000000 WHERE lock_name IS NOT NULL"
            ),
            {"t": elsewhere},
        )
    held = lock.holder()
    assert held is not None
    assert held.owner == "far"
    with pytest.raises(LockHeldError, match="far"):
        lock.acquire("recover", timeout=0).__enter__()
    engine.dispose()
