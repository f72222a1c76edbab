"""Crash safety: a run killed (-9) in the middle is reported and recovered to where it began."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate import diff
from lupo_migrate.cli import main
from test_rollback_verified import _run, _state

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

FILES = {
    "V1__new.sql": "CREATE TABLE fresh (id INT PRIMARY KEY, v INT);\n"
    "INSERT INTO fresh VALUES (1, 1), (2, 2);\n",
    "V2__change.sql": "ALTER TABLE old ADD COLUMN extra INT DEFAULT 7;\n"
    "UPDATE old SET v = v * 10 WHERE id > 0;\nDELETE FROM old WHERE id = 3;\n",
    "V3__long.sql": "ALTER TABLE old DROP COLUMN note;\nSELECT SLEEP(30);\n",
    "V4__never.sql": "CREATE TABLE never (id INT);\n",
}


def _wait_for(url: str, text: str, process: subprocess.Popen[bytes]) -> None:
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


def test_a_run_killed_in_a_long_statement_is_reported_and_recovered(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = sa.make_url(mariadb_url).database
    orch = f"{database}_orch"
    _run(
        mariadb_url,
        "CREATE TABLE old (id INT PRIMARY KEY, v INT, note VARCHAR(20))",
        "INSERT INTO old VALUES (1, 1, 'a'), (2, 2, NULL), (3, 3, 'c')",
    )
    before = _state(mariadb_url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    for name, text in FILES.items():
        (migrations / name).write_text(text)
    args = [str(migrations), "--db", mariadb_url, "--orchestration-schema", orch]
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "lupo_migrate", "apply", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait_for(mariadb_url, "SLEEP(30)", process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL

        assert main(["status", *args]) == 0
        out, err = capsys.readouterr()
        assert "died in migrating at step V3__long; `lupo-migrate recover` rolls it back" in err
        assert main(["apply", *args]) == 4  # refused until recovered
        assert "`lupo-migrate recover` rolls it back" in capsys.readouterr().err

        assert main(["recover", *args, "--operator", "ops"]) == 0
        out, err = capsys.readouterr()
        assert "recovered, rolled_back" in out, err
        after = _state(mariadb_url)
        assert [str(d) for d in diff(before[0], after[0])] == []
        assert after[1] == before[1]
        assert main(["status", *args]) == 0
        out, err = capsys.readouterr()
        assert "writes frozen" not in out  # the dead run's freeze was lifted, ours thawed
        assert err == ""
        assert main(["history", *args]) == 0
        assert "rolled_back  class A  0/4 step(s)" in capsys.readouterr().out
        assert main(["apply", *args, "--upto", "V2__change"]) == 0  # the target works again
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")
