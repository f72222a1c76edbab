"""``downgrade --to ID``: back to a migration at any time, by the steps' downs, as a run of its
own, never losing rows it was not told it may lose (issue 19, point 7). It did not exist on
1e1146b."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from clirun import run
from databases import table_names
from lupo_migrate import errors

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "migrations"


def _sql(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


@pytest.fixture(name="applied")
def _applied(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    migrations = tmp_path / "m"
    shutil.copytree(QUICKSTART, migrations)
    code, out, err = run(capsys, "apply", migrations, "--db", database_url)
    assert code == 0, (out, err)
    return migrations, database_url


def test_downgrade_undoes_the_steps_after_the_one_named_and_apply_goes_forward_again(
    applied: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url = applied
    code, out, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "create_posts")
    assert code == 0, (out, err)
    assert re.fullmatch(r"run [0-9a-f]{32}: downgraded to create_posts, 2 step\(s\) undone\n", out)
    assert "status" not in _columns(url, "posts")
    assert _sql(url, "SELECT COUNT(*) FROM authors") == [(0,)]  # the seed's rows went
    code, out, _ = run(capsys, "status", migrations, "--db", url)
    assert "2 applied, 2 pending" in out
    code, out, err = run(capsys, "apply", migrations, "--db", url)
    assert code == 0, (out, err)
    assert "completed, 2 of 2 step(s) applied" in out
    assert "status" in _columns(url, "posts")


def test_a_downgrade_that_would_lose_rows_is_refused_before_it_touches_anything(
    applied: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url = applied
    _sql(url, "INSERT INTO posts (id, author_id, title, status) VALUES (7, 1, 'hi', 'live')")
    code, out, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "create_authors")
    assert code == errors.DecisionError.exit_code, (out, err)
    assert "downgrading to create_authors would lose" in err
    assert "table posts (1 row(s))" in err
    assert "nothing was touched" in err
    assert "status" in _columns(url, "posts")
    assert _sql(url, "SELECT COUNT(*) FROM posts") == [(1,)]
    code, out, err = run(
        capsys, "downgrade", migrations, "--db", url, "--to", "create_authors", "--dry-run"
    )
    assert code == 0
    assert "would lose: table posts (1 row(s))" in out
    code, out, err = run(
        capsys, "downgrade", migrations, "--db", url, "--to", "create_authors", "--lose-data"
    )
    assert code == 0, (out, err)
    assert "3 step(s) undone" in out
    code, out, _ = run(capsys, "status", migrations, "--db", url)
    assert "1 applied, 3 pending" in out


def test_a_step_with_no_way_back_stops_the_downgrade_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);\n")
    (migrations / "V2__u.sql").write_text("UPDATE t SET v = 1 WHERE id = 1;\n")
    assert run(capsys, "apply", migrations, "--db", url)[0] == 0
    code, _, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "V1__t")
    assert code == errors.DecisionError.exit_code
    assert "V2__u.sql: V2__u has no way back" in err
    code, _, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "V9__nope")
    assert "no migration 'V9__nope' among the files" in err


def test_a_run_whose_steps_were_downgraded_cannot_be_rolled_back_by_its_record(
    applied: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    migrations, url = applied
    first = run(capsys, "history", "--db", url)[1].split()[0]
    assert run(capsys, "downgrade", migrations, "--db", url, "--to", "create_posts")[0] == 0
    code, _, err = run(capsys, "rollback", first, migrations, "--db", url, "-y")
    assert code == errors.DecisionError.exit_code
    assert "was rolled back already" in err


def _tables(url: str) -> list[str]:
    return sorted(table_names(url) & {"a", "b", "c"})


def _three(tmp_path: Path, down_of_b: str) -> Path:
    migrations = tmp_path / "m3"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n-- lupo:down\nDROP TABLE a;\n")
    (migrations / "V2__b.sql").write_text(f"CREATE TABLE b (id INT);\n-- lupo:down\n{down_of_b}")
    (migrations / "V3__c.sql").write_text("CREATE TABLE c (id INT);\n-- lupo:down\nDROP TABLE c;\n")
    return migrations


def test_a_downgrade_whose_down_fails_applies_again_what_it_undid(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The down of V2 fails and leaves nothing (on PostgreSQL and SQLite its first statement
    ran and went with the transaction; on MySQL, whose DDL commits, the failing statement is
    the first): the downgrade stops, V3, which it had undone, is applied again by a run of
    its own, and the target is where the downgrade began, not blocked (exit 11, as a run
    that failed and was rolled back). On 1e1146b it ended blocked (exit 15) with V3 gone."""
    url = database_url
    mysql = url.startswith("mysql")
    down = "DROP TABLE nope_x;\nDROP TABLE b;\n" if mysql else "DROP TABLE b;\nDROP TABLE nope_x;\n"
    migrations = _three(tmp_path, down)
    assert run(capsys, "apply", migrations, "--db", url)[0] == 0
    code, out, err = run(
        capsys, "downgrade", migrations, "--db", url, "--to", "V1__a", "-y", "--operator", "eve"
    )
    assert code == errors.StepError.exit_code, (out, err)
    assert f"undoing V2__b failed: V2__b.sql:{3 if mysql else 4}: step V2__b, down statement" in err
    assert "nothing of its down stayed" in err
    assert "applied again what the downgrade had undone (V3__c): the target is where the" in err
    assert _tables(url) == ["a", "b", "c"]
    code, out, _ = run(capsys, "status", migrations, "--db", url)
    assert "3 applied, 0 pending" in out
    assert "BLOCKED" not in out
    assert re.search(r"applied  V3__c .* by eve ", out), out
    code, out, _ = run(capsys, "apply", migrations, "--db", url)
    assert (code, out) == (0, "nothing to do: all 3 migration(s) already applied\n")
    code, out, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "V2__b", "-y")
    assert code == 0, (out, err)  # a down that works still works after
    assert _tables(url) == ["a", "b"]


