"""Rollback undoes the run's own changes and nothing else (issue 18, "never lose a row").

Each test is a case a user met: a completed run rolled back after the application wrote
again; a conflict; a table over the backup limit; a crash on SQLite before anything
committed. The state is compared with what the engine itself reports (rows and definitions),
before and after, on MariaDB and SQLite.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from databases import fresh_database
from lupo_migrate.cli import main

ROLLED_BACK_FAILED = 11
ROLLBACK_INCOMPLETE = 15  # failed, and its rollback could not finish: the target is blocked
REFUSED = 13
KILLER = Path(__file__).with_name("_killer.py")

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]
ALL_ENGINES = [
    *ENGINES,
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture(name="url", params=ALL_ENGINES)
def _url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _sql(url: str, *statements: str) -> list[Any]:
    """Run *statements* as the application would (autocommit); the last one's rows."""
    engine = sa.create_engine(url)
    rows: list[Any] = []
    with engine.begin() as conn:
        for statement in statements:
            result = conn.exec_driver_sql(statement)
            rows = [tuple(r) for r in result] if result.returns_rows else []
    engine.dispose()
    return rows


def _definition(url: str, table: str) -> str:
    """The table's definition as the engine prints it (SHOW CREATE TABLE / sqlite_master;
    PostgreSQL, which prints none: its catalog entry, columns by name)."""
    if url.startswith("sqlite"):
        return str(_sql(url, f"SELECT sql FROM sqlite_master WHERE name = '{table}'")[0][0])
    if url.startswith("postgresql"):
        from lupo_migrate.backends.sqlalchemy import read_fingerprint

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            entry = dict(read_fingerprint(conn).objects[f"table:{table}"])
        engine.dispose()
        entry["columns"] = sorted(entry["columns"], key=lambda c: c["name"])
        return json.dumps(entry, sort_keys=True)
    return re.sub(r" AUTO_INCREMENT=\d+", "", str(_sql(url, f"SHOW CREATE TABLE {table}")[0][1]))


def _files(tmp_path: Path, *texts: str) -> Path:
    migrations = tmp_path / "m"
    migrations.mkdir(exist_ok=True)
    for number, text in enumerate(texts, start=1):
        (migrations / f"V{number}__s.sql").write_text(text, encoding="utf-8")
    return migrations


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _apply(capsys: pytest.CaptureFixture[str], migrations: Path, url: str, *more: str) -> str:
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url, *more)
    assert code == 0, (out, err)
    return re.findall(r"run (\w+): completed", out)[0]


ORDERS = (
    "CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(20), qty INT)",
    "INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2)",
)


def test_rolling_back_a_completed_run_keeps_what_the_application_wrote_since(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 1: the run only added a column; the application then inserted a row and changed
    another; the rollback drops the column and keeps both."""
    _sql(url, *ORDERS)
    before = _definition(url, "orders")
    migrations = _files(tmp_path, "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n")
    run = _apply(capsys, migrations, url)
    _sql(url, "INSERT INTO orders (id, item, qty) VALUES (3, 'c', 3)")
    _sql(url, "UPDATE orders SET qty = 20 WHERE id = 2")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert "rolled_back" in out
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [(1, "a", 1), (2, "b", 20), (3, "c", 3)]
    assert _definition(url, "orders") == before


def test_values_written_since_into_a_column_the_run_added_stop_the_rollback(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rollback drops the column the run added: values the application wrote into it
    since would go with it. Rows inserted since with NULL or the column's default, and the
    values the run itself wrote, lose nothing; a value written since stops the rollback
    before it touches anything, and --conflicts undo drops the column anyway."""
    _sql(url, *ORDERS)
    before = _definition(url, "orders")
    migrations = _files(
        tmp_path,
        "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n"
        "ALTER TABLE orders ADD COLUMN state VARCHAR(10) NOT NULL DEFAULT 'new';\n"
        "UPDATE orders SET note = 'run' WHERE id = 1;\n",
    )
    run = _apply(capsys, migrations, url)
    _sql(url, "INSERT INTO orders (id, item, qty) VALUES (3, 'c', 3)")  # NULL, 'new'
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url, "--dry-run")
    assert code == 0, (out, err)
    assert "added by the run" not in out  # nothing of the application's in them yet

    _sql(url, "UPDATE orders SET note = 'app' WHERE id = 3")
    _sql(url, "UPDATE orders SET state = 'paid' WHERE id = 2")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url, "--dry-run")
    assert code == 0, (out, err)
    assert (
        "column orders.note, added by the run, holds values written since the run in 1 row(s)"
        " ([3] 'app'): the rollback drops the column, and them"
    ) in out
    assert "column orders.state, added by the run, holds values written since the run in 1" in out
    assert "([2] 'paid')" in out
    rows = _sql(url, "SELECT id, note, state FROM orders ORDER BY id")
    for policy in ((), ("--conflicts", "keep")):
        code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url, *policy)
        assert code == REFUSED, (out, err)
        assert "orders.note, added by the run" in err
        assert "Nothing was touched" in err
        assert _sql(url, "SELECT id, note, state FROM orders ORDER BY id") == rows
    code, out, err = _cli(
        capsys, "rollback", run, str(migrations), "--db", url, "--conflicts", "undo"
    )
    assert code == 0, (out, err)
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]
    assert _definition(url, "orders") == before


