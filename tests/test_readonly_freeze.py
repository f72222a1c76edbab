"""ReadOnlyFreeze: the lease row plus MariaDB's read_only, thawed by a server event.

The server is shared with other tests: every fixture restores what it changed (read_only
OFF, the thaw events dropped, the event scheduler as it was, the users it made dropped).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.backends.sqlalchemy import SqlAlchemyStorage
from lupo_migrate.backends.sqlalchemy.readonly import ReadOnlyFreeze, read_only_event_name
from lupo_migrate.core.clock import shown
from lupo_migrate.errors import ConfigurationError, InvalidArgumentError, LockHeldError
from lupo_migrate.testing import check_freeze

#: MySQL's error for a statement read_only forbids (ER_OPTION_PREVENTS_STATEMENT).
READ_ONLY_REFUSAL = 1290


def _global(conn: sa.Connection, name: str) -> str:
    return str(conn.exec_driver_sql(f"SELECT @@GLOBAL.{name}").scalar()).upper()


def _read_only(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return _global(conn, "read_only") in ("1", "ON")


def _thaw_event_at(engine: sa.Engine, target: str, schema: str | None = None) -> datetime | None:
    """When *target*'s thaw event (in *schema*, default the connection's database) is
    scheduled to run (server time), or None if it is gone."""
    with engine.connect() as conn:
        at = conn.execute(
            sa.text(
                "SELECT EXECUTE_AT FROM information_schema.EVENTS"
                " WHERE EVENT_SCHEMA = COALESCE(:schema, DATABASE()) AND EVENT_NAME = :name"
            ),
            {"name": read_only_event_name(target), "schema": schema},
        ).scalar()
    return at if isinstance(at, datetime) else None


def _insert(engine: sa.Engine, text: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO notes (text) VALUES (:text)"), {"text": text})


def _refused_code(engine: sa.Engine) -> int | None:
    """The MySQL error number of an INSERT by *engine*'s user, or None if it succeeded."""
    try:
        _insert(engine, "from the application")
    except sa.exc.OperationalError as error:
        return int(error.orig.args[0])
    return None


@pytest.fixture(name="engine")
def _engine(mariadb_url: str) -> Iterator[sa.Engine]:
    """A fresh MariaDB database with the orchestration tables and a ``notes`` table, the event
    scheduler ON; afterwards read_only is OFF, the events gone, the scheduler as it was."""
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        scheduler = _global(conn, "event_scheduler")
        if scheduler == "DISABLED":
            message = "the MariaDB event scheduler is DISABLED at server start"
            if os.environ.get("CI"):
                pytest.fail(f"{message} (CI must run these tests: start it with it OFF or ON)")
            pytest.skip(message)
        conn.exec_driver_sql("SET GLOBAL event_scheduler = ON")
    try:
        SqlAlchemyStorage(engine).ensure_schema()
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, text TEXT)"
            )
        yield engine
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET GLOBAL read_only = OFF")
            events = conn.exec_driver_sql(
                "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"
            )
            for (name,) in events.all():
                conn.exec_driver_sql(f"DROP EVENT IF EXISTS `{name}`")
            conn.exec_driver_sql(f"SET GLOBAL event_scheduler = {scheduler}")
        engine.dispose()


