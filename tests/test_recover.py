"""Crash safety: a run killed (-9) in the middle is reported and recovered to where it began."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lupo_migrate.cli import main
from test_rollback_verified import _run, _same, _state

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

FILES = {
    "V1__new.sql": "CREATE TABLE fresh (id INT PRIMARY KEY, v INT);\n"
    "INSERT INTO fresh VALUES (1, 1), (2, 2);\n",
    "V2__change.sql": "ALTER TABLE old ADD COLUMN extra INT DEFAULT 7;\n"
    "UPDATE old SET v = v * 10 WHERE id > 0;\nDELETE FROM old WHERE id = 3;\n",
    "V3__long.sql": "ALTER TABLE old DROP COLUMN note;\nSELECT SLEEP(30);\n",
    "V4__never.sql": "CREATE TABLE never (id INT);\n",
}


def _wait_for(url: str, text: str, process: subprocess.Popen[Any]) -> None:
    """Until the server runs a statement containing *text* (the run is inside it)."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with engine.connect() as conn:
                found = conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM information_schema.processlist"
                    " WHERE info LIKE %s AND info NOT LIKE %s",
                    (f"%{text}%", "%processlist%"),
                ).scalar()
            if found:
                return
            time.sleep(0.05)
        raise AssertionError(f"the run never reached {text!r}")
    finally:
        engine.dispose()


def _wait_gone(url: str, orch: str) -> None:
    """Until the server has let go of the killed process's lock connection (it notices the
    closed socket a moment after the kill; until then the lock still looks held)."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 10
    try:
        with engine.connect() as conn:
            token = conn.exec_driver_sql(
                f"SELECT lock_token FROM `{orch}`.migration_system_state"
                " WHERE lock_token IS NOT NULL"
            ).scalar()
        if token is None:
            return
        ident = int(str(token).split("/")[0])
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if not conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s", (ident,)
                ).scalar():
                    return
            time.sleep(0.02)
    except sa.exc.ProgrammingError:
        return  # no orchestration tables yet: killed before it made them
    finally:
        engine.dispose()


def _apply_until(url: str, args: list[str], text: str) -> subprocess.Popen[str]:
    """``lupo-migrate apply`` in a process of its own, once the server runs *text*."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lupo_migrate", "apply", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(url, text, process)
    return process


def _prepare(url: str, tmp_path: Path, files: dict[str, str]) -> tuple[Any, list[str], str]:
    """A table with rows, the migration files, and the command-line arguments."""
    orch = f"{sa.make_url(url).database}_orch"
    _run(
        url,
        "CREATE TABLE old (id INT PRIMARY KEY, v INT, note VARCHAR(20))",
        "INSERT INTO old VALUES (1, 1, 'a'), (2, 2, NULL), (3, 3, 'c')",
    )
    migrations = tmp_path / "m"
    migrations.mkdir()
    for name, text in files.items():
        (migrations / name).write_text(text)
    return _state(url), [str(migrations), "--db", url, "--orchestration-schema", orch], orch