def test_a_down_that_fails_after_its_ddl_committed_blocks_the_target(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MySQL: the down's DROP TABLE committed before its second statement failed, so V2 is
    half undone: that is not put right by guessing; the target is blocked (exit 15) and V3
    stays undone, as the message says."""
    migrations = _three(tmp_path, "DROP TABLE b;\nDROP TABLE nope_x;\n")
    assert run(capsys, "apply", migrations, "--db", mariadb_url)[0] == 0
    code, out, err = run(
        capsys, "downgrade", migrations, "--db", mariadb_url, "--to", "V1__a", "-y"
    )
    assert code == errors.RollbackIncompleteError.exit_code, (out, err)
    assert "undoing V2__b failed" in err
    assert "resolve" in err
    assert _tables(mariadb_url) == ["a"]


def test_a_stopped_downgrade_that_cannot_apply_again_says_where_the_target_stands(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The down of V2 fails and V3 is to be applied again, but V1 (applied) was edited: the
    run that would apply V3 again is refused before it starts; the message says why and
    that the target stands where the downgrade stopped (V3 pending, not blocked)."""
    url = database_url
    migrations = _three(tmp_path, "DROP TABLE nope_x;\nDROP TABLE b;\n")
    assert run(capsys, "apply", migrations, "--db", url)[0] == 0
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT, x INT);\n")
    code, out, err = run(capsys, "downgrade", migrations, "--db", url, "--to", "V1__a", "-y")
    assert code == errors.StepError.exit_code, (out, err)
    assert "applying again what the downgrade had undone could not start" in err
    assert "V1__a was applied with checksum" in err
    assert "the target stands where the downgrade stopped, at V2__b" in err
    code, out, _ = run(capsys, "status", migrations, "--db", url)
    assert "pending  V3__c  V3__c.sql" in out
    assert "BLOCKED" not in out
    assert _tables(url) == ["a", "b"]