@pytest.fixture(name="application")
def _application(engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine connected as an ordinary user (no SUPER, no READ_ONLY ADMIN) with every
    privilege on the test database: read_only applies to it. The user is dropped afterwards."""
    database = engine.url.database
    user, password = f"lupo_ro_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    accounts = [f"'{user}'@'%%'", f"'{user}'@'localhost'"]
    with engine.begin() as conn:
        for account in accounts:
            conn.exec_driver_sql(f"CREATE USER {account} IDENTIFIED BY '{password}'")
            conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{database}`.* TO {account}")
    application = sa.create_engine(
        engine.url.set(username=user, password=password), poolclass=NullPool
    )
    try:
        yield application
    finally:
        application.dispose()
        with engine.begin() as conn:
            for account in accounts:
                conn.exec_driver_sql(f"DROP USER IF EXISTS {account}")


@pytest.mark.mariadb
class TestReadOnlyFreeze:
    def test_the_freeze_contract(self, engine: sa.Engine) -> None:
        """check_freeze passes: the lease judges expiry by the clock, the server follows."""
        check_freeze(lambda clock: ReadOnlyFreeze(engine, uuid.uuid4().hex, clock=clock))

    def test_an_ordinary_user_is_refused_while_frozen_and_writes_after_the_thaw(
        self, engine: sa.Engine, application: sa.Engine
    ) -> None:
        """The server refuses the application's INSERT with error 1290 until the thaw."""
        gate = ReadOnlyFreeze(engine, "app")
        gate.freeze("run-1", ttl=timedelta(minutes=5))
        assert _read_only(engine)
        assert _thaw_event_at(engine, "app") is not None
        assert _refused_code(application) == READ_ONLY_REFUSAL
        _insert(engine, "from the orchestrator")  # a privileged user keeps writing
        gate.thaw("someone-else")
        assert _read_only(engine), "another owner's thaw must leave read_only ON"
        gate.thaw("run-1")
        assert not _read_only(engine)
        assert _thaw_event_at(engine, "app") is None
        assert _refused_code(application) is None
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM notes").scalar() == 2

    def test_a_killed_orchestrator_is_thawed_by_the_server_when_the_lease_expires(
        self, engine: sa.Engine, application: sa.Engine
    ) -> None:
        """A process freezes for 2 s and is killed (-9): the server event lifts read_only."""
        script = (
            "import os, signal, sqlalchemy as sa\n"
            "from datetime import timedelta\n"
            "from lupo_migrate.backends.sqlalchemy.readonly import ReadOnlyFreeze\n"
            "url = sa.make_url(os.environ['LUPO_TEST_URL'])\n"
            "gate = ReadOnlyFreeze(sa.create_engine(url), 'killed')\n"
            "gate.freeze('doomed', ttl=timedelta(seconds=2))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        url = engine.url.render_as_string(hide_password=False)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "LUPO_TEST_URL": url}, check=False
        )
        assert done.returncode == -9
        assert _read_only(engine), "the killed process's freeze is in force"
        assert _refused_code(application) == READ_ONLY_REFUSAL
        while _read_only(engine):
            assert time.monotonic() - started < 8, "the thaw event did not lift read_only"
            time.sleep(0.1)
        assert time.monotonic() - started >= 2, "read_only was lifted before the lease's end"
        assert _refused_code(application) is None

    def test_freezing_is_refused_while_the_event_scheduler_is_off(self, engine: sa.Engine) -> None:
        """Nothing is frozen without a guaranteed thaw, unless enable_scheduler turns it on."""
        with engine.begin() as conn:
            conn.exec_driver_sql("SET GLOBAL event_scheduler = OFF")
        gate = ReadOnlyFreeze(engine, "app")
        with pytest.raises(ConfigurationError, match="is OFF, so the thaw") as refused:
            gate.freeze("run-1", ttl=timedelta(minutes=5))
        assert "SET GLOBAL event_scheduler = ON" in str(refused.value)
        assert "event_scheduler=ON under [mysqld] in my.cnf" in str(refused.value)
        assert gate.status() is None
        assert not _read_only(engine)
        assert _thaw_event_at(engine, "app") is None
        enabling = ReadOnlyFreeze(engine, "app", enable_scheduler=True)
        assert enabling.freeze("run-1", ttl=timedelta(minutes=5)).owner == "run-1"
        with engine.connect() as conn:
            assert _global(conn, "event_scheduler") == "ON"
        assert _read_only(engine)
        enabling.thaw("run-1")
        assert not _read_only(engine)

    def test_an_emergency_thaw_lifts_read_only_and_is_recorded_as_an_override(
        self, engine: sa.Engine
    ) -> None:
        """The alert names the operator, the reason and the freeze that was lifted."""
        gate = ReadOnlyFreeze(engine, "app")
        info = gate.freeze("host-a:1", ttl=timedelta(minutes=5))
        assert gate.emergency_thaw("ops", "host-a is gone") == info
        assert not _read_only(engine)
        assert _thaw_event_at(engine, "app") is None
        assert gate.status() is None
        with engine.connect() as conn:
            level, message = conn.exec_driver_sql(
                "SELECT level, message FROM migration_alerts ORDER BY id DESC"
            ).one()
        assert level == "override"
        assert message == (
            "emergency thaw of target app by ops: host-a is gone (lifted the freeze of"
            f" host-a:1 since {shown(info.since)})"
        )

    def test_re_freezing_moves_the_thaw_event_and_another_owner_moves_nothing(
        self, engine: sa.Engine
    ) -> None:
        """The owner's renewal extends the lease and the event; a refused owner changes none."""
        gate = ReadOnlyFreeze(engine, "app")
        gate.freeze("run-1", ttl=timedelta(minutes=1))
        first = _thaw_event_at(engine, "app")
        gate.freeze("run-1", ttl=timedelta(hours=1))
        moved = _thaw_event_at(engine, "app")
        assert first is not None
        assert moved is not None
        assert moved - first >= timedelta(minutes=58)
        with pytest.raises(LockHeldError, match="frozen by run-1"):
            ReadOnlyFreeze(engine, "app").freeze("run-2", ttl=timedelta(seconds=5))
        assert _thaw_event_at(engine, "app") == moved
        assert _read_only(engine)

    def test_status_lifts_read_only_once_the_lease_is_over(self, engine: sa.Engine) -> None:
        """The lease expired by the clock while the event is pending: status sets OFF."""
        clock = ManualClock()
        gate = ReadOnlyFreeze(engine, "app", clock=clock)
        info = gate.freeze("run-1", ttl=timedelta(minutes=10))
        assert gate.status() == info
        assert _read_only(engine)
        clock.advance(timedelta(minutes=11))
        assert _read_only(engine), "the event runs by the server's clock: still pending"
        assert gate.status() is None
        assert not _read_only(engine)
        assert _thaw_event_at(engine, "app") is not None, "status leaves the event to itself"
        gate.thaw("run-1")
        assert _thaw_event_at(engine, "app") is None

    def test_a_user_who_may_not_set_read_only_is_told_which_privileges_it_needs(
        self, application: sa.Engine
    ) -> None:
        """An ordinary user cannot freeze the server: a ConfigurationError, read_only stays OFF."""
        SqlAlchemyStorage(application).ensure_schema()
        with pytest.raises(ConfigurationError, match="needs SUPER") as refused:
            ReadOnlyFreeze(application, "app").freeze("run-1", ttl=timedelta(minutes=5))
        assert "Access denied" in str(refused.value)
        assert not _read_only(application)

    def test_a_server_url_without_a_database_is_refused_before_anything_is_frozen(
        self, engine: sa.Engine
    ) -> None:
        """The thaw event needs a schema: from schema= or the server URL's database."""
        server = sa.create_engine(engine.url.set(database=""), poolclass=NullPool)
        gate = ReadOnlyFreeze(engine, "app", server_engine=server)
        with pytest.raises(ConfigurationError, match="names no database"):
            gate.freeze("run-1", ttl=timedelta(minutes=5))
        assert gate.lease.status() is None
        assert not _read_only(engine)
        database = engine.url.database
        gate = ReadOnlyFreeze(engine, "app", server_engine=server, schema=database)
        gate.freeze("run-1", ttl=timedelta(minutes=5))
        assert _thaw_event_at(engine, "app") is not None
        gate.thaw("run-1")
        assert not _read_only(engine)
        server.dispose()


def test_other_dialects_are_refused_by_name(tmp_path: object) -> None:
    """read_only and events are MySQL/MariaDB's: SQLite is refused, naming its dialect."""
    sqlite = sa.create_engine(f"sqlite:///{tmp_path}/o.db")
    with pytest.raises(InvalidArgumentError, match="got the sqlite dialect"):
        ReadOnlyFreeze(sqlite, "app")
    with pytest.raises(InvalidArgumentError, match="needs an Engine"):
        ReadOnlyFreeze(sqlite, server_engine="mysql://nowhere")  # type: ignore[arg-type]
    sqlite.dispose()


def test_event_names_are_per_target_and_within_the_64_character_limit() -> None:
    """Two targets, two names; a long target still fits."""
    names = {read_only_event_name(target) for target in ("a", "b", "x" * 500)}
    assert len(names) == 3
    assert all(name.startswith("lupo_thaw_") and len(name) <= 64 for name in names)


def test_a_ttl_that_is_not_a_positive_timedelta_is_refused_before_the_server_is_asked() -> None:
    """The engine points nowhere: the refusal comes before any connection."""
    nowhere = sa.create_engine("mysql+pymysql://nobody@127.0.0.1:9/none")
    gate = ReadOnlyFreeze(nowhere, "app")
    for ttl in (timedelta(0), timedelta(seconds=-1), 60):
        with pytest.raises(InvalidArgumentError, match="ttl must be a positive timedelta"):
            gate.freeze("run-1", ttl=ttl)  # type: ignore[arg-type]
    nowhere.dispose()


@pytest.mark.mariadb
def test_a_run_with_freeze_read_only_holds_the_application_back_and_thaws_after(
    engine: sa.Engine,
    application: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``freeze = "read_only"`` (here from the environment): while the run works the
    application's writes are refused by the server; after it, read_only is OFF, the thaw
    event gone, and the application writes again."""
    from lupo_migrate.cli import main

    url = engine.url.render_as_string(hide_password=False)
    # The command keeps its tables (and its thaw event) in <database>_lupo_orchestration;
    # the fixture's copy in the core database would be taken for an earlier version's.
    with engine.begin() as conn:
        for table in SqlAlchemyStorage(engine).tables.all:
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    (migrations / "V2__b.sql").write_text("CREATE TABLE b (id INT);\n")
    seen: list[int | None] = []
    monkeypatch.setenv("LUPO_MIGRATE_FREEZE", "read_only")
    from lupo_migrate.run import step as _stepping

    original = _stepping.apply_step

    def watched(*args: Any) -> Any:
        seen.append(_refused_code(application))  # before each step
        return original(*args)

    monkeypatch.setattr(_stepping, "apply_step", watched)
    assert main(["apply", str(migrations), "--db", url]) == 0, capsys.readouterr()
    assert seen == [READ_ONLY_REFUSAL, READ_ONLY_REFUSAL]
    assert not _read_only(engine)
    orchestration = f"{engine.url.database}_lupo_orchestration"
    assert _thaw_event_at(engine, "default", orchestration) is None
    assert _refused_code(application) is None


def test_freeze_read_only_on_sqlite_is_refused_with_what_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lupo_migrate.cli import main

    (tmp_path / "m").mkdir()
    monkeypatch.setenv("LUPO_MIGRATE_FREEZE", "read_only")
    code = main(["status", str(tmp_path / "m"), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert code == 12
    assert (
        'freeze = read_only needs a MySQL or MariaDB target, got sqlite; use freeze = "lease"'
        in (capsys.readouterr().err)
    )
    for made in tmp_path.glob("*.db"):  # refused before anything was written
        engine = sa.create_engine(f"sqlite:///{made}")
        assert sa.inspect(engine).get_table_names() == [], made
        engine.dispose()
