"""PostgreSQL statements that cannot run in a transaction (issue 19, point 4).

``CREATE INDEX CONCURRENTLY``, ``ALTER TYPE ... ADD VALUE``, ``VACUUM``... failed on 1e1146b
(``cannot run inside a transaction block``), with no way to mark a file. Now a step holding
one, or marked ``-- lupo:no-transaction``, runs apart: each statement commits on its own,
journalled before it runs, and a failure, a rollback or a kill -9 undoes what it committed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from databases import fresh_database
from lupo_migrate import errors
from lupo_migrate.cli import main
from lupo_migrate.sql.apart import outside_transaction, runs_apart

KILLER = Path(__file__).with_name("_killer.py")


@pytest.mark.parametrize(
    ("sql", "apart"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (v)", True),
        ("create unique index\n  concurrently i on t (v)", True),
        ("-- why\n/* and how */ CREATE INDEX CONCURRENTLY i ON t (v)", True),
        ("DROP INDEX CONCURRENTLY i", True),
        ("REINDEX INDEX CONCURRENTLY i", True),
        ("VACUUM ANALYZE t", True),
        ("ALTER TYPE mood ADD VALUE 'meh'", True),
        ("ALTER TYPE mood RENAME VALUE 'a' TO 'b'", False),
        ("CREATE INDEX i ON t (v)", False),
        ("CREATE TABLE concurrently (id INT)", False),
        ("SELECT 'CREATE INDEX CONCURRENTLY'", False),
    ],
)
def test_which_statements_cannot_run_in_a_transaction(sql: str, apart: bool) -> None:
    assert outside_transaction(sql, "postgresql") is apart
    assert outside_transaction(sql, "mysql") is False  # MySQL's DDL commits by itself anyway


def test_a_file_can_ask_to_run_apart() -> None:
    text = "-- id: x\n-- lupo:no-transaction\nUPDATE t SET v = 1;\n"
    assert runs_apart(text, ["UPDATE t SET v = 1"], "postgresql")
    assert not runs_apart(text.replace("lupo:no-transaction", "no"), ["UPDATE t"], "postgresql")
    assert not runs_apart(text, ["UPDATE t SET v = 1"], "sqlite")


@pytest.fixture(name="pg")
def _pg(tmp_path: Path) -> object:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def _one(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _indexes(url: str) -> list[str]:
    return [r[0] for r in _one(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")]


def _tables(url: str) -> list[str]:
    return [r[0] for r in _one(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def _files(tmp_path: Path, files: dict[str, str]) -> Path:
    migrations = tmp_path / "m"
    migrations.mkdir(exist_ok=True)
    for name, text in files.items():
        (migrations / name).write_text(text)
    return migrations


BASE = {"V1__t.sql": "CREATE TABLE t (id INT PRIMARY KEY, v INT);\nINSERT INTO t VALUES (1, 1);\n"}


@pytest.mark.postgresql
def test_create_index_concurrently_applies_and_rolls_back(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _files(
        tmp_path, {**BASE, "V2__i.sql": "CREATE INDEX CONCURRENTLY t_v ON t (v);\n"}
    )
    assert main(["apply", str(migrations), "--db", pg]) == 0, capsys.readouterr()
    assert "t_v" in _indexes(pg)
    # its journal rows were written before it ran, each committed: as on MySQL
    rows = _one(
        pg,
        "SELECT stmt_index, done_at IS NOT NULL FROM lupo_orchestration.migration_progress"
        " WHERE step_id = 'V2__i'",
    )
    assert rows == [(0, True)]
    run_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert main(["rollback", run_id, str(migrations), "--db", pg, "-y"]) == 0, capsys.readouterr()
    assert (_tables(pg), _indexes(pg)) == ([], [])


@pytest.mark.postgresql
def test_a_failure_after_a_committed_statement_undoes_it(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _files(
        tmp_path,
        {
            **BASE,
            "V2__i.sql": "CREATE INDEX CONCURRENTLY t_v ON t (v);\n"
            "CREATE INDEX CONCURRENTLY nope ON no_such_table (v);\n",
        },
    )
    code = main(["apply", str(migrations), "--db", pg])
    out, err = capsys.readouterr()
    assert code == errors.StepError.exit_code, (out, err)
    assert "0 of 2 step(s) applied" in out
    assert "cannot run inside a transaction block" not in err
    assert (_tables(pg), _indexes(pg)) == ([], [])


@pytest.mark.postgresql
def test_a_value_added_to_an_enum_can_be_used_by_the_next_step(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _files(
        tmp_path,
        {
            "V1__mood.sql": "CREATE TYPE mood AS ENUM ('ok');\n"
            "CREATE TABLE m (id INT PRIMARY KEY, mood mood);\n"
            "-- lupo:down\nDROP TABLE m;\nDROP TYPE mood;\n",
            "V2__meh.sql": "ALTER TYPE mood ADD VALUE 'meh';\n",
            "V3__use.sql": "INSERT INTO m VALUES (1, 'meh');\n",
        },
    )
    # PostgreSQL cannot take a value out of an enum: the step says so, as any irreversible one
    code = main(["apply", str(migrations), "--db", pg, "--allow-irreversible", "V2__meh"])
    assert code == 0, capsys.readouterr()
    assert _one(pg, "SELECT mood::text FROM m") == [("meh",)]


@pytest.mark.postgresql
def test_a_marked_file_commits_statement_by_statement(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _files(
        tmp_path,
        {
            **BASE,
            "V2__big.sql": "-- lupo:no-transaction\nUPDATE t SET v = 2;\nVACUUM t;\n",
        },
    )
    assert main(["apply", str(migrations), "--db", pg]) == 0, capsys.readouterr()
    assert _one(pg, "SELECT v FROM t") == [(2,)]


@pytest.mark.postgresql
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_kill_during_the_concurrent_index_is_recovered(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """kill -9 just before the index statement is sent (its intent journalled) or just after
    it committed (not marked done): recover rolls the run back to nothing either way."""
    migrations = _files(
        tmp_path,
        {
            **BASE,
            "V2__i.sql": "CREATE INDEX CONCURRENTLY t_v ON t (v);\n",
            "V3__u.sql": "UPDATE t SET v = 3;\n",
        },
    )
    died = subprocess.run(
        [sys.executable, str(KILLER), mode, "2", str(migrations), "--db", pg],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == -9, died.stdout + died.stderr
    assert ("t_v" in _indexes(pg)) is (mode == "after")
    code = main(["recover", str(migrations), "--db", pg])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "recovered, rolled_back" in out
    assert (_tables(pg), _indexes(pg)) == ([], [])


@pytest.mark.postgresql
def test_a_header_can_ask_to_run_apart(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-- transaction: false`` in the header: the step's statements commit one by one (a
    failure after the first leaves its change committed, and the rollback undoes it)."""
    migrations = _files(
        tmp_path,
        {
            **BASE,
            "V2__two.sql": "-- transaction: false\nCREATE INDEX t_v ON t (v);\n"
            "CREATE INDEX nope ON no_such_table (v);\n",
        },
    )
    code = main(["apply", str(migrations), "--db", pg])
    assert code == errors.StepError.exit_code, capsys.readouterr()
    rows = _one(
        pg,
        "SELECT stmt_index, done_at IS NOT NULL FROM lupo_orchestration.migration_progress"
        " WHERE step_id = 'V2__two' ORDER BY stmt_index",
    )
    assert rows[0] == (0, True)  # journalled and committed on its own, before the failure
    assert (_tables(pg), _indexes(pg)) == ([], [])