def test_a_run_killed_in_a_long_statement_is_reported_and_recovered(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, args, orch = _prepare(mariadb_url, tmp_path, FILES)
    try:
        process = _apply_until(mariadb_url, args, "SLEEP(30)")
        process.kill()  # a no-op once the process has ended and been reaped
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        _wait_gone(mariadb_url, orch)

        assert main(["status", *args]) == 0
        out, err = capsys.readouterr()
        assert "died in migrating at step V3__long; `lupo-migrate recover` rolls it back" in err
        assert main(["apply", *args]) == 4  # refused until recovered
        assert "`lupo-migrate recover` rolls it back" in capsys.readouterr().err

        assert main(["recover", *args, "--operator", "ops"]) == 0
        out, err = capsys.readouterr()
        assert "recovered, rolled_back" in out, err
        _same(_state(mariadb_url), before)
        assert main(["status", *args]) == 0
        out, err = capsys.readouterr()
        assert "writes frozen" not in out  # the dead run's freeze was lifted, ours thawed
        assert err == ""
        assert main(["history", *args]) == 0
        assert "rolled_back  class A  0/4 step(s)" in capsys.readouterr().out
        assert main(["apply", *args, "--upto", "V2__change"]) == 0  # the target works again
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


# With test_crash_boundaries' kills at every effect boundary, over 30 kills per CI run.
KILLS = 15 if os.environ.get("CI") else 6

#: A 10-file plan: every kind of change, one step of two statements.
TEN_STEPS = [
    "CREATE TABLE k1 (id INT PRIMARY KEY, v INT);\nINSERT INTO k1 VALUES (1, 1);\n",
    "UPDATE old SET v = v + 1 WHERE id > 0;\n",
    "ALTER TABLE old ADD COLUMN k3 INT DEFAULT 3;\n",
    "DELETE FROM old WHERE id = 2;\n",
    "CREATE INDEX ix_old_v ON old (v);\n",
    "ALTER TABLE old MODIFY COLUMN note VARCHAR(40) NULL;\n",
    "RENAME TABLE k1 TO k7;\n",
    "INSERT INTO old (id, v) VALUES (9, 9);\n",
    "ALTER TABLE old DROP COLUMN note;\nUPDATE old SET k3 = k3 + v WHERE id > 0;\n",
    "DROP TABLE k7;\n",
]

TEN = {
    f"V{n:02d}__s.sql": text + "SELECT SLEEP(0.04);\n" for n, text in enumerate(TEN_STEPS, start=1)
}


def test_kills_at_random_moments_always_end_where_the_run_began(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply of a 10-file plan killed (-9) at a random moment, again and again: recover (or,
    when the run had finished, rollback RUN) gives back the pre-run schema and rows every
    time, with the lock and the freeze free."""
    import random

    seed = int(os.environ.get("LUPO_KILL_SEED", time.time()))
    rng = random.Random(seed)
    before, args, orch = _prepare(mariadb_url, tmp_path, TEN)
    mid_run = attempts = 0
    try:
        while mid_run < KILLS and attempts < 4 * KILLS:
            attempts += 1
            process = subprocess.Popen(
                [sys.executable, "-m", "lupo_migrate", "apply", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                _wait_for(mariadb_url, "SLEEP(0.04)", process)  # the run is migrating
            except AssertionError:
                if process.poll() is None:
                    raise  # never got there; else it ended first (handled below)
            time.sleep(rng.uniform(0.0, 0.6))
            process.kill()  # a no-op once the process has ended and been reaped
            process.wait(timeout=10)
            _wait_gone(mariadb_url, orch)
            code = main(["recover", *args])
            out, err = capsys.readouterr()
            if code == 0 and "recovered" in out:
                mid_run += 1
                assert "recovered, rolled_back" in out, (seed, attempts, out, err)
            else:
                # No run had died: killed before its run was recorded (the freeze it left was
                # lifted), or after the run ended (completed; its freeze maybe left too).
                assert code in (0, 13), (seed, attempts, out, err)
                assert main(["history", *args]) == 0
                runs = [
                    line
                    for line in capsys.readouterr().out.splitlines()
                    if not line.startswith(" ")  # a recovered run's note
                ]
                if runs and "completed" in runs[-1]:  # the run finished before the kill
                    assert main(["rollback", runs[-1].split()[0], *args]) == 0
                    capsys.readouterr()
            _same(_state(mariadb_url), before, (seed, attempts))
            code = main(["status", *args])
            out, err = capsys.readouterr()
            assert code == 0, (seed, attempts, out, err)
            assert "0 applied, 10 pending" in out, (seed, attempts, out)
            assert "writes frozen" not in out, (seed, attempts, out)
            assert err == "", (seed, attempts, err)
        assert mid_run >= KILLS, f"only {mid_run} of {attempts} kills landed mid-run (seed {seed})"
    except Exception as failed:  # every failure names the seed that replays it
        raise AssertionError(f"LUPO_KILL_SEED={seed} (attempt {attempts}): {failed}") from failed
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_a_run_whose_lock_connection_is_killed_stops_and_is_recovered(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KILL of the lock's dedicated connection mid-run: no further step runs; recover works."""
    files = {
        f"V{n}__t{n}.sql": f"CREATE TABLE t{n} (id INT);\n"
        f"UPDATE old SET v = v + {n} WHERE id > 0;\nDO SLEEP(0.3);\n"
        for n in range(1, 7)
    }
    before, args, orch = _prepare(mariadb_url, tmp_path, files)
    try:
        process = _apply_until(mariadb_url, args, "SLEEP(0.3)")
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as conn:
            token = conn.exec_driver_sql(
                f"SELECT lock_token FROM `{orch}`.migration_system_state"
                " WHERE lock_token IS NOT NULL"
            ).scalar_one()
            conn.exec_driver_sql(f"KILL {int(str(token).split('/')[0])}")
            running = conn.exec_driver_sql("SHOW TABLES LIKE 't%%'").scalars().all()
        code = process.wait(timeout=30)
        _, err = process.communicate()
        with engine.connect() as conn:
            left = conn.exec_driver_sql("SHOW TABLES LIKE 't%%'").scalars().all()
        engine.dispose()
        assert code == 9, err  # LockError
        assert "lost its run lock before step" in err
        assert len(left) <= len(running) + 1, (running, left)  # at most the step in flight
        assert "t6" not in left
        assert main(["recover", *args]) == 0
        assert "recovered, rolled_back" in capsys.readouterr().out
        _same(_state(mariadb_url), before)
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_a_run_lock_held_without_heartbeats_is_reported_hung_by_every_command(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock is held (its connection alive) but its last heartbeat is two minutes old:
    status, history and apply say the run hangs, and what to do."""
    from datetime import UTC, datetime, timedelta

    from lupo_migrate.backends.memory import ManualClock
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock

    _, args, orch = _prepare(mariadb_url, tmp_path, {"V1__a.sql": "CREATE TABLE a (id INT);\n"})
    engine = sa.create_engine(mariadb_url)
    try:
        assert main(["status", *args]) == 0  # the orchestration tables exist
        capsys.readouterr()
        past = ManualClock(datetime.now(UTC) - timedelta(minutes=2))
        lock = SqlAlchemyLock(engine, "lupo_migrate:default", clock=past, schema=orch)
        with lock.acquire("stuck-host:42"):
            for command in ("status", "history"):
                assert main([command, *args]) == 0
                err = capsys.readouterr().err
                assert "held by stuck-host:42" in err, err
                assert "that run hangs" in err
            assert main(["apply", *args]) == 10  # and the lock refuses a new run
            assert "stuck-host:42" in capsys.readouterr().err
        assert main(["status", *args]) == 0
        assert "hangs" not in capsys.readouterr().err  # released: nothing to say
    finally:
        engine.dispose()
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_recover_waits_for_a_statement_the_dead_run_left_running(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    """Killed as a 3 s ALTER (a copy of 2 million rows) starts: the server goes on with it
    after its client died (MariaDB gives up on a dead client's statement only when it notices,
    seconds later; MySQL never does). recover waits until that session has ended (the step
    connection's statement lock goes with it) before it reads the schema: so it sees the
    column the ALTER added and undoes it. Read at once, the column was not there yet: the
    run was rolled back without it, and the ALTER then finished, leaving it behind."""
    files = {
        "V1__k.sql": "CREATE TABLE k1 (id INT PRIMARY KEY);\n",
        "V2__big.sql": "ALTER TABLE big ADD COLUMN late INT, ALGORITHM=COPY;\n"
        "-- lupo:down\nALTER TABLE big DROP COLUMN late;\n",
    }
    _run(
        mariadb_url,
        "CREATE TABLE big (id INT PRIMARY KEY, v INT, note VARCHAR(40))",
        "INSERT INTO big SELECT seq, seq, REPEAT('x', 30) FROM seq_1_to_2000000",
    )
    before, args, orch = _prepare(mariadb_url, tmp_path, files)
    try:
        process = _apply_until(mariadb_url, args, "ADD COLUMN late")
        process.kill()  # a no-op once the process has ended and been reaped
        process.wait(timeout=10)
        _wait_gone(mariadb_url, orch)
        assert main(["status", *args]) == 0
        err = capsys.readouterr().err
        assert "died in migrating at step V2__big" in err
        assert "its last statement still runs on the server (session" in err
        assert main(["recover", *args, "--wait", "0"]) == 10  # not waiting: it says so
        err = capsys.readouterr().err
        assert "still runs on session" in err
        assert "ADD COLUMN late" in err
        assert "then recover again" in err
        with caplog.at_level("WARNING", logger="lupo_migrate"):
            code = main(["recover", *args])
        out, err = capsys.readouterr()
        assert code == 0, (out, err)
        assert "recovered, rolled_back" in out
        waits = [r.args[0] for r in caplog.records if r.getMessage().startswith("waited")]
        assert waits, caplog.records
        _same(_state(mariadb_url), before)
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_a_statement_still_running_is_named_and_holds_off_new_steps(mariadb_url: str) -> None:
    """While another session holds the statement lock (a dead run's statement still runs):
    waiting gives up naming that session, its statement and how long it has run, and no
    step session starts; once it ends, both go on."""
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget, make_engine
    from lupo_migrate.errors import StillRunningError

    engine = make_engine(mariadb_url)
    target = SqlAlchemyTarget(engine, statement_lock="lupo_test:statements")
    orphan = engine.connect()
    try:
        orphan.exec_driver_sql("SELECT GET_LOCK('lupo_test:statements', 0)")
        session = orphan.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        running = threading.Thread(target=orphan.exec_driver_sql, args=("DO SLEEP(2)",))
        running.start()
        time.sleep(0.3)
        assert target.dead_statement() == session
        with pytest.raises(StillRunningError) as info:
            target.await_dead_statements(0.5)
        assert info.value.session == session
        assert "SLEEP(2)" in (info.value.statement or "")
        assert f"KILL {session}" in str(info.value)
        assert info.value.exit_code == 10
        with pytest.raises(StillRunningError), target.step_session():
            pass  # not reached: the step connection cannot take the lock
        running.join()
        orphan.exec_driver_sql("DO RELEASE_LOCK('lupo_test:statements')")
        assert target.await_dead_statements(1.0) < 1.0
        with target.step_session():
            assert target.dead_statement() is None  # our own hold does not count
        target.flush()
        assert target.dead_statement() is None  # released with the step connection
    finally:
        orphan.close()
        engine.dispose()


def test_an_embedded_orchestrator_names_the_statement_lock_after_its_run_lock(
    mariadb_url: str, tmp_path: Path
) -> None:
    """A target built directly (as a host application embeds lupo_migrate) gets a statement
    lock from the orchestrator, named after its run lock: its step connection holds it while
    steps run, so recover can wait for a dead run's statement. One given is kept."""
    from lupo_migrate import HandlerRegistry, Orchestrator
    from lupo_migrate.backends.memory import InMemoryFreeze, SystemClock
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock, SqlAlchemyStorage
    from lupo_migrate.backends.sqlalchemy.lock import mysql_lock_name
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget, make_engine
    from lupo_migrate.handlers import DoctrineHandler

    engine = make_engine(mariadb_url)
    clock = SystemClock()
    registry = HandlerRegistry()
    registry.register(DoctrineHandler(root=tmp_path))

    def build(target: SqlAlchemyTarget, name: str) -> Orchestrator:
        return Orchestrator(
            storage=SqlAlchemyStorage(engine),
            lock=SqlAlchemyLock(engine, name, clock=clock),
            freeze=InMemoryFreeze(clock),
            clock=clock,
            registry=registry,
            target=target,
            root=tmp_path,
            target_name=name,
        )

    try:
        first, second = SqlAlchemyTarget(engine), SqlAlchemyTarget(engine)
        one, two = build(first, "embed:one"), build(second, "embed:two")
        assert first.statement_lock == mysql_lock_name(f"{one.lock.server_name}:statements")
        assert second.statement_lock not in (None, first.statement_lock)
        with first.step_session() as step, engine.connect() as other:
            mine = step.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            held = other.exec_driver_sql(f"SELECT IS_USED_LOCK('{first.statement_lock}')")
            assert held.scalar() == mine
        first.flush()
        given = SqlAlchemyTarget(engine, statement_lock="host:own")
        build(given, "embed:given")
        assert given.statement_lock == "host:own"
        assert two.target is second
    finally:
        engine.dispose()
