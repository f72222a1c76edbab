"""Every kind of object a run creates, drops, replaces or moves comes back (issue 18, cases
4 and 8): events, tables moved to another schema, schemas, ``IF NOT EXISTS`` that created
nothing, a typo in the last file, and a run killed while it copied a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import fresh_database
from test_rollback_keeps import (
    KILLER,
    ROLLED_BACK_FAILED,
    _cli,
    _definition,
    _files,
    _sql,
    _tables_query,
)

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]
FAIL = "SELECT no_such_function();\n"


@pytest.fixture(name="url", params=ENGINES)
def _url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _events(url: str) -> list[tuple[str, str]]:
    return [
        (str(n), str(b))
        for n, b in _sql(
            url,
            "SELECT event_name, event_definition FROM information_schema.events"
            " WHERE event_schema = DATABASE() ORDER BY event_name",
        )
    ]


@pytest.mark.mariadb
def test_an_event_the_run_replaced_or_created_is_put_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 8: ``DROP EVENT IF EXISTS e; CREATE EVENT e ...``: a failing run leaves the old
    event as it was; a run that creates a new one leaves none; `rollback RUN` too."""
    _sql(
        mariadb_url,
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "CREATE EVENT old_e ON SCHEDULE EVERY 1 DAY DO DELETE FROM t WHERE id < 0",
    )
    before = _events(mariadb_url)
    migrations = _files(
        tmp_path,
        "DROP EVENT IF EXISTS old_e;\n"
        "CREATE EVENT old_e ON SCHEDULE EVERY 2 DAY DO DELETE FROM t WHERE id < 2;\n"
        "DROP EVENT IF EXISTS new_e;\n"
        "CREATE EVENT new_e ON SCHEDULE EVERY 1 DAY DO DELETE FROM t WHERE id < 1;\n",
        FAIL,
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert _events(mariadb_url) == before
    (migrations / "V2__s.sql").unlink()
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
    assert code == 0, (out, err)
    assert [n for n, _ in _events(mariadb_url)] == ["new_e", "old_e"]
    run = out.split()[1].rstrip(":")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", mariadb_url)
    assert code == 0, (out, err)
    assert _events(mariadb_url) == before


@pytest.mark.mariadb
def test_a_table_moved_to_another_schema_comes_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 8: ``RENAME TABLE core.t TO other.t`` in a failing run: t is back in the core
    schema with its rows, and a table moved in from the other schema goes back there."""
    core = sa.make_url(mariadb_url).database
    other = f"{core}_other"
    _sql(
        mariadb_url,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO t VALUES (1, 1), (2, 2)",
        f"CREATE DATABASE {other}",
        f"CREATE TABLE {other}.x (id INT PRIMARY KEY)",
        f"INSERT INTO {other}.x VALUES (7)",
    )
    migrations = _files(
        tmp_path, f"RENAME TABLE {core}.t TO {other}.t;\nRENAME TABLE {other}.x TO x;\n", FAIL
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "blocked" not in (out + err).lower()
    assert _sql(mariadb_url, "SELECT * FROM t ORDER BY id") == [(1, 1), (2, 2)]
    assert _sql(mariadb_url, f"SELECT * FROM {other}.x") == [(7,)]
    assert _sql(mariadb_url, "SHOW TABLES") == [("t",)]


@pytest.mark.mariadb
def test_a_schema_the_run_created_is_dropped_again(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 8: ``CREATE SCHEMA`` (a MySQL database) of a run that fails is undone."""
    made = f"{sa.make_url(mariadb_url).database}_made"
    migrations = _files(tmp_path, f"CREATE SCHEMA {made};\n", FAIL)
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "blocked" not in (out + err).lower()
    assert _sql(mariadb_url, f"SHOW DATABASES LIKE '{made}'") == []


@pytest.mark.parametrize(
    "kind",
    [*ENGINES, pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)],
)
def test_create_if_not_exists_that_created_nothing_rolls_back(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 8: ``CREATE TABLE IF NOT EXISTS`` of a table that was there created nothing: the
    rollback of a failing run leaves that table (and its rows) alone, and does not block
    (PostgreSQL blocked: no derived inverse, no pre-images)."""
    with fresh_database(kind, tmp_path) as url:
        _if_not_exists(url, tmp_path, capsys)


def _if_not_exists(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(url, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    before = _definition(url, "t")
    migrations = _files(
        tmp_path,
        "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, other INT);\n"
        "CREATE TABLE IF NOT EXISTS n (id INT PRIMARY KEY);\n",
        FAIL,
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "rolled_back, 0 of 2" in out, err
    assert _definition(url, "t") == before
    assert _sql(url, "SELECT * FROM t") == [(1,)]
    code, out, err = _cli(capsys, "status", str(migrations), "--db", url)
    assert "BLOCKED" not in out


def test_a_typo_in_the_last_file_rolls_back_every_earlier_step(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 4: ``SELEC broken;`` after a good statement in file 10 of 10: the run is refused
    before anything runs, naming the file and the line; the target is not blocked (before,
    nine steps applied and a blocked target)."""
    _sql(url, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (1, 1)")
    before = (_definition(url, "t"), _sql(url, "SELECT * FROM t"))
    files = [
        f"UPDATE t SET v = v + 1 WHERE id = 1;\nCREATE TABLE k{n} (id INT);\n" for n in range(9)
    ]
    files.append("INSERT INTO t VALUES (2, 2);\nSELEC broken;\n")
    migrations = _files(tmp_path, *files)
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "V10__s.sql:2" in err
    assert "rolled_back, 0 of 10" in out
    assert (_definition(url, "t"), _sql(url, "SELECT * FROM t")) == before
    code, out, err = _cli(capsys, "status", str(migrations), "--db", url)
    assert "BLOCKED" not in out


def test_a_typo_in_a_down_section_refuses_the_run_before_it_starts(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The down section is the step's way back: ``DRPO TABLE k;`` there would only fail when
    the rollback needs it. The run is refused before anything runs, naming file and line."""
    migrations = _files(tmp_path, "CREATE TABLE k (id INT);\n-- lupo:down\nDRPO TABLE k;\n")
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "V1__s.sql:3: statement starts with 'DRPO'" in err
    assert "rolled_back, 0 of 1" in out
    assert ("k",) not in _sql(url, *_tables_query(url))


def test_a_refused_statement_of_unknown_effect_ran_nothing(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 4, at run time: a statement whose effects cannot be told (let through with
    --allow-irreversible) that the server refuses ran nothing: the nine steps before are
    rolled back from their pre-images, and the target is not blocked."""
    _sql(url, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (1, 1)")
    before = (_definition(url, "t"), _sql(url, "SELECT * FROM t"))
    files = [
        f"UPDATE t SET v = v + 1 WHERE id = 1;\nCREATE TABLE k{n} (id INT);\n" for n in range(9)
    ]
    unknown = "REINDEX no_such_index" if url.startswith("sqlite") else "CALL no_such_proc()"
    files.append(f"INSERT INTO t VALUES (2, 2);\n{unknown};\n")
    migrations = _files(tmp_path, *files)
    code, out, err = _cli(
        capsys, "apply", str(migrations), "--db", url, "--allow-irreversible", "V10__s"
    )
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "V10__s.sql:2" in err
    assert "rolled_back, 0 of 10" in out
    assert (_definition(url, "t"), _sql(url, "SELECT * FROM t")) == before
    code, out, err = _cli(capsys, "status", str(migrations), "--db", url)
    assert "BLOCKED" not in out


@pytest.mark.mariadb
def test_a_run_killed_while_it_copies_a_table_is_resumed_and_rolled_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 8: kill -9 while a pre-image copy is made (its backup table half made):
    ``recover --resume`` carries the run on (numbering its copies after the one left), and
    its later rollback gives everything back."""
    _sql(mariadb_url, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (1, 1)")
    before = (_definition(mariadb_url, "t"), _sql(mariadb_url, "SELECT * FROM t"))
    migrations = _files(tmp_path, "CREATE TABLE a (id INT);\n", "UPDATE t SET v = 5;\n")
    killed = subprocess.run(
        [sys.executable, str(KILLER), "copy", "0", str(migrations), "--db", mariadb_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    code, out, err = _cli(capsys, "recover", str(migrations), "--db", mariadb_url, "--resume")
    assert code == 0, (out, err)
    assert _sql(mariadb_url, "SELECT * FROM t") == [(1, 5)]
    run = out.split()[1].rstrip(":")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", mariadb_url)
    assert code == 0, (out, err)
    assert (_definition(mariadb_url, "t"), _sql(mariadb_url, "SELECT * FROM t")) == before
