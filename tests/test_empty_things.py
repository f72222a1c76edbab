"""Empty things are refused or reported at ``check`` and before a run starts (issue 19, 8).

On 1e1146b an empty or comment-only file passed ``check`` and was recorded as applied; an
unterminated quote in the last file let every earlier step run first; a deleted applied file
was never mentioned; ``apply`` on an empty directory created the database files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clirun import run
from databases import table_names
from lupo_migrate import errors
from lupo_migrate.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"


NOTHING = {
    "empty": "",
    "blank lines": "\n\n   \n",
    "comments": "-- only a comment\n/* and another */\n",
    "only a down section": "-- lupo:down\nDROP TABLE t;\n",
}


@pytest.mark.parametrize("text", NOTHING.values(), ids=NOTHING.keys())
def test_a_file_with_nothing_to_run_is_an_error_at_check(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    (tmp_path / "V2__nothing.sql").write_text(text)
    code, out, err = run(capsys, "check", tmp_path)
    assert code == errors.MigrationFileError.exit_code, (out, err)
    assert "V2__nothing.sql:1: no statement to run" in out + err
    assert "1 error(s)" in out + err


def test_a_file_with_nothing_to_run_refuses_the_run_before_it_starts(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    (migrations / "V2__nothing.sql").write_text("-- TODO\n")
    code, out, err = run(capsys, "apply", migrations, "--db", database_url)
    assert code == errors.StepError.exit_code, (out, err)
    assert "0 of 2 step(s) applied" in out
    assert "V2__nothing.sql:1: no statement to run" in err
    assert "a" not in table_names(database_url)  # V1 never ran
    code, out, err = run(capsys, "status", migrations, "--db", database_url)
    assert "0 applied, 2 pending" in out


def test_an_unterminated_quote_in_the_last_file_refuses_the_run_before_the_first_step(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    for n in range(1, 30):
        (migrations / f"V{n}__t{n}.sql").write_text(f"CREATE TABLE t{n} (id INT);\n")
    (migrations / "V30__bad.sql").write_text("INSERT INTO t1 VALUES ('1);\n")
    code, out, err = run(capsys, "check", migrations)
    assert code == errors.MigrationFileError.exit_code
    assert "V30__bad.sql:1: unterminated string (')" in out + err
    code, out, err = run(capsys, "apply", migrations, "--db", database_url)
    assert code == errors.StepError.exit_code, (out, err)
    assert "0 of 30 step(s) applied" in out
    assert not {f"t{n}" for n in range(1, 30)} & table_names(database_url)


def test_an_applied_file_that_is_gone_is_reported_by_apply_and_status(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    shutil.copytree(QUICKSTART, migrations)
    code, out, err = run(capsys, "apply", migrations, "--db", database_url)
    assert code == 0, (out, err)
    (migrations / "V2__create_posts.sql").unlink()
    code, out, err = run(capsys, "apply", migrations, "--db", database_url)
    assert code == 0, (out, err)  # nothing to apply; the ledger is left as it is
    said = "create_posts (V2__create_posts.sql) is applied (run "
    assert said in err
    assert "but its file is no longer in the migrations directory" in err
    code, out, err = run(capsys, "status", migrations, "--db", database_url)
    assert f"missing  create_posts  {said}" in out


def test_the_fast_path_leaves_a_gone_file_to_the_full_path(tmp_path: Path) -> None:
    """The nothing-to-do answer is given only when the ledger and the files match."""
    from lupo_migrate.session import fast_path
    from lupo_migrate.session.config import Settings

    migrations = tmp_path / "m"
    shutil.copytree(QUICKSTART, migrations)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["apply", str(migrations), "--db", url]) == 0
    settings = Settings(db=url, migrations=migrations)
    assert fast_path.nothing_to_do(settings) == 4
    (migrations / "V3__seed_authors.sql").unlink()
    assert fast_path.nothing_to_do(settings) is None


def test_an_empty_directory_touches_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "migrations"
    empty.mkdir()
    code, out, err = run(capsys, "apply", empty, "--db", f"sqlite:///{tmp_path / 'app.db'}")
    assert code == 0, (out, err)
    assert f"warning: no migration files in {empty}; nothing applied" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["migrations"]  # no app.db, no app.lupo.db
    code, out, err = run(capsys, "check", empty)
    assert code == 0
    assert "no migration files here: apply would do nothing" in out + err
