"""A big file on SQLite: the step's transaction is its record (issue 19, point 9).

On 1e1146b every statement of a SQLite step wrote its journal row to ``app.lupo.db`` in a
transaction of its own, announced and then marked done: two commits (two fsyncs) per
statement, 54 s for 5,000 INSERTs where the ``sqlite3`` shell took 10 s. The rows are now
written at the step's end, in one transaction; the journal is as complete as before.
Speed is measured by ``benchmarks/big_file.py``, not here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate.cli import main


def test_a_big_sqlite_step_journals_every_statement_in_one_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    rows = [f"INSERT INTO big (id, v) VALUES ({i}, {i});" for i in range(2000)]
    (migrations / "V1__big.sql").write_text(
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER);\n" + "\n".join(rows) + "\n"
    )
    store = tmp_path / "app.lupo.db"
    writes: list[str] = []

    def count(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO MIGRATION_PROGRESS"):
            writes.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        code = main(["apply", str(migrations), "--db", f"sqlite:///{tmp_path / 'app.db'}"])
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert code == 0, capsys.readouterr()
    assert len(writes) == 1  # one INSERT of 2,001 rows, not 2,001 INSERTs and 2,001 UPDATEs
    with sqlite3.connect(store) as conn:
        done = conn.execute(
            "SELECT COUNT(*), COUNT(done_at), MIN(stmt_index), MAX(stmt_index)"
            " FROM migration_progress WHERE step_id = 'V1__big'"
        ).fetchone()
    assert done == (2001, 2001, 0, 2000)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM big").fetchone() == (2000,)


@pytest.mark.mariadb
def test_a_long_mariadb_step_sends_its_journal_as_it_goes_and_keeps_row_count(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 INSERTs in one step: the journal rows go with later statements in batches (the
    n-th statement no longer scans every held row, n² in all), yet a statement that reads
    ROW_COUNT() still sees its predecessor's, as with the ``mariadb`` client."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    inserts = "\n".join(f"INSERT INTO big (id) VALUES ({i});" for i in range(1000))
    (migrations / "V1__big.sql").write_text(
        "CREATE TABLE big (id INT PRIMARY KEY);\nCREATE TABLE seen (n INT);\n"
        + inserts
        + "\nUPDATE big SET id = id + 10000 WHERE id < 3;\nINSERT INTO seen VALUES (ROW_COUNT());\n"
    )
    assert main(["apply", str(migrations), "--db", mariadb_url]) == 0, capsys.readouterr()
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM seen").all() == [(3,)]
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM big").scalar() == 1000
    finally:
        engine.dispose()
