"""Runs whose records outgrow a MariaDB ``TEXT`` column (64 KB), and the widening upgrade.

A run's rollback record lists every step id it applied (``migration_rollback_log.scope``):
with long ids, a few hundred steps are more than 64 KB. Schema version 3 makes every
free-text orchestration column ``LONGTEXT`` on MySQL/MariaDB and widens existing tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from lupo_migrate import errors
from lupo_migrate.backends import ManualClock
from lupo_migrate.backends.sqlalchemy import RollbackDecision, SqlAlchemyStorage, _creating
from lupo_migrate.cli import main
from lupo_migrate.core.tables import SCHEMA_VERSION

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
#: What a MariaDB ``TEXT`` holds, in bytes.
TEXT_BYTES = 65_535
#: The free-text columns of the orchestration tables: ``LONGTEXT`` on MySQL/MariaDB.
FREE_TEXT = {
    "migration_batches": {"state", "steps"},
    "migration_progress": {"statement"},
    "migration_validation_log": {"message", "hint"},
    "migration_rollback_log": {"scope", "detail"},
    "migration_system_state": {"fingerprint"},
    "migration_alerts": {"message"},
}
#: Steps whose scope is just over 64 KB: 195 bytes an id of 191 characters in JSON.
STEPS = TEXT_BYTES // 195 + 10
#: The ones schema version 2 made ``TEXT`` (64 KB) on MySQL/MariaDB.
WERE_TEXT = {
    "migration_validation_log": {"message", "hint"},
    "migration_rollback_log": {"scope", "detail"},
    "migration_alerts": {"message"},
}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def orchestration_url(url: str) -> str:
    """Where ``apply --db url`` keeps its tables on MariaDB (the default placement)."""
    made = sa.make_url(url)
    return made.set(database=f"{made.database}_lupo_orchestration").render_as_string(False)


@pytest.fixture(name="orchestration")
def _orchestration(mariadb_url: str) -> Iterator[sa.Engine]:
    """The orchestration database of *mariadb_url* (created here if a test needs it first;
    dropped with the target's database)."""
    url = orchestration_url(mariadb_url)
    server = sa.create_engine(mariadb_url)
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{sa.make_url(url).database}`")
    server.dispose()
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def write_steps(directory: Path, count: int) -> list[str]:
    """*count* migration files with 191-character ids (the longest a ledger row takes): the
    first creates a table, the others insert a row each. Returns the ids."""
    directory.mkdir()
    ids = []
    for index in range(count):
        prefix = f"V{index:04d}__"
        step_id = prefix + "insert_a_row_into_the_shared_tracking_table_".ljust(
            191 - len(prefix), "x"
        )
        sql = (
            "CREATE TABLE tracking (id INT PRIMARY KEY);\n"
            if index == 0
            else f"INSERT INTO tracking (id) VALUES ({index});\n"
        )
        (directory / f"{step_id}.sql").write_text(sql)
        ids.append(step_id)
    return ids


def column_types(engine: sa.Engine) -> dict[str, dict[str, sa.types.TypeEngine[object]]]:
    """The reflected column types of every table in *engine*'s database, by table."""
    inspector = sa.inspect(engine)
    return {
        table: {c["name"]: c["type"] for c in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


def narrow(engine: sa.Engine) -> None:
    """Make the columns version 2 made ``TEXT`` ``TEXT`` again, as version 2 left them."""
    tables = SqlAlchemyStorage(engine).tables
    by_name = {t.name: t for t in tables.all}
    with engine.begin() as conn:
        for table, columns in WERE_TEXT.items():
            changes = ", ".join(
                f"MODIFY COLUMN {c} TEXT {'NULL' if by_name[table].c[c].nullable else 'NOT NULL'}"
                for c in sorted(columns)
            )
            conn.exec_driver_sql(f"ALTER TABLE {table} {changes}")


def set_version(engine: sa.Engine, version: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE migration_system_state SET schema_version = %s WHERE target = '__schema__'",
            (version,),
        )


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_run_whose_scope_outgrows_64_kb_completes_and_rolls_back(
    mariadb_url: str,
    orchestration: sa.Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Version 2 ended such a run with exit 8 (1406 Data too long for column 'scope'), left
    in completing with writes frozen; now it completes, and its rollback record holds every
    step id, which the rollback then undoes."""
    ids = write_steps(tmp_path / "m", STEPS)
    assert len(json.dumps(ids)) > TEXT_BYTES  # the scope does not fit a TEXT
    args = [str(tmp_path / "m"), "--db", mariadb_url]

    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, err
    assert f"completed, {STEPS} of {STEPS} step(s) applied" in out
    records = SqlAlchemyStorage(orchestration).decisions(None)
    assert [(r.classification, r.scope) for r in records] == [(None, tuple(ids))]

    code, out, err = cli(capsys, "rollback", records[0].run_id, *args)
    assert code == 0, err
    assert f"{STEPS} step(s) of the run undone" in out
    code, out, _ = cli(capsys, "status", *args)
    assert code == 0
    assert f"0 applied, {STEPS} pending" in out
    engine = sa.create_engine(mariadb_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_run_stuck_in_completing_on_a_version_2_schema_resumes_after_the_upgrade(
    mariadb_url: str,
    orchestration: sa.Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run version 2 could not complete (its scope too long for a TEXT) is finished by
    ``recover --resume`` once the tables are widened: the upgrade runs before it."""
    write_steps(tmp_path / "m", STEPS)
    args = [str(tmp_path / "m"), "--db", mariadb_url]
    SqlAlchemyStorage(orchestration).ensure_schema()
    narrow(orchestration)  # the tables as version 2 made them, not yet marked version 2

    code, _, err = cli(capsys, "apply", *args)
    assert code == errors.StorageError.exit_code
    assert "Data too long for column 'scope'" in err
    code, _, err = cli(capsys, "status", *args)
    assert "died in completing" in err

    set_version(orchestration, 2)  # as version 2 left them: upgraded at the next start
    code, out, err = cli(capsys, "recover", "--resume", *args)
    assert code == 0, err
    assert f"completed ({STEPS} step(s) applied)" in out
    assert all(
        isinstance(column_types(orchestration)[t][c], mysql.LONGTEXT)
        for t, columns in WERE_TEXT.items()
        for c in columns
    )
    code, out, _ = cli(capsys, "status", *args)
    assert f"{STEPS} applied, 0 pending" in out
    assert "completed" in out
    assert "frozen" not in out


@pytest.mark.mariadb
def test_every_free_text_column_is_longtext_on_mariadb(orchestration: sa.Engine) -> None:
    """New tables: no free-text column has TEXT's 64 KB ceiling (and the list of them here
    is the whole list)."""
    SqlAlchemyStorage(orchestration).ensure_schema()
    types = column_types(orchestration)
    narrower = {
        f"{table}.{name}": type(types[table][name]).__name__
        for table, names in FREE_TEXT.items()
        for name in names
        if not isinstance(types[table][name], mysql.LONGTEXT)
    }
    assert narrower == {}
    texts = {
        f"{table}.{name}"
        for table, columns in types.items()
        for name, kind in columns.items()
        if isinstance(kind, (sa.Text, mysql.TINYTEXT, mysql.MEDIUMTEXT, mysql.LONGTEXT))
    }
    assert texts == {f"{t}.{c}" for t, columns in FREE_TEXT.items() for c in columns}


@pytest.mark.mariadb
def test_a_version_2_schema_is_widened_in_place_and_keeps_its_rows(
    orchestration: sa.Engine,
) -> None:
    """The TEXT columns of version 2 become LONGTEXT, nullability, collation and rows kept;
    a second upgrade changes nothing; a scope over 64 KB is then kept whole."""
    storage = SqlAlchemyStorage(orchestration, clock=ManualClock(T0))
    storage.ensure_schema()
    narrow(orchestration)
    set_version(orchestration, 2)
    old = storage.record_decision(
        RollbackDecision(run_id="r1", classification=None, scope=("a", "b"), recorded_at=1)
    )
    storage.record_alert("r1", "info", "kept", 1)

    again = SqlAlchemyStorage(orchestration, clock=ManualClock(T0))
    assert again.ensure_schema() == SCHEMA_VERSION
    types = column_types(orchestration)
    assert all(isinstance(types[t][c], mysql.LONGTEXT) for t, cs in FREE_TEXT.items() for c in cs)
    nullable = {
        c["name"]: c["nullable"]
        for c in sa.inspect(orchestration).get_columns("migration_rollback_log")
    }
    assert (nullable["scope"], nullable["detail"]) == (False, True)
    assert again.decisions("r1") == [old]
    assert [a.message for a in again.alerts("r1")] == ["kept"]
    with orchestration.connect() as conn:  # still the binary collation: 'kept' is not 'KEPT'
        assert (
            conn.exec_driver_sql(
                "SELECT COUNT(*) FROM migration_alerts WHERE message = 'KEPT'"
            ).scalar()
            == 0
        )
    assert _creating.widen(orchestration, again.tables) == []  # nothing left to widen
    assert again.ensure_schema() == SCHEMA_VERSION

    scope = tuple(f"step_{n:06d}_".ljust(190, "x") for n in range(400))
    assert len(json.dumps(scope)) > TEXT_BYTES
    big = again.record_decision(
        RollbackDecision(run_id="r2", classification=None, scope=scope, recorded_at=2)
    )
    assert again.decisions("r2") == [big]
    assert big.scope == scope


def test_an_upgrade_to_3_widens_only_on_mysql_and_mariadb(database_url: str) -> None:
    """A version 2 schema is upgraded to 3 on every engine; only MySQL/MariaDB have a
    narrower TEXT to widen, and widening twice finds nothing to do."""
    engine = sa.create_engine(database_url)
    try:
        storage = SqlAlchemyStorage(engine)
        storage.ensure_schema()
        mysql_like = engine.dialect.name in ("mysql", "mariadb")
        if mysql_like:
            narrow(engine)
        assert sorted(_creating.widen(engine, storage.tables)) == (
            sorted(f"{t}.{c}" for t, cs in WERE_TEXT.items() for c in cs) if mysql_like else []
        )
        assert _creating.widen(engine, storage.tables) == []
        t = storage.tables.system_state
        with engine.begin() as conn:
            conn.execute(t.update().where(t.c.target == "__schema__").values(schema_version=2))
        assert SqlAlchemyStorage(engine).ensure_schema() == SCHEMA_VERSION
        with engine.connect() as conn:
            found = conn.execute(sa.select(t.c.schema_version).where(t.c.target == "__schema__"))
            assert found.scalar_one() == SCHEMA_VERSION
    finally:
        engine.dispose()
