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
from typing import Any

import pytest
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _pipeline
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
    assert len(writes) == 2  # INSERTs of 2,000 rows at most, not 2,001 INSERTs and UPDATEs
    with sqlite3.connect(store) as conn:
        done = conn.execute(
            "SELECT COUNT(*), COUNT(done_at), MIN(stmt_index), MAX(stmt_index)"
            " FROM migration_progress WHERE step_id = 'V1__big'"
        ).fetchone()
    assert done == (2001, 2001, 0, 2000)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM big").fetchone() == (2000,)


def _big_file(tmp_path: Path, rows: int, *, before: str = "", after: str = "") -> Path:
    """A migrations folder of one file: ``CREATE TABLE big``, *before*, *rows* INSERTs into
    it, *after*."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    inserts = "".join(f"INSERT INTO big (id) VALUES ({i});\n" for i in range(rows))
    (migrations / "V1__big.sql").write_text(
        "CREATE TABLE big (id INT PRIMARY KEY);\n" + before + inserts + after
    )
    return migrations


@pytest.mark.mariadb
def test_a_long_mariadb_step_sends_its_journal_as_it_goes_and_keeps_row_count(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 INSERTs in one step: the journal rows go with later statements in batches (the
    n-th statement no longer scans every held row, n² in all), yet a statement that reads
    ROW_COUNT() still sees its predecessor's, as with the ``mariadb`` client."""
    migrations = _big_file(
        tmp_path,
        1000,
        before="CREATE TABLE seen (n INT);\n",
        after="UPDATE big SET id = id + 10000 WHERE id < 3;\n"
        "INSERT INTO seen VALUES (ROW_COUNT());\n",
    )
    assert main(["apply", str(migrations), "--db", mariadb_url]) == 0, capsys.readouterr()
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM seen").all() == [(3,)]
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM big").scalar() == 1000
    finally:
        engine.dispose()


def _journal(url: str, tmp_path: Path) -> list[tuple[int, str, bool]]:
    """(statement index, statement's first word, done) of each journal row, by id."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{str(parsed.database).removesuffix('.db')}.lupo.db")
        table = "migration_progress"
    elif backend == "postgresql":
        engine, table = sa.create_engine(url), "lupo_orchestration.migration_progress"
    else:
        engine = sa.create_engine(url)
        table = f"{parsed.database}_lupo_orchestration.migration_progress"
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT stmt_index, statement, done_at FROM {table} ORDER BY id"
            ).all()
    finally:
        engine.dispose()
    return [(int(i), str(s).split()[0], d is not None) for i, s, d in rows]


def test_a_long_step_journals_its_statements_together_in_order(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """6,000 INSERTs between two DDL statements: their journal rows are written together
    (in the step's transaction where the journal shares the step's connection: every 5,000
    rows and before the next DDL, which MySQL announces first), not one write per statement
    as on 1e1146b; every row is there, done, in statement order."""
    migrations = _big_file(
        tmp_path,
        6000,
        after="CREATE TABLE after_them (id INT);\nINSERT INTO after_them VALUES (1);\n",
    )
    writes: list[int] = []

    def count(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        upper = statement.upper()
        ours = "INSERT INTO" in upper and "MIGRATION_PROGRESS" in upper
        if ours and "lupo:ids:" not in str(params)[:200]:  # not ids reserved ahead (_ids)
            writes.append(len(params) if isinstance(params, list) else 1)

    held = _pipeline.Pipeline.defer

    def hold(pipeline: _pipeline.Pipeline, sql: str, *args: Any, **kwargs: Any) -> int | None:
        count(None, None, sql, None)  # MariaDB: held back to travel with a statement
        return held(pipeline, sql, *args, **kwargs)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    monkeypatch.setattr(_pipeline.Pipeline, "defer", hold)
    try:
        code = main(["apply", str(migrations), "--db", database_url])
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert code == 0, capsys.readouterr()
    journal = _journal(database_url, tmp_path)
    assert [index for index, _word, _done in journal] == list(range(6003))
    assert all(done for _index, _word, done in journal)
    assert journal[6001][1] == "CREATE"
    # a few writes of many rows each (at most 2,000 per INSERT), not 6,003 writes (on
    # 1e1146b PostgreSQL wrote each row on the driver's own cursor, none counted here, and
    # MariaDB held each row back on its own)
    assert 1 <= len(writes) <= 12, writes
