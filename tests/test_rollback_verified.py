"""Verified rollback on MariaDB: pre-images, backups, restore, and the comparison recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import needs_corpus
from lupo_migrate import Fingerprint, TableData, diff
from lupo_migrate.backends.sqlalchemy import read_fingerprint, table_data
from lupo_migrate.cli import main
from test_apply import CLEAN_CORPUS, LIVEHELP, _load_baseline, corpus_dir

pytestmark = pytest.mark.mariadb

RUN_FAILED = 11  # the run failed and was rolled back

FAILING_CORPUS = {
    "20260122_channel_system_migration.sql": "Duplicate column name 'semantic_weight'",
    "4.1.2_clarify_mood_rgb_terminology.sql": "Unknown column 'mood_rgb'",
    "4_1_2_fix_labs_timestamps.sql": "Unknown column 'resolved_ymdhis'",
}


def _state(url: str) -> tuple[Fingerprint, dict[str, TableData]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        fingerprint = read_fingerprint(conn)
        data = table_data(conn, fingerprint.tables)
    engine.dispose()
    return fingerprint, data


State = tuple[Fingerprint, dict[str, TableData]]


def _same(state: State, expected: State, why: object = None) -> None:
    """*state* (from :func:`_state`) equals *expected*: schema and every table's rows."""
    assert [str(d) for d in diff(expected[0], state[0])] == [], why
    assert state[1] == expected[1], why


def _run(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def _apply(
    capsys: pytest.CaptureFixture[str], url: str, migrations: Path, *more: str
) -> tuple[int, str, str]:
    database = sa.make_url(url).database
    args = ["apply", str(migrations), "--db", url, "--orchestration-schema", f"{database}_orch"]
    code = main([*args, *more])
    out, err = capsys.readouterr()
    return code, out, err


def _log(url: str) -> list[tuple[str, str, str]]:
    database = sa.make_url(url).database
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT severity, code, message FROM `{database}_orch`.migration_validation_log"
            " ORDER BY id"
        ).all()
        leftovers = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.tables"
            f" WHERE table_schema = '{database}_orch' AND table_name LIKE 'lupo\\_bk\\_%%'"
        ).scalar_one()
    engine.dispose()
    assert leftovers == 0  # backups dropped once the rollback was verified
    return [tuple(r) for r in rows]


@pytest.fixture(name="orch_cleanup")
def _orch_cleanup(mariadb_url: str) -> Iterator[None]:
    yield
    _run(mariadb_url, f"DROP DATABASE IF EXISTS `{sa.make_url(mariadb_url).database}_orch`")


def _corpus_run(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, name: str
) -> tuple[int, str, str]:
    migrations, manifest = corpus_dir(tmp_path, [name])
    database = sa.make_url(url).database
    return _apply(
        capsys,
        url,
        migrations,
        "--manifest",
        str(manifest),
        "--rename",
        f"lupopedia={database}",
        "--table-budget",
        "250",
    )


