"""The ephemeral schema: the contract on every backend, concurrent purges, `purge`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate.backends.memory import InMemoryEphemeral, ManualClock
from lupo_migrate.backends.sqlalchemy.ephemeral import (
    PURGE_BATCH,
    SCHEMA_LEASE,
    SqlAlchemyEphemeral,
)
from lupo_migrate.cli import main
from lupo_migrate.errors import InvalidArgumentError
from lupo_migrate.testing import check_ephemeral


def _schema(url: str) -> str | None:
    """A schema of its own on MariaDB and PostgreSQL, as a session places it."""
    if url.startswith("sqlite"):
        return None
    if url.startswith("mysql"):
        return f"{sa.make_url(url).database}_lupo_ephemeral"
    return "lupo_ephemeral"


@pytest.fixture(name="engine")
def _engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    schema = _schema(database_url)
    if schema is not None:
        ddl = "CREATE DATABASE" if database_url.startswith("mysql") else "CREATE SCHEMA"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"{ddl} {schema}")
    yield engine
    engine.dispose()


def test_the_memory_backend_meets_the_contract() -> None:
    """InMemoryEphemeral passes check_ephemeral."""
    check_ephemeral(InMemoryEphemeral)


def test_the_sqlalchemy_backend_meets_the_contract(engine: sa.Engine) -> None:
    """SqlAlchemyEphemeral passes check_ephemeral on SQLite, MariaDB and PostgreSQL (each
    check on freshly emptied tables)."""
    schema = _schema(engine.url.render_as_string(hide_password=False))

    def make(clock: ManualClock) -> SqlAlchemyEphemeral:
        store = SqlAlchemyEphemeral(engine, schema=schema, clock=clock)
        store.ensure_schema()
        locks = store.tables.locks
        with engine.begin() as conn:
            for table in store.tables.all:
                if table is not locks:
                    conn.execute(table.delete())
            conn.execute(locks.delete().where(locks.c.name != SCHEMA_LEASE))
        return store

    check_ephemeral(make)
    if schema is not None:  # in a schema of its own: nothing in the connection's default
        assert sa.inspect(engine).get_table_names() == []


def test_ensure_schema_is_idempotent_and_keeps_its_version_row(engine: sa.Engine) -> None:
    """A second ensure_schema() finds the version; purge never removes its row."""
    schema = _schema(engine.url.render_as_string(hide_password=False))
    store = SqlAlchemyEphemeral(engine, schema=schema)
    assert store.ensure_schema() == 1
    assert store.ensure_schema() == 1
    store.purge()
    with pytest.raises(InvalidArgumentError, match="schema version"):
        store.take(SCHEMA_LEASE, "me", ttl=timedelta(seconds=5))
    with engine.connect() as conn:
        row = conn.execute(sa.select(store.tables.locks.c.owner)).scalar_one()
    assert row == "lupo_migrate:1"


def test_concurrent_purges_delete_each_expired_row_once(engine: sa.Engine) -> None:
    """Six purges at once, while a writer renews leases: every expired row goes, exactly
    once in total; live rows and renewed leases stay; nobody errs."""
    schema = _schema(engine.url.render_as_string(hide_password=False))
    clock = ManualClock()
    store = SqlAlchemyEphemeral(engine, schema=schema, clock=clock)
    store.ensure_schema()
    expired = PURGE_BATCH + 250  # more than one batch on MariaDB
    cache = store.tables.cache
    stamp = 20240101000000
    with engine.begin() as conn:
        rows = [
            {"name": f"old{i}", "value": "x", "created_at": stamp, "expires_at": stamp}
            for i in range(expired)
        ]
        rows += [
            {"name": f"new{i}", "value": "y", "created_at": stamp, "expires_at": 20990101000000}
            for i in range(30)
        ]
        conn.execute(cache.insert(), rows)
    leases = [f"lease{i}" for i in range(5)]
    for name in leases:
        store.take(name, "w", ttl=timedelta(minutes=5))
    counts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(7)

    def purge() -> None:
        try:
            start.wait()
            counts.append(store.purge()["cache"])
        except BaseException as exc:
            errors.append(exc)

    def renew() -> None:
        try:
            start.wait()
            for _ in range(3):
                for name in leases:
                    store.renew(name, "w", ttl=timedelta(minutes=5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=purge) for _ in range(6)]
    threads.append(threading.Thread(target=renew))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(counts) == expired
    with engine.connect() as conn:
        left = conn.execute(sa.select(cache.c.name)).scalars().all()
    assert sorted(left) == sorted(f"new{i}" for i in range(30))
    assert [store.lease(name) is not None for name in leases] == [True] * 5


def test_purge_command_deletes_expired_ephemeral_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`purge --ephemeral` needs no migrations directory and reports per table; `purge`
    does it too, after the decisions."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["apply", str(migrations), "--db", url]) == 0
    assert main(["purge", "--ephemeral", "--db", url]) == 0  # creates the tables
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.lupo.db'}")
    store = SqlAlchemyEphemeral(engine)
    store.put("sessions", "s1", "gone", ttl=timedelta(seconds=1))
    with engine.begin() as conn:
        conn.execute(store.tables.sessions.update().values(expires_at=20200101000000))
    store.put("cache", "c1", "kept", ttl=timedelta(hours=1))
    capsys.readouterr()
    assert main(["purge", "--ephemeral", "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "1 expired ephemeral row(s) deleted"
        " (sessions 1, cache 0, temp_data 0, job_queue 0, locks 0)"
    ]
    assert main(["purge", str(migrations), "--db", url]) == 0
    out = capsys.readouterr().out
    assert "run(s) purged" in out
    assert "0 expired ephemeral row(s) deleted" in out
    assert store.get("cache", "c1") == "kept"
    engine.dispose()


def test_a_deadlock_is_tried_again_and_other_errors_are_not() -> None:
    """A write that met a deadlock (InnoDB 1213) runs again; any other error is reported."""
    from lupo_migrate.errors import StorageError

    store = SqlAlchemyEphemeral(sa.create_engine("sqlite://"))
    calls: list[int] = []

    def failing(code: int, times: int) -> int:
        calls.append(code)
        if len(calls) <= times:
            driver = sa.exc.OperationalError("DELETE ...", {}, Exception(code, "Deadlock found"))
            raise StorageError("ephemeral write failed") from driver
        return 7

    assert store._retried(lambda: failing(1213, 2)) == 7
    assert calls == [1213, 1213, 1213]
    calls.clear()
    with pytest.raises(StorageError, match="ephemeral write failed"):
        store._retried(lambda: failing(1146, 1))  # no such table: not transient
    assert calls == [1146]


def test_the_write_freeze_holds_its_lease_in_the_ephemeral_locks_table(
    database_url: str, tmp_path: Path
) -> None:
    """Freezing takes the lease freeze:<target> in `locks` (same transaction as the state
    row hosts read), re-freezing extends it, a thaw or an emergency thaw drops it, and an
    expired one is purged."""
    from lupo_migrate.cli import _settings
    from lupo_migrate.session import session as _session

    (tmp_path / "m").mkdir()
    settings = _settings(
        directory=tmp_path / "m",
        db=database_url,
        target_name=None,
        manifest=None,
        config=None,
        renames=(),
    )
    with _session.session(settings) as opened:
        freeze = opened.orchestrator.freeze
        first = freeze.freeze("runner-1", ttl=timedelta(minutes=5))
        lease = opened.ephemeral.lease("freeze:default")
        assert lease is not None
        assert (lease.owner, lease.since, lease.expires) == ("runner-1", first.since, first.expires)
        again = freeze.freeze("runner-1", ttl=timedelta(minutes=10))
        lease = opened.ephemeral.lease("freeze:default")
        assert lease is not None
        assert lease.expires == again.expires
        freeze.thaw("runner-1")
        assert opened.ephemeral.lease("freeze:default") is None
        freeze.freeze("runner-2", ttl=timedelta(minutes=5))
        freeze.emergency_thaw("ops", "stuck")
        assert opened.ephemeral.lease("freeze:default") is None
        freeze.freeze("runner-3", ttl=timedelta(seconds=1))
        deadline = time.monotonic() + 5
        while freeze.status() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert freeze.status() is None
        assert opened.purge_ephemeral().get("locks", 0) >= 1
        assert opened.ephemeral.lease("freeze:default") is None


@pytest.mark.mariadb
def test_reading_commands_create_no_ephemeral_schema(tmp_path: Path) -> None:
    """`status` creates nothing there; the first run's freeze does (its lease needs it)."""
    from databases import fresh_database

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    with fresh_database("mariadb", tmp_path) as url:
        name = sa.make_url(url).database

        def exists() -> bool:
            engine = sa.create_engine(url)
            try:
                return f"{name}_lupo_ephemeral" in sa.inspect(engine).get_schema_names()
            finally:
                engine.dispose()

        assert main(["status", str(tmp_path / "m"), "--db", url]) == 0
        assert not exists()
        assert main(["apply", str(tmp_path / "m"), "--db", url]) == 0
        assert exists()
