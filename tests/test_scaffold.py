"""``init``, ``new`` and the applied list of ``status``: what a user of Alembic, Flyway or
Sqitch reaches for on day one (issue 19, point 7). None of them existed on 1e1146b."""

from __future__ import annotations

import getpass
import re
import shutil
from pathlib import Path

import pytest

from clirun import run
from lupo_migrate import errors
from lupo_migrate.run.wiring import default_operator

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "migrations"


def test_init_writes_a_config_and_a_folder_and_overwrites_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "init", "--db", "sqlite:///app.db")
    assert code == 0, err
    assert out.startswith("wrote lupo.toml and created migrations/")
    text = (tmp_path / "lupo.toml").read_text()
    assert 'db = "sqlite:///app.db"' in text
    assert 'migrations = "migrations"' in text
    assert (tmp_path / "migrations").is_dir()
    code, _, err = run(capsys, "init")
    assert code == errors.ConfigurationError.exit_code
    assert "lupo.toml exists already; nothing was written" in err
    assert (tmp_path / "lupo.toml").read_text() == text


def test_new_writes_a_migration_after_the_heads_that_applies_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "init", "--db", f"sqlite:///{tmp_path / 'app.db'}")[0] == 0
    code, out, _ = run(capsys, "new", "Create users")
    assert code == 0
    (first,) = (tmp_path / "migrations").glob("*_create_users.sql")
    assert "(after" not in out  # nothing to depend on yet
    code, out, _ = run(capsys, "new", "add email")
    assert "(after create_users)" in out
    (second,) = (tmp_path / "migrations").glob("*_add_email.sql")
    text = second.read_text()
    assert text.startswith("-- id: add_email\n-- depends_on: [create_users]\n")
    assert "\n-- lupo:down\n" in text
    code, _, _ = run(capsys, "check")
    assert code == errors.MigrationFileError.exit_code  # nothing to run yet: said at check
    first.write_text(
        first.read_text()
        .replace("-- the statements of the migration", "CREATE TABLE users (id INTEGER);\n--")
        .replace("-- the statements that undo them", "DROP TABLE users;\n--")
    )
    second.write_text(
        text.replace(
            "-- the statements of the migration", "ALTER TABLE users ADD COLUMN email TEXT;\n--"
        ).replace("-- the statements that undo them", "ALTER TABLE users DROP COLUMN email;\n--")
    )
    code, out, err = run(capsys, "apply")
    assert code == 0, (out, err)
    run_id = re.match(r"run ([0-9a-f]{32})", out)
    assert run_id is not None
    code, out, err = run(capsys, "rollback", run_id[1], "-y")
    assert code == 0, (out, err)
    code, _, err = run(capsys, "new", "add email")
    assert code == errors.InvalidArgumentError.exit_code
    assert "a migration with id 'add_email' exists already" in err


def test_new_continues_the_versions_of_versioned_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    shutil.copytree(QUICKSTART, migrations)
    code, out, _ = run(capsys, "new", "add tags", migrations)
    assert code == 0
    assert (migrations / "V5__add_tags.sql").is_file()
    assert (
        "(after add_post_status, seed_authors)" in out
        or "(after seed_authors, add_post_status)" in out
    )


def test_status_lists_the_applied_migrations_with_date_duration_user_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert run(capsys, "apply", QUICKSTART, "--db", url, "--upto", "create_posts")[0] == 0
    assert run(capsys, "apply", QUICKSTART, "--db", url, "--operator", "alice")[0] == 0
    code, out, _ = run(capsys, "status", QUICKSTART, "--db", url)
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("applied  ")]
    assert [line.split()[1] for line in lines] == [
        "create_authors",
        "create_posts",
        "seed_authors",
        "add_post_status",
    ]
    me = getpass.getuser()
    for line in lines:
        assert re.fullmatch(
            r"applied  \S+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +(<1|\d+) s"
            r"  by \S+ *  run [0-9a-f]{12}  V\d__\S+\.sql",
            line,
        ), line
    assert [line.split("  by ")[1].split()[0] for line in lines] == [me, me, "alice", "alice"]
    code, out, _ = run(capsys, "history", "--db", url)
    assert [line.rsplit(" by ", 1)[1] for line in out.splitlines()] == [me, "alice"]


def test_a_run_started_where_the_os_has_no_user_name_is_by_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def nobody() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert default_operator() == "unknown"