def test_a_change_of_case_is_a_change(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MySQL's collations take 'b' for 'B': the run's change of case goes back all the same,
    and the application's change of case of a row the run changed is a conflict."""
    _sql(url, *ORDERS)
    migrations = _files(tmp_path, "UPDATE orders SET item = 'B', qty = 20 WHERE id = 2;\n")
    run = _apply(capsys, migrations, url)
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url, "--dry-run")
    assert "orders: 1 changed" in out, (out, err)
    assert "no conflicts" in out
    _sql(url, "UPDATE orders SET item = 'b' WHERE id = 2")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == REFUSED, (out, err)
    assert "orders [2]" in err
    _sql(url, "UPDATE orders SET item = 'B' WHERE id = 2")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [(1, "a", 1), (2, "b", 2)]


def test_rows_the_run_changed_go_back_and_the_applications_stay(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run inserted, changed and deleted rows; the application wrote other rows since:
    the run's go back by key, the application's stay."""
    _sql(url, *ORDERS, "INSERT INTO orders VALUES (4, 'd', 4), (5, 'e', 5)")
    migrations = _files(
        tmp_path,
        "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n"
        "UPDATE orders SET qty = qty * 10, note = 'x' WHERE id IN (1, 4);\n"
        "DELETE FROM orders WHERE id = 2;\n"
        "INSERT INTO orders VALUES (9, 'run', 9, 'n');\n",
    )
    run = _apply(capsys, migrations, url)
    _sql(url, "INSERT INTO orders (id, item, qty) VALUES (7, 'app', 7)")
    _sql(url, "UPDATE orders SET qty = 55 WHERE id = 5")
    _sql(url, "DELETE FROM orders WHERE id = 4")  # the application deleted a row the run changed
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url, "--dry-run")
    assert code == 0, err
    assert "orders: 1 inserted, 2 changed, 1 deleted" in out
    assert "conflicts (1)" in out
    assert "orders [4]: before the run (id=4, item='d', qty=4); after it" in out
    assert "now (no row)" in out
    # refused as it is: nothing touched
    state = _sql(url, "SELECT * FROM orders ORDER BY id")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == REFUSED
    assert "1 row(s) the run changed were changed again since: orders [4]" in err
    assert "--conflicts keep" in err
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == state
    # the application's deletion wins
    code, out, err = _cli(
        capsys, "rollback", run, str(migrations), "--db", url, "--conflicts", "keep"
    )
    assert code == 0, (out, err)
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [
        (1, "a", 1),
        (2, "b", 2),
        (5, "e", 55),
        (7, "app", 7),
    ]


def test_conflicts_undo_puts_the_rows_back_as_they_were_before_the_run(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--conflicts undo: the run's changes are undone over the application's later ones."""
    _sql(url, *ORDERS)
    migrations = _files(tmp_path, "UPDATE orders SET qty = 100 WHERE id = 1;\n")
    run = _apply(capsys, migrations, url)
    _sql(url, "UPDATE orders SET qty = 101 WHERE id = 1", "UPDATE orders SET qty = 22 WHERE id = 2")
    code, out, err = _cli(
        capsys, "rollback", run, str(migrations), "--db", url, "--conflicts", "undo"
    )
    assert code == 0, (out, err)
    assert "undone over what was written since (--conflicts undo): orders [1]" in err
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [(1, "a", 1), (2, "b", 22)]


def test_data_written_into_a_table_the_run_created_stops_the_rollback(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dropping a table the run created would lose the rows written into it since: said,
    and nothing touched, unless --conflicts undo."""
    migrations = _files(tmp_path, "CREATE TABLE audit (id INT PRIMARY KEY, what VARCHAR(20));\n")
    run = _apply(capsys, migrations, url)
    _sql(url, "INSERT INTO audit VALUES (1, 'app')")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == REFUSED
    assert "table audit, created by the run, holds 1 row(s) now and changed since" in err
    assert _sql(url, "SELECT * FROM audit") == [(1, "app")]
    code, out, err = _cli(
        capsys, "rollback", run, str(migrations), "--db", url, "--conflicts", "keep"
    )
    assert code == REFUSED
    assert "--conflicts keep cannot keep table audit" in err
    code, out, err = _cli(
        capsys, "rollback", run, str(migrations), "--db", url, "--conflicts", "undo"
    )
    assert code == 0, (out, err)
    assert "audit" not in str(_sql(url, *_tables_query(url)))


def _tables_query(url: str) -> tuple[str]:
    if url.startswith("sqlite"):
        return ("SELECT name FROM sqlite_master WHERE type = 'table'",)
    if url.startswith("postgresql"):
        return ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",)
    return ("SHOW TABLES",)


def test_a_swapped_table_comes_back_whole(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The copy-and-swap pattern (rename the old table away, create the new one under its
    name, copy, drop the old): a failing run and a rollback of the completed run both give
    back the original table with its rows."""
    _sql(url, *ORDERS)
    before = (_definition(url, "orders"), _sql(url, "SELECT * FROM orders ORDER BY id"))
    swap = (
        "ALTER TABLE orders RENAME TO orders_old;\n"
        "CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(40), qty BIGINT);\n"
        "INSERT INTO orders SELECT id, item, qty FROM orders_old;\n"
        "DROP TABLE orders_old;\n"
    )
    migrations = _files(tmp_path, swap, "SELECT no_such_function();\n")
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert (_definition(url, "orders"), _sql(url, "SELECT * FROM orders ORDER BY id")) == before
    (migrations / "V2__s.sql").unlink()
    run = _apply(capsys, migrations, url)
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert (_definition(url, "orders"), _sql(url, "SELECT * FROM orders ORDER BY id")) == before


def test_a_file_that_writes_the_parent_and_drops_the_child_runs_and_rolls_back(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``INSERT INTO parent ...; DROP TABLE child;`` in one file, the child with a foreign key
    to the parent (and, on MariaDB, a trigger): the drop is a soft drop, whose preparations
    (the child's foreign keys and triggers go) must not wait for the locks the file's own
    INSERT holds (it used to, then crashed with 1205 after the lock wait). The rollback
    brings the child back whole."""
    _sql(
        url,
        "CREATE TABLE p (id INT PRIMARY KEY)",
        "CREATE TABLE q (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES p (id))",
        "CREATE TABLE audit (id INT)",
        "INSERT INTO p VALUES (1)",
        "INSERT INTO q VALUES (1, 1)",
    )
    if url.startswith("mysql"):
        _sql(
            url,
            "CREATE TRIGGER q_audit AFTER INSERT ON q FOR EACH ROW"
            " INSERT INTO audit VALUES (NEW.id)",
        )
    before = {t: _definition(url, t) for t in ("p", "q")}
    migrations = _files(tmp_path, "INSERT INTO p VALUES (100);\nDROP TABLE q;\n")
    run = _apply(capsys, migrations, url)
    assert _sql(url, "SELECT id FROM p ORDER BY id") == [(1,), (100,)]
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert {t: _definition(url, t) for t in ("p", "q")} == before
    assert _sql(url, "SELECT * FROM q") == [(1, 1)]
    assert _sql(url, "SELECT id FROM p ORDER BY id") == [(1,)]
    if url.startswith("mysql"):
        _sql(url, "INSERT INTO q VALUES (2, 1)")
        assert _sql(url, "SELECT id FROM audit") == [(2,)]  # the trigger is back


BIG = 200_000


@pytest.mark.slow
def test_a_table_over_the_backup_limit_is_never_emptied(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 2: a step with a down of its own changes a table of 200,000 rows (over the
    default limit: no copy is kept); its down then fails. The rollback stops, blocked, and
    says so; the table keeps its 200,000 rows."""
    _sql(url, "CREATE TABLE big (id INT PRIMARY KEY, v INT)")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO big (id, v) VALUES " + ", ".join(f"({n}, {n})" for n in range(1, 1001))
        )
        for step in range(1, BIG // 1000):
            conn.exec_driver_sql(
                f"INSERT INTO big (id, v) SELECT id + {step * 1000}, v FROM big WHERE id <= 1000"
            )
    engine.dispose()
    total = _sql(url, "SELECT SUM(v) FROM big")[0][0]
    migrations = _files(
        tmp_path,
        "UPDATE big SET v = v + 1 WHERE id <= 10;\n-- lupo:down\nUPDATE big SET nope = 1;\n",
        "SELECT no_such_function();\n",
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == ROLLBACK_INCOMPLETE, (out, err)
    assert "no copy was kept of the rows it changed in big" in err
    assert _sql(url, "SELECT COUNT(*) FROM big") == [(BIG,)]
    assert _sql(url, "SELECT SUM(v) FROM big") == [(total + 10,)]  # left as it is
    code, out, err = _cli(capsys, "status", str(migrations), "--db", url)
    assert "BLOCKED" in out


def test_an_additive_change_to_a_big_table_keeps_no_copy_of_it(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ADD COLUMN and CREATE INDEX on a table over the backup limit: no copy of its rows is
    taken (the run is not refused), and the rollback takes the additions away again."""
    _sql(url, "CREATE TABLE wide (id INT PRIMARY KEY, v INT)")
    _sql(url, "INSERT INTO wide VALUES " + ", ".join(f"({n}, {n})" for n in range(1, 51)))
    before = _definition(url, "wide")
    migrations = _files(
        tmp_path, "ALTER TABLE wide ADD COLUMN w INT;\nCREATE INDEX ix_wide_v ON wide (v);\n"
    )
    run = _apply(capsys, migrations, url, "--backup-limit", "10")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert _definition(url, "wide") == before
    assert _sql(url, "SELECT COUNT(*), SUM(v) FROM wide") == [(50, 1275)]


def test_a_dropped_column_of_a_big_table_comes_back_with_its_values(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DROP COLUMN on a table over the backup limit: its values are set aside by key, and
    the rollback (of a completed run, the application having inserted a row since) puts the
    column back where it was, with them."""
    _sql(url, "CREATE TABLE wide (id INT PRIMARY KEY, v INT, note VARCHAR(10) DEFAULT 'd')")
    _sql(url, "INSERT INTO wide VALUES " + ", ".join(f"({n}, {n}, 'n{n}')" for n in range(1, 51)))
    before = _definition(url, "wide")
    migrations = _files(tmp_path, "ALTER TABLE wide DROP COLUMN note;\n")
    run = _apply(capsys, migrations, url, "--backup-limit", "10")
    _sql(url, "INSERT INTO wide (id, v) VALUES (51, 51)")
    code, out, err = _cli(capsys, "rollback", run, str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert _definition(url, "wide") == before
    rows = _sql(url, "SELECT id, note FROM wide ORDER BY id")
    assert rows[:2] == [(1, "n1"), (2, "n2")]
    assert rows[-1] == (51, "d")  # the application's row, with the column's default


def test_sqlite_recover_after_a_kill_in_the_first_statement_keeps_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 3: kill -9 during the first statement that touches an existing table (the
    step's transaction dies with the process): recover drops nothing that existed before."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _sql(url, "CREATE TABLE keep (id INTEGER PRIMARY KEY, v INT)")
    _sql(url, "INSERT INTO keep (v) VALUES " + ", ".join(f"({n})" for n in range(2000)))
    migrations = _files(tmp_path, "ALTER TABLE keep ADD COLUMN w INT;\nUPDATE keep SET w = v;\n")
    killed = subprocess.run(
        [sys.executable, str(KILLER), "after", "0", str(migrations), "--db", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    code, out, err = _cli(capsys, "recover", str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert "dropped 1" not in err
    assert _sql(url, "SELECT COUNT(*) FROM keep") == [(2000,)]
    assert _definition(url, "keep") == "CREATE TABLE keep (id INTEGER PRIMARY KEY, v INT)"


def _seven_then_orders(url: str, tmp_path: Path) -> Path:
    """Seven steps that create tables, then one that changes rows of orders."""
    _sql(url, *ORDERS)
    return _files(
        tmp_path,
        *[f"CREATE TABLE x{n} (id INT);\n" for n in range(1, 8)],
        "UPDATE orders SET qty = qty + 1 WHERE id = 2;\n",
    )


@pytest.mark.mariadb
def test_an_application_row_lock_neither_hangs_nor_crashes_the_run(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 5: a session holds ``SELECT ... FOR UPDATE`` on a table the run copies: the copy
    reads without row locks, so the run goes on (and completes)."""
    migrations = _seven_then_orders(mariadb_url, tmp_path)
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as app:
        app.exec_driver_sql("BEGIN")
        app.exec_driver_sql("SELECT * FROM orders WHERE id = 1 FOR UPDATE").all()
        began = time.monotonic()
        code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
        took = time.monotonic() - began
        app.exec_driver_sql("ROLLBACK")
    engine.dispose()
    assert code == 0, (out, err)
    assert took < 20, took
    assert _sql(mariadb_url, "SELECT qty FROM orders ORDER BY id") == [(1,), (3,)]


@pytest.mark.mariadb
def test_a_table_locked_by_the_application_fails_the_run_as_blocked_naming_it(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 5: a session holds the table itself (``LOCK TABLES ... WRITE``) when the run
    must copy it: the copy waits the short lock wait, then the run fails as blocked, names
    the session, and rolls back the 7 steps before; nothing crashes."""
    migrations = _seven_then_orders(mariadb_url, tmp_path)
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as app:
        app.exec_driver_sql("LOCK TABLES orders WRITE")
        code, out, err = _cli(capsys, "apply", str(migrations), "--db", mariadb_url)
        app.exec_driver_sql("UNLOCK TABLES")
    engine.dispose()
    assert code == ROLLED_BACK_FAILED, (out, err)
    assert "rolled_back, 0 of 8 step(s) applied" in out
    assert "waited 5 s for a lock another session holds (session " in err
    assert "Traceback" not in err
    assert _sql(mariadb_url, "SHOW TABLES") == [("orders",)]


@pytest.mark.parametrize("kind", ALL_ENGINES)
def test_an_embedded_targets_backups_never_land_among_the_applications_tables(
    kind: str, tmp_path: Path
) -> None:
    """Case 10: ``SqlAlchemyTarget(engine)`` with no backup schema keeps its copies beside
    the orchestration tables, not in the application's schema."""
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyTarget

    with fresh_database(kind, tmp_path) as url:
        _sql(url, *ORDERS)
        engine = sa.create_engine(url)
        target = SqlAlchemyTarget(engine)
        assert target.backup_schema is not None
        pre = target.pre_images("0123456789abcdef")
        assert pre is not None
        pre.start()
        pre.plan_run(["UPDATE orders SET qty = 0"])
        pre.before("UPDATE orders SET qty = 0")
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
        assert tables == ["orders"], tables
        assert pre.tables["orders"].backup is not None
        pre.drop_backups()
        engine.dispose()


@pytest.mark.parametrize(
    ("default", "literal"),
    [
        (None, None),
        ("NULL", None),  # MariaDB: no default
        ("'new'", "new"),
        ("'it''s'", "it's"),
        ("'new'::character varying", "new"),
        ("0", "0"),
        ("(-1)", "-1"),
        ("1.50", "1.50"),
        ("false", "false"),
        ("current_timestamp()", None),
        ("nextval('t_id_seq'::regclass)", None),
    ],
)
def test_a_columns_literal_default_is_told_from_an_expression(
    default: str | None, literal: str | None
) -> None:
    from lupo_migrate.backends.sqlalchemy._added import literal_default

    assert literal_default(default) == literal


@pytest.mark.parametrize("policy", [None, "keep", "undo"])
def test_a_rollback_killed_midway_is_finished_by_recover_and_keeps_the_applications_rows(
    url: str, policy: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rollback RUN`` of a completed run dies (-9) after its first undo statement, with
    rows the application wrote since (and, with ``--conflicts``, a row the run changed that
    the application changed again): ``recover`` finishes the rollback by key, as the
    rollback itself would have, with the side the operator chose winning the conflict."""
    from test_recover_property import _recover

    _sql(url, *ORDERS)
    before = _definition(url, "orders")
    migrations = _files(
        tmp_path,
        "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n",
        "UPDATE orders SET qty = qty * 10 WHERE id = 1;\n",
    )
    run = _apply(capsys, migrations, url)
    _sql(url, "INSERT INTO orders (id, item, qty) VALUES (3, 'c', 3)")
    _sql(url, "UPDATE orders SET item = 'B' WHERE id = 2")
    more = []
    if policy is not None:
        _sql(url, "UPDATE orders SET item = 'A' WHERE id = 1")  # the run changed row 1
        more = ["--conflicts", policy]
    killer = [sys.executable, str(KILLER), "after", "0", str(migrations), "--db", url]
    killed = subprocess.run(
        [*killer, "--rollback", run, *more],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    code, out, err = _recover(url, migrations)
    assert code == 0, (out, err)
    assert "recovered, rolled_back" in out, (out, err)
    first = {None: (1, "a", 1), "keep": (1, "A", 10), "undo": (1, "a", 1)}[policy]
    assert _sql(url, "SELECT * FROM orders ORDER BY id") == [first, (2, "B", 2), (3, "c", 3)]
    assert _definition(url, "orders") == before


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
)  # (SQLite saves in a transaction: its connection of its own is engine.begin())
def test_the_rollback_material_is_never_left_empty_by_a_process_that_dies_saving_it(
    kind: str, tmp_path: Path
) -> None:
    """The material is replaced (DELETE, INSERT) on a connection of its own, which
    autocommits on MySQL and PostgreSQL: a process killed between the two left the table
    empty, and ``recover`` then found no pre-images and refused to undo a DROP (seen with
    kill -9 in the random-kill test on MariaDB; PostgreSQL had the same window). The two
    now commit together: dying in between keeps the material saved before. Saving what is
    saved already writes nothing."""
    with fresh_database(kind, tmp_path) as url:
        _save_dying(url)


def _save_dying(database_url: str) -> None:
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyTarget

    _sql(database_url, *ORDERS)
    engine = sa.create_engine(database_url)
    sent: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _watch(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "lupo_bk_0123456789ab_0" in statement:
            sent.append(statement.split()[0])
            if statement.startswith("INSERT") and dying:
                raise KeyboardInterrupt  # the process stops after the DELETE was sent

    dying = False
    try:
        pre = SqlAlchemyTarget(engine).pre_images("0123456789abcdef")
        assert pre is not None
        pre.start()
        pre.plan_run(["UPDATE orders SET qty = 0"])
        pre.before("UPDATE orders SET qty = 0")
        assert pre.save() is not None
        sent.clear()
        assert pre.save() is not None
        assert sent == []  # the same material again: nothing sent
        pre.unknown.append("changed")  # something new to save
        dying = True
        with pytest.raises(KeyboardInterrupt):
            pre.save()
        assert sent[-2:] == ["DELETE", "INSERT"]
        dying = False
        again = SqlAlchemyTarget(engine).pre_images("0123456789abcdef")
        assert again is not None
        assert again.load()
        assert again.tables["orders"].backup == pre.tables["orders"].backup
        assert again.unknown == []  # the material saved before, whole
        pre.drop_backups()
    finally:
        engine.dispose()
