"""The write freeze as a lease row (SQLite, MariaDB, PostgreSQL) and the host-engine guard."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.backends.sqlalchemy import SqlAlchemyFreeze, SqlAlchemyStorage, guard
from lupo_migrate.backends.sqlite_files import sibling_store
from lupo_migrate.cli import main
from lupo_migrate.core.clock import shown
from lupo_migrate.core.model import FreezeInfo
from lupo_migrate.errors import LockHeldError, WritesFrozenError
from lupo_migrate.testing import check_freeze


@pytest.fixture(name="engine")
def _engine(database_url: str) -> sa.Engine:
    engine = sa.create_engine(database_url)
    SqlAlchemyStorage(engine).ensure_schema()
    yield engine  # type: ignore[misc]
    engine.dispose()


def test_the_freeze_contract(engine: sa.Engine) -> None:
    check_freeze(lambda clock: SqlAlchemyFreeze(engine, uuid.uuid4().hex, clock=clock))


def test_another_owner_is_refused_by_name_and_an_emergency_thaw_is_recorded(
    engine: sa.Engine,
) -> None:
    clock = ManualClock()
    gate = SqlAlchemyFreeze(engine, "app", clock=clock)
    info = gate.freeze("host-a:1", ttl=timedelta(minutes=5))
    with pytest.raises(LockHeldError, match="writes are frozen by host-a:1 since"):
        SqlAlchemyFreeze(engine, "app", clock=clock).freeze("host-b:2", ttl=timedelta(minutes=5))
    assert gate.emergency_thaw("ops", "host-a is gone") == info
    with engine.connect() as conn:
        (level, message) = conn.exec_driver_sql(
            "SELECT level, message FROM migration_alerts ORDER BY id DESC"
        ).first() or ("", "")
    assert level == "override"
    assert message == (
        f"emergency thaw of target app by ops: host-a is gone (lifted the freeze of host-a:1"
        f" since {shown(info.since)})"
    )


class TestGuard:
    def _host(self, tmp_path: object) -> sa.Engine:
        host = sa.create_engine(f"sqlite:///{tmp_path}/host.db")
        with host.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        return host

    def test_every_write_is_refused_while_frozen_and_none_is_lost(
        self, engine: sa.Engine, tmp_path: object
    ) -> None:
        gate = SqlAlchemyFreeze(engine, "app")
        host = self._host(tmp_path)
        guard(host, gate)
        gate.freeze("migration-1", ttl=timedelta(minutes=5))
        refused = 0
        for i in range(5):
            try:
                with host.begin() as conn:
                    conn.exec_driver_sql(f"INSERT INTO notes (text) VALUES ('n{i}')")
            except WritesFrozenError as error:
                assert error.owner == "migration-1"
                refused += 1
        with host.connect() as conn:  # reads go on
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM notes").scalar() == 0
        assert refused == 5
        gate.thaw("migration-1")
        with host.begin() as conn:
            conn.exec_driver_sql("INSERT INTO notes (text) VALUES ('after')")
            conn.exec_driver_sql("UPDATE notes SET text = 'x' WHERE id = 1")
        with host.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM notes").scalar() == 1
        host.dispose()

    def test_after_a_kill_during_a_freeze_writes_succeed_within_the_lease(
        self, engine: sa.Engine, database_url: str, tmp_path: object
    ) -> None:
        """A process freezes for 2 s and is killed (-9) before it thaws."""
        script = (
            "import os, signal, sqlalchemy as sa\n"
            "from datetime import timedelta\n"
            "from lupo_migrate.backends.sqlalchemy import SqlAlchemyFreeze\n"
            f"gate = SqlAlchemyFreeze(sa.create_engine({database_url!r}), 'killed')\n"
            "gate.freeze('doomed', ttl=timedelta(seconds=2))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], check=False)
        assert done.returncode == -9
        gate = SqlAlchemyFreeze(engine, "killed")
        host = self._host(tmp_path)
        guard(host, gate)
        with pytest.raises(WritesFrozenError, match="frozen by doomed"), host.begin() as conn:
            conn.exec_driver_sql("INSERT INTO notes (text) VALUES ('too early')")
        while True:
            try:
                with host.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO notes (text) VALUES ('after the lease')")
                break
            except WritesFrozenError:
                assert time.monotonic() - started < 6, "the lease did not expire"
                time.sleep(0.2)
        with host.connect() as conn:
            assert conn.exec_driver_sql("SELECT text FROM notes").scalars().all() == [
                "after the lease"
            ]
        host.dispose()


#: Per engine family: writes that do not start with a write's first word (issue 18), each
#: adding one row to guard_notes when it runs. The first-word guard let all of them through.
HIDDEN_WRITES = {
    "sqlite": [
        "WITH n(t) AS (SELECT 'cte') INSERT INTO guard_notes (text) SELECT t FROM n",
        "/* why */ -- and why not\nINSERT INTO guard_notes (text) VALUES ('comments')",
    ],
    "mysql": [
        "# why\nINSERT INTO guard_notes (text) VALUES ('hash comment')",
        "/*!INSERT INTO guard_notes (text) VALUES ('executable comment') */",
        "/*!50001 INSERT INTO guard_notes (text) VALUES ('versioned comment') */",
        "CALL add_guard_note('call')",
    ],
    "postgresql": [
        "WITH n AS (INSERT INTO guard_notes (text) VALUES ('cte') RETURNING text)"
        " SELECT text FROM n",
        "DO $$ BEGIN INSERT INTO guard_notes (text) VALUES ('do'); END $$",
    ],
}
#: Reads an application keeps making while writes are frozen.
READS = {
    "sqlite": ["PRAGMA table_info(guard_notes)", "WITH n AS (SELECT 1) SELECT * FROM n"],
    "mysql": [
        "SELECT * FROM guard_notes FOR UPDATE",
        "# why\nSELECT 1",
        "/*!40101 SET @saved = @@character_set_client */",
        "SHOW TABLES",
        "WITH n AS (SELECT 1) SELECT * FROM n",
    ],
    "postgresql": [
        "SELECT * FROM guard_notes FOR UPDATE",
        "SHOW search_path",
        "WITH n AS (SELECT 1) SELECT * FROM n",
    ],
}


def test_the_guard_decides_by_what_a_statement_does(engine: sa.Engine, database_url: str) -> None:
    """Writes behind comments, executable comments, CTEs and routines are refused while frozen
    and nothing is written; reads go on; after the thaw the same texts write (they are
    writes)."""
    kind = "mysql" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name
    host = sa.create_engine(database_url)
    with host.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE guard_notes (text VARCHAR(40))")
        if kind == "mysql":
            conn.exec_driver_sql(
                "CREATE PROCEDURE add_guard_note(t VARCHAR(40))"
                " INSERT INTO guard_notes (text) VALUES (t)"
            )
    guard(host, SqlAlchemyFreeze(engine, "app"))
    gate = SqlAlchemyFreeze(engine, "app")
    gate.freeze("migration-1", ttl=timedelta(minutes=5))
    for sql in HIDDEN_WRITES[kind]:
        with pytest.raises(WritesFrozenError, match="frozen by migration-1"), host.begin() as c:
            c.exec_driver_sql(sql)
    with host.begin() as conn:
        for sql in READS[kind]:
            conn.exec_driver_sql(sql)
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM guard_notes").scalar() == 0
    gate.thaw("migration-1")
    for sql in HIDDEN_WRITES[kind]:
        with host.begin() as conn:
            conn.exec_driver_sql(sql)
    with host.connect() as conn:
        written = conn.exec_driver_sql("SELECT COUNT(*) FROM guard_notes").scalar()
    assert written == len(HIDDEN_WRITES[kind])
    host.dispose()


def test_reads_never_ask_the_freeze_and_a_statement_not_understood_does() -> None:
    """The guard reads the freeze only for what is not a read: a read costs no query."""

    class Counting:
        asked = 0

        def status(self) -> FreezeInfo | None:
            Counting.asked += 1
            return FreezeInfo(owner="m", since=20260101000000, expires=20260101000500)

    host = sa.create_engine("sqlite://")
    guard(host, Counting())  # type: ignore[arg-type]
    with host.connect() as conn:
        for sql in ("SELECT 1", "select 2;", "-- c\nSELECT 3", "PRAGMA foreign_keys = ON", ""):
            conn.exec_driver_sql(sql)
        assert Counting.asked == 0
        for sql in ("SELEC 1", "VACUUM", "PRAGMA user_version = 2"):
            with pytest.raises(WritesFrozenError):
                conn.exec_driver_sql(sql)
    assert Counting.asked == 3
    host.dispose()


def test_a_freeze_left_by_a_dead_process_is_shown_thawed_and_lifted_by_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status shows it; thaw --emergency lifts it; a run lifts an orphaned one itself."""
    url = f"sqlite:///{tmp_path}/app.db"
    migrations = str(tmp_path / "m")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    assert main(["status", migrations, "--db", url]) == 0
    store = sa.create_engine(f"sqlite:///{sibling_store(f'{tmp_path}/app.db')}")
    SqlAlchemyFreeze(store, "default").freeze("dead-host:42", ttl=timedelta(minutes=5))
    capsys.readouterr()
    assert main(["status", migrations, "--db", url]) == 0
    assert "writes frozen by dead-host:42 since" in capsys.readouterr().out
    code = main(["thaw", migrations, "--db", url, "--emergency", "--reason", "host gone"])
    assert code == 0
    assert capsys.readouterr().out.startswith("thawed: the freeze of dead-host:42 since")
    # A freeze whose owner died before it recorded a run: the next run lifts it (it holds
    # the run lock, so no live run can own that freeze), and says so in migration_alerts.
    SqlAlchemyFreeze(store, "default").freeze("dead-host:43", ttl=timedelta(minutes=5))
    assert main(["apply", migrations, "--db", url]) == 0
    with store.connect() as conn:
        alerts = [r[0] for r in conn.exec_driver_sql("SELECT message FROM migration_alerts")]
    assert any("orphaned: dead-host:43 froze writes and died" in a for a in alerts), alerts
    store.dispose()
