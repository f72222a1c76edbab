"""What users read: messages, help and exit codes say what happened and what to do (issue 19,
points 7 and 10). Each test failed on 1e1146b."""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path

import pytest

from clirun import run
from lupo_migrate import errors

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"


@pytest.fixture(name="applied")
def _applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, str]:
    """The quickstart applied to a SQLite file: (migrations, URL, run id)."""
    migrations = tmp_path / "m"
    shutil.copytree(QUICKSTART, migrations)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    code, out, err = run(capsys, "apply", migrations, "--db", url)
    assert code == 0, (out, err)
    found = re.match(r"run ([0-9a-f]{32}):", out)
    assert found is not None, out
    return migrations, url, found[1]


def test_a_second_rollback_says_the_run_was_rolled_back_already(
    applied: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url, run_id = applied
    assert run(capsys, "rollback", run_id, migrations, "--db", url, "--operator", "ana")[0] == 0
    code, _, err = run(capsys, "rollback", run_id, migrations, "--db", url)
    assert code == errors.DecisionError.exit_code
    assert re.fullmatch(
        f"error: run {run_id}: the run was rolled back already by ana on"
        r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; there is nothing left to undo\n",
        err,
    ), err


def test_history_says_a_completed_run_was_rolled_back_later(
    applied: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url, run_id = applied
    assert run(capsys, "rollback", run_id, migrations, "--db", url, "--operator", "ana")[0] == 0
    code, out, _ = run(capsys, "history", "--db", url)
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(f"{run_id}  completed")
    assert ", then rolled back by ana on " in first


def test_an_operators_rollback_is_news_and_leaves_no_open_alert(
    applied: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url, run_id = applied
    assert run(capsys, "rollback", run_id, migrations, "--db", url, "--operator", "ana")[0] == 0
    code, out, _ = run(capsys, "alerts", "--db", url, "--all")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2, out  # the run's "applied", the rollback's "rolling back"
    assert all("  info  " in line and "  resolved  " in line for line in lines), out
    assert "rolling back on request: ana rolls back the whole run" in lines[1]
    code, out, _ = run(capsys, "alerts", "--db", url)
    assert "open" not in out
    rollback_run = run(capsys, "history", "--db", url)[1].splitlines()[1].split()[0]
    code, out, _ = run(capsys, "show", rollback_run, "--db", url)
    assert "rolled back on request: ana rolls back the whole run" in out
    assert "failure (operator_abort)" not in out


def test_times_in_messages_are_dates_not_stamps() -> None:
    held = errors.LockHeldError("write freeze", "host:1:abc", 20261206012654)
    assert "since 2026-12-06 01:26:54 UTC" in str(held)
    frozen = errors.WritesFrozenError("host:1:abc", 20261206013000)
    assert "until 2026-12-06 01:30:00 UTC at the latest" in str(frozen)


def test_a_commands_help_lists_only_its_own_options_and_points_to_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("history", "show", "alerts", "decisions", "dashboard"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        for option in ("--manifest", "--rename", "--files"):
            assert option not in out, (command, option)
        assert "lupo-migrate --help` lists the others" in " ".join(out.split())
        assert "11 run failed" not in out
    code, out, _ = run(capsys, "apply", "--help")
    assert "--manifest" in out  # apply reads the files


def test_check_exits_with_the_plan_code_on_a_cycle_as_plan_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.sql").write_text("-- id: a\n-- depends_on: [b]\nCREATE TABLE a (id INT);\n")
    (tmp_path / "b.sql").write_text("-- id: b\n-- depends_on: [a]\nCREATE TABLE b (id INT);\n")
    assert run(capsys, "plan", tmp_path)[0] == errors.PlanError.exit_code
    code, out, err = run(capsys, "check", tmp_path)
    assert code == errors.PlanError.exit_code, (out, err)


def test_queue_without_a_subcommand_lists_it(
    applied: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, _ = applied
    code, out, err = run(capsys, "queue", "--db", url)
    assert code == 0, (out, err)
    assert out == "the queue of target default is empty\n"


def test_decisions_need_no_directory(
    applied: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, run_id = applied
    code, out, err = run(capsys, "decisions", "--db", url)
    assert code == 0, (out, err)
    assert out.startswith(f"{run_id}  run  available")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "rolled_back"), [("n\n", False), ("y\n", True)])
def test_rollback_on_a_terminal_shows_the_plan_and_asks_first(
    applied: tuple[Path, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    rolled_back: bool,
) -> None:
    migrations, url, run_id = applied
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    code, out, err = run(capsys, "rollback", run_id, migrations, "--db", url)
    assert code == 0, (out, err)
    assert f"Roll back run {run_id} as shown above? [y/N]" in out
    assert "steps undone, newest first (4):" in out
    assert ("nothing rolled back" in out) is not rolled_back
    assert ("4 step(s) of the run undone" in out) is rolled_back


def test_rollback_with_yes_does_not_ask(
    applied: tuple[Path, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrations, url, run_id = applied
    monkeypatch.setattr(sys, "stdin", _Terminal(""))
    code, out, err = run(capsys, "rollback", run_id, migrations, "--db", url, "-y")
    assert code == 0, (out, err)
    assert "Roll back run" not in out
    assert "4 step(s) of the run undone" in out


def test_a_run_that_failed_and_could_not_be_rolled_back_has_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11: failed and rolled back cleanly; 15: failed, and the rollback did not finish."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    (clean / "V2__fails.sql").write_text("SELECT no_such_function();\n")
    code, _, err = run(capsys, "apply", clean, "--db", url)
    assert code == errors.StepError.exit_code == 11
    assert "the run was rolled back: the database is as it was before it" in err
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    (stuck / "V1__t.sql").write_text(
        "CREATE TABLE t (id INTEGER);\nPRAGMA user_version = 7;\n"
        "-- lupo:down\nDROP TABLE no_such_table;\n"
    )
    (stuck / "V2__fails.sql").write_text("SELECT no_such_function();\n")
    code, _, err = run(capsys, "apply", stuck, "--db", f"sqlite:///{tmp_path / 'other.db'}")
    assert code == errors.RollbackIncompleteError.exit_code == 15
    assert "the run's rollback did not finish, so the target is blocked" in err
    assert "then `lupo-migrate resolve`" in err
