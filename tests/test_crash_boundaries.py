"""Kill -9 at every effect boundary of a 10-file run, then ``recover`` (back to where the run
began) or ``recover --resume`` (on to where it would have ended), chosen at random."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate.cli import main
from test_recover import TEN_STEPS, _prepare, _wait_gone
from test_rollback_verified import _run, _same, _state

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

KILLER = Path(__file__).with_name("_killer.py")


def _killer(*argv: str) -> subprocess.CompletedProcess[str]:
    """``tests/_killer.py`` with *argv* (mode, boundary, apply's arguments...), to its end."""
    return subprocess.run(
        [sys.executable, str(KILLER), *argv], capture_output=True, text=True, timeout=60
    )


TEN = {f"V{n:02d}__s.sql": text for n, text in enumerate(TEN_STEPS, start=1)}


def _held(url: str, orch: str) -> tuple[object, object]:
    """Who holds the run lock and the write freeze, as their row says."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                f"SELECT lock_holder, freeze_owner FROM `{orch}`.migration_system_state"
                " WHERE target = 'default'"
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1]


def _last_run(capsys: pytest.CaptureFixture[str], args: list[str]) -> list[str]:
    assert main(["history", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line for line in lines if not line.startswith(" ")][-1].split()


def _back_to_the_start(
    capsys: pytest.CaptureFixture[str], args: list[str], why: object = None
) -> None:
    """Roll back the last run if it completed (a resumed run, or one that ended before the
    kill): the next kill starts from the same place."""
    run = _last_run(capsys, args)
    if run[1] == "completed":
        assert main(["rollback", run[0], *args]) == 0, (why, capsys.readouterr())
        capsys.readouterr()


def test_kill_at_every_effect_boundary_then_recover_or_resume(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each transition persisted (before its effects), each statement about to be sent (its
    intent journalled) and each statement that ran (before its done mark): the process dies
    there; recover gives exactly the pre-run state, recover --resume exactly the completed
    state; lock and freeze are free afterwards; history says what happened."""
    seed = int(os.environ.get("LUPO_KILL_SEED", time.time()))
    rng = random.Random(seed)
    before, args, orch = _prepare(mariadb_url, tmp_path, TEN)
    try:
        assert main(["apply", *args]) == 0
        completed = _state(mariadb_url)
        _back_to_the_start(capsys, args)
        _same(_state(mariadb_url), before, "rollback of the reference run")
        kills = 0
        for mode in ("event", "before", "after"):
            at = 0
            while True:
                why = (seed, mode, at)
                process = _killer(mode, str(at), *args)
                if process.returncode == 3:  # the run ended before that boundary
                    _back_to_the_start(capsys, args)
                    break
                assert process.returncode == -9, (why, process.stderr)
                kills += 1
                at += 1
                _wait_gone(mariadb_url, orch)
                resume = rng.random() < 0.5
                code = main(["recover", *args, *(["--resume"] if resume else [])])
                out, err = capsys.readouterr()
                if "no run had died" in out:  # died after freezing, before recording its run
                    assert code == 0, (why, out, err)
                    continue
                if code == 13:  # died after the run ended: nothing to recover
                    assert _last_run(capsys, args)[1] == "completed", why
                    _same(_state(mariadb_url), completed, why)
                    _back_to_the_start(capsys, args, why)
                    continue
                assert code == 0, (why, resume, out, err)
                expected = "completed (10 step(s) applied)" if resume else "rolled_back"
                assert f"recovered, {expected}" in out, (why, out, err)
                _same(_state(mariadb_url), completed if resume else before, (why, resume))
                assert _held(mariadb_url, orch) == (None, None), why  # lock, freeze
                assert main(["status", *args]) == 0
                out, err = capsys.readouterr()
                assert "writes frozen" not in out, why
                assert err == "", why
                assert main(["history", *args]) == 0
                history = capsys.readouterr().out
                assert "died in" in history, (why, history)
                _back_to_the_start(capsys, args, (why, resume))
                _same(_state(mariadb_url), before, (why, "after rolling back the resumed run"))
        print(f"{kills} kills, seed {seed}")  # shown with -s
        assert kills >= 30, f"only {kills} kills (seed {seed})"
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_a_run_killed_while_it_rolls_back_is_rolled_back_to_the_end_by_recover(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last step fails, the run rolls back, and dies doing so (before, then after, each
    undo statement): recover (with --resume too) goes on rolling back; the pre-run state."""
    files = {
        "V1__t.sql": "CREATE TABLE k1 (id INT PRIMARY KEY);\n",
        "V2__c.sql": "ALTER TABLE old ADD COLUMN k2 INT DEFAULT 2;\n",
        "V3__bad.sql": "INSERT INTO no_such_table VALUES (1);\n",
    }
    before, args, orch = _prepare(mariadb_url, tmp_path, files)
    try:
        # Statements 0 and 1 apply; the third fails (not counted), so the two undos are 2
        # and 3: killed after the first, before the second, after the second.
        for mode, at in (("after", 2), ("before", 3), ("after", 3)):
            why = (mode, at)
            process = _killer(mode, str(at), *args)
            assert process.returncode == -9, (why, process.stderr)
            _wait_gone(mariadb_url, orch)
            assert main(["status", *args]) == 0
            assert "died in rolling_back" in capsys.readouterr().err, why
            resume = at == 3  # either way it goes on rolling back
            code = main(["recover", *args, *(["--resume"] if resume else [])])
            out, err = capsys.readouterr()
            assert code == 0, (why, out, err)
            assert "recovered, rolled_back" in out, (why, out, err)
            _same(_state(mariadb_url), before, why)
            assert _held(mariadb_url, orch) == (None, None), why
            assert main(["history", *args]) == 0
            assert "goes on rolling it back" in capsys.readouterr().out, why
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_an_operators_rollback_killed_midway_is_finished_by_recover_and_decided(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rollback RUN`` dies (-9) after its first undo statement: ``recover`` undoes the rest,
    the schema and rows are as before the run, and the run's decisions read rolled back
    (``decisions --all``), so it can be neither accepted nor rolled back again."""
    files = {
        "V1__t.sql": "CREATE TABLE k1 (id INT PRIMARY KEY);\n",
        "V2__c.sql": "ALTER TABLE old ADD COLUMN k2 INT DEFAULT 2;\n",
        "V3__r.sql": "INSERT INTO old (id, v, note) VALUES (4, 4, 'd');\n",
    }
    before, args, orch = _prepare(mariadb_url, tmp_path, files)
    try:
        assert main(["apply", *args]) == 0
        run_id = capsys.readouterr().out.split()[1].rstrip(":")
        process = _killer("after", "0", *args, "--rollback", run_id)
        assert process.returncode == -9, process.stderr
        _wait_gone(mariadb_url, orch)
        assert main(["status", *args]) == 0
        assert "died in rolling_back" in capsys.readouterr().err
        assert main(["recover", *args, "--operator", "night shift"]) == 0
        out, err = capsys.readouterr()
        assert "recovered, rolled_back" in out, (out, err)
        _same(_state(mariadb_url), before, "recovered")
        assert _held(mariadb_url, orch) == (None, None)
        assert main(["decisions", "--all", *args]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert [(r[0], r[1], r[2]) for r in rows] == [(run_id, "run", "rolled_back")]
        assert main(["accept", run_id, *args]) != 0
        assert "no open decision" in capsys.readouterr().err
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")