@needs_corpus
@pytest.mark.usefixtures("orch_cleanup")
@pytest.mark.parametrize("name", sorted(FAILING_CORPUS))
def test_failing_corpus_migration_rolls_back_to_the_baseline(
    name: str, mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each corpus file that fails part-way: class A, rolled back, schema and rows as before."""
    _load_baseline(mariadb_url)
    before = _state(mariadb_url)
    code, out, err = _corpus_run(capsys, mariadb_url, tmp_path, name)
    assert code == RUN_FAILED, (out, err)
    assert "rolled_back" in out
    assert FAILING_CORPUS[name] in err
    after = _state(mariadb_url)
    assert diff(before[0], after[0]) == ()
    assert after[1] == before[1]
    codes = [code for _, code, _ in _log(mariadb_url)]
    assert [c for c in codes if c.startswith("rollback")] == ["rollback-verified"]
    database = sa.make_url(mariadb_url).database
    args = ["--db", mariadb_url, "--orchestration-schema", f"{database}_orch"]
    assert main(["history", str(tmp_path / "m"), *args]) == 0
    assert "rolled_back  class A  0/1 step(s)" in capsys.readouterr().out


@needs_corpus
@pytest.mark.usefixtures("orch_cleanup")
def test_older_mood_rgb_definitions_and_rows_are_restored_exactly(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A baseline where the two MODIFYs before the failing one really change columns with rows."""
    _load_baseline(mariadb_url)
    _run(
        mariadb_url,
        "ALTER TABLE lupo_dialog_channels MODIFY COLUMN mood_rgb VARCHAR(20) NULL"
        " DEFAULT 'ffffff' COMMENT 'old colour'",
        "ALTER TABLE lupo_dialog_messages MODIFY COLUMN mood_rgb VARCHAR(12) NULL COMMENT 'old'",
        "INSERT INTO lupo_dialog_channels (channel_name, file_source, mood_rgb,"
        " created_timestamp, modified_timestamp) VALUES ('c1', 'f.md', 'abcdef', 1, 1),"
        " ('c2', 'g.md', NULL, 2, 2)",
        "INSERT INTO lupo_dialog_messages (message_text, mood_rgb, created_ymdhis,"
        " updated_ymdhis) VALUES ('hello', 'ff00ff', 1, 1), ('x', '123456', 2, 2)",
    )
    before = _state(mariadb_url)
    code, out, err = _corpus_run(
        capsys, mariadb_url, tmp_path, "4.1.2_clarify_mood_rgb_terminology.sql"
    )
    assert code == RUN_FAILED, (out, err)
    after = _state(mariadb_url)
    assert diff(before[0], after[0]) == ()
    assert after[1] == before[1]
    (verified,) = [row for row in _log(mariadb_url) if row[1].startswith("rollback")]
    assert "restored 2" in verified[2]


@pytest.mark.usefixtures("orch_cleanup")
def test_updates_drops_and_deletes_of_earlier_steps_are_put_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four steps change rows and columns of existing tables; the fifth fails: all restored."""
    _run(
        mariadb_url,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT, w VARCHAR(10) DEFAULT 'w')",
        "CREATE TABLE u (id INT PRIMARY KEY, t_id INT, CONSTRAINT fk_u_t FOREIGN KEY (t_id)"
        " REFERENCES t (id))",
        "CREATE TRIGGER trg_t BEFORE UPDATE ON t FOR EACH ROW SET NEW.w = UPPER(NEW.w)",
        "INSERT INTO t VALUES (1, 10, 'a'), (2, 20, NULL), (3, 30, 'c')",
        "INSERT INTO u VALUES (1, 1), (2, 3)",
    )
    before = _state(mariadb_url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    files = {
        "V1__bump.sql": "UPDATE t SET v = v + 1;\n",
        "V2__drop_w.sql": "ALTER TABLE t DROP COLUMN w;\n",
        "V3__new.sql": "CREATE TABLE n (id INT);\nINSERT INTO n VALUES (1);\n",
        "V4__forget.sql": "DELETE FROM u;\nDROP TRIGGER IF EXISTS trg_t;\n",
        "V5__fails.sql": "UPDATE t SET v = 0;\nSELECT no_such_function();\n",
    }
    for file, sql in files.items():
        (migrations / file).write_text(sql)
    code, out, err = _apply(capsys, mariadb_url, migrations)
    assert code == RUN_FAILED, (out, err)
    assert "no_such_function" in err
    after = _state(mariadb_url)
    assert [str(d) for d in diff(before[0], after[0])] == []
    assert after[1] == before[1]
    (verified,) = [row for row in _log(mariadb_url) if row[1].startswith("rollback")]
    assert verified[1] == "rollback-verified"


@pytest.mark.usefixtures("orch_cleanup")
def test_a_table_over_the_backup_limit_is_refused_by_name(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(
        mariadb_url,
        "CREATE TABLE big (id INT PRIMARY KEY)",
        "INSERT INTO big VALUES (1), (2), (3), (4), (5)",
    )
    before = _state(mariadb_url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__wipe.sql").write_text("DELETE FROM big;\n")
    code, _, err = _apply(capsys, mariadb_url, migrations, "--backup-limit", "3")
    assert code == RUN_FAILED
    # said before anything runs, with the remedy
    assert "V1__wipe changes table big (about 5 rows), over the backup limit of 3 rows" in err
    assert "give the step a down section" in err
    assert "down section" in err
    assert _state(mariadb_url) == before  # refused before the statement ran


def _livehelp_tables() -> list[str]:
    """The eight tables the 4.1.17 migration drops, made with rows, an index and a trigger."""
    statements = []
    for n, name in enumerate(LIVEHELP):
        table = f"livehelp_{name}"
        statements += [
            f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(40)"
            f" NOT NULL DEFAULT '', hits INT NULL, note TEXT, KEY idx_{name}_label (label))",
            f"INSERT INTO {table} (label, hits, note) VALUES ('a{n}', {n}, NULL),"
            f" ('b{n}', NULL, 'ünïcode {n}'), ('c{n}', 3, REPEAT('x', 300))",
        ]
    statements.append(
        "CREATE TRIGGER trg_livehelp_hits BEFORE INSERT ON livehelp_sessions FOR EACH ROW"
        " SET NEW.hits = COALESCE(NEW.hits, 0)"
    )
    return statements


@needs_corpus
@pytest.mark.usefixtures("orch_cleanup")
def test_the_13_clean_migrations_then_rollback_run_give_the_baseline_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run applies the 13 clean files (inserts and the livehelp drops included);
    `rollback RUN` puts back the schema and every row, the dropped tables with theirs."""
    _load_baseline(mariadb_url)
    _run(mariadb_url, *_livehelp_tables())
    before = _state(mariadb_url)
    migrations, manifest = corpus_dir(tmp_path, CLEAN_CORPUS)
    database = sa.make_url(mariadb_url).database
    more = ["--manifest", str(manifest), "--rename", f"lupopedia={database}"]
    code, out, err = _apply(capsys, mariadb_url, migrations, *more, "--table-budget", "250")
    assert code == 0, (out, err)
    assert "completed, 13 of 13" in out
    applied = _state(mariadb_url)
    assert "table:livehelp_sessions" not in applied[0].objects
    assert sum(d.rows for d in applied[1].values()) > sum(d.rows for d in before[1].values())
    run_id = out.split()[1].rstrip(":")
    orch = ["--db", mariadb_url, "--orchestration-schema", f"{database}_orch"]
    assert main(["decisions", *orch]) == 0  # the database only: no directory, no manifest
    listed = capsys.readouterr().out
    assert f"{run_id}  run  available    13 step(s), 23h59m left" in listed
    assert main(["rollback", run_id[:10], str(migrations), *orch, *more, "--operator", "ops"]) == 0
    out, err = capsys.readouterr()
    assert "rolled_back, 13 step(s) of the run undone" in out, err
    after = _state(mariadb_url)
    assert [str(d) for d in diff(before[0], after[0])] == []
    assert after[1] == before[1]
    assert after[1]["livehelp_sessions"].rows == 3
    log = _log(mariadb_url)  # and no backup table is left
    assert log[-1][1] == "rollback-verified"
    assert main(["status", str(migrations), *orch, *more]) == 0
    assert "0 applied, 13 pending" in capsys.readouterr().out
    assert main(["rollback", run_id, str(migrations), *orch, *more]) == 13
    assert "the run was rolled back already by ops" in capsys.readouterr().err


@pytest.mark.usefixtures("orch_cleanup")
def test_a_step_with_a_down_section_may_change_a_table_over_the_limit(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No copy is taken; the down section undoes it and the rows are compared afterwards."""
    _run(
        mariadb_url,
        "CREATE TABLE big (id INT PRIMARY KEY, v INT)",
        "INSERT INTO big VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)",
    )
    before = _state(mariadb_url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__bump.sql").write_text(
        "UPDATE big SET v = v + 10 WHERE id > 0;\n-- lupo:down\nUPDATE big SET v = v - 10;\n"
    )
    (migrations / "V2__fails.sql").write_text("SELECT no_such_function();\n")
    code, _, err = _apply(capsys, mariadb_url, migrations, "--backup-limit", "3")
    assert code == RUN_FAILED
    assert "no_such_function" in err
    assert _state(mariadb_url) == before
    rows = [row for row in _log(mariadb_url) if row[1].startswith("rollback")]
    assert [row[1] for row in rows] == ["rollback-verified"]
