"""Federation: where core, orchestration and ephemeral live, and what counts against the
table budget."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from databases import MARIADB_SERVER, POSTGRESQL_SERVER, fresh_database
from lupo_migrate.backends.sqlalchemy.storage import SqlAlchemyStorage
from lupo_migrate.backends.sqlalchemy.target import attach_backups
from lupo_migrate.cli import main
from lupo_migrate.core.placement import Placement, place
from lupo_migrate.errors import ConfigurationError, StepError
from lupo_migrate.session.config import Settings
from lupo_migrate.session.session import session

SERVERS = [
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


# --------------------------------------------------------------------------- the rule


class TestPlace:
    def test_defaults_per_dialect(self) -> None:
        """A database of their own per application on MySQL, fixed schemas on PostgreSQL,
        the store's default schema when the store is another database."""
        assert place("mariadb", database="app", schemas={}) == Placement(
            core="app", orchestration="app_lupo_orchestration", ephemeral="app_lupo_ephemeral"
        )
        assert place("postgresql", database="app", schemas={}) == Placement(
            core="public", orchestration="lupo_orchestration", ephemeral="lupo_ephemeral"
        )
        assert place("sqlite", database="/x/app.db", schemas={}, separate=True) == Placement(
            core="main", orchestration=None, ephemeral=None
        )
        assert place("mysql", database="app", schemas={}, separate=True) == Placement(
            core="app", orchestration=None, ephemeral=None
        )

    def test_configured_names_win(self) -> None:
        """schemas.* names are used as given (the core one for the default names too)."""
        schemas = {"core": "shop", "orchestration": "ops", "ephemeral": "tmp"}
        assert place("mysql", database="x", schemas=schemas) == Placement(
            core="shop", orchestration="ops", ephemeral="tmp"
        )
        assert place("mysql", database="x", schemas={"core": "shop"}).orchestration == (
            "shop_lupo_orchestration"
        )

    @pytest.mark.parametrize(
        ("dialect", "schemas", "message"),
        [
            ("mysql", {"orchestration": "app"}, "schemas.orchestration = 'app' is the core"),
            ("mysql", {"ephemeral": "app"}, "schemas.ephemeral = 'app' is the core"),
            ("postgresql", {"orchestration": "public"}, "'public' is the core schema itself"),
            ("postgresql", {"core": "s", "ephemeral": "s"}, "schemas.ephemeral = 's' is the core"),
            ("sqlite", {"orchestration": "o"}, "cannot be used with a SQLite target"),
            ("mysql", {"core": "c" * 50}, "over the 64 mysql allows"),
        ],
    )
    def test_orchestration_never_lands_in_core(
        self, dialect: str, schemas: dict[str, str], message: str
    ) -> None:
        """Settings that would put lupo_migrate's tables among the core ones are refused,
        saying what to set."""
        with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
            place(dialect, database="app", schemas=schemas)
        assert "schemas." in str(caught.value) or "orchestration_db" in str(caught.value)

    def test_a_mysql_url_without_a_database_is_refused(self) -> None:
        """No database in the URL: no core, nothing to derive names from."""
        with pytest.raises(ConfigurationError, match="names no database"):
            place("mysql", database=None, schemas={})


# --------------------------------------------------------------------------- on the servers


def _migrations(tmp_path: Path, count: int = 2) -> Path:
    migrations = tmp_path / "m"
    migrations.mkdir(exist_ok=True)
    for n in range(1, count + 1):
        (migrations / f"V{n}__t{n}.sql").write_text(
            f"CREATE TABLE t{n} (id INTEGER PRIMARY KEY, v INTEGER);\n"
            f"INSERT INTO t{n} (id, v) VALUES (1, {n});\n"
            f"UPDATE t{n} SET v = v + 1;\n"
        )
    return migrations


def _tables(url: str, schema: str | None = None) -> list[str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        return sorted(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def _homes(kind: str, url: str) -> tuple[str | None, str, str]:
    """(core schema for inspection, orchestration schema, ephemeral schema) by default."""
    if kind == "mariadb":
        database = sa.make_url(url).database
        return None, f"{database}_lupo_orchestration", f"{database}_lupo_ephemeral"
    return "public", "lupo_orchestration", "lupo_ephemeral"


@pytest.fixture(name="server", params=SERVERS)
def _server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with fresh_database(request.param, tmp_path) as url:
        yield request.param, url


def test_no_lupo_table_is_created_in_the_core_schema_by_default(
    server: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply, a rollback-material backup, the queue and purge leave only the application's
    tables in core; lupo_migrate's are in their default schemas."""
    kind, url = server
    core, orchestration, ephemeral = _homes(kind, url)
    migrations = _migrations(tmp_path)
    db = ["--db", url]
    assert main(["apply", str(migrations), *db, "--upto", "V1__t1"]) == 0
    assert main(["queue", "add", str(migrations), *db]) == 0
    assert main(["queue", "drain", str(migrations), *db]) == 0
    assert main(["purge", str(migrations), *db]) == 0
    capsys.readouterr()
    assert _tables(url, core) == ["t1", "t2"]
    own = _tables(url, orchestration)
    assert [t for t in own if t.startswith("migration_")] == [
        "migration_alerts",
        "migration_batches",
        "migration_dependencies",
        "migration_files",
        "migration_progress",
        "migration_rollback_log",
        "migration_system_state",
        "migration_validation_log",
    ]
    if kind == "mariadb":  # the runs' rollback material sits beside them
        assert any(t.startswith("lupo_bk_") for t in own)
    assert _tables(url, ephemeral) == ["cache", "job_queue", "locks", "sessions", "temp_data"]


def test_a_sqlite_targets_backups_go_to_a_file_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite: the pre-images of a run (a table it changes, the run's material) are kept in
    app.lupo-backups.db, attached to the target's connections; the application's file holds
    its own tables only, and a rollback puts the rows back from there."""
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__change_t.sql").write_text(
        "ALTER TABLE t ADD COLUMN w TEXT;\nUPDATE t SET v = 'x';\n", encoding="utf-8"
    )
    db = ["--db", f"sqlite:///{app}"]
    assert main(["apply", str(migrations), *db]) == 0
    run_id = re.findall(r"run (\w+): completed", capsys.readouterr().out)[0]

    def tables(path: Path) -> list[str]:
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return sorted(name for (name,) in found)

    backups = tmp_path / "app.lupo-backups.db"
    assert tables(app) == ["t"]
    assert tables(backups) == [f"lupo_bk_{run_id[:12]}_{n}" for n in ("0", "1", "2_a")]
    assert "lupo_bk" not in " ".join(tables(tmp_path / "app.lupo.db"))
    assert main(["rollback", run_id, str(migrations), *db]) == 0
    with sqlite3.connect(app) as conn:
        assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [
            (1, "a"),
            (2, "b"),
            (3, "c"),
        ]
    assert tables(app) == ["t"]
    assert tables(backups) == []  # a verified rollback needs them no more


def test_attach_backups_is_for_sqlite_files_and_may_be_asked_twice(tmp_path: Path) -> None:
    """An embedding host's engine: the backups file is attached once to each connection,
    however often it is asked; other databases and in-memory SQLite have none."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        assert attach_backups(engine) == attach_backups(engine) == "lupo_backups"
        with engine.connect() as conn:
            attached = [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]
        assert attached == ["main", "lupo_backups"]
        assert (tmp_path / "app.lupo-backups.db").exists()
    finally:
        engine.dispose()
    assert attach_backups(sa.create_engine("sqlite://")) is None
    assert attach_backups(sa.create_engine("mysql+pymysql://u@127.0.0.1/db")) is None


def test_the_step_connection_still_carries_the_journal(server: tuple[str, str]) -> None:
    """Another schema on the same server is the same connection: the storage stays bound to
    the step's connection (one transaction), writing qualified names."""
    kind, url = server
    settings = Settings(db=url, migrations=Path("."))
    with session(settings, files=False) as opened:
        storage = opened.orchestrator.storage
        assert isinstance(storage, SqlAlchemyStorage)
        assert storage.tables.batches.schema == _homes(kind, url)[1]
        target: object = opened.orchestrator.target
        with target.step_session() as conn, storage.bound(conn) as shared:  # type: ignore[attr-defined]
            assert shared
            assert storage._fast(conn) is storage._hot.usable


def test_the_table_budget_counts_core_tables_only(
    server: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An application's own table named like ours counts; lupo_migrate's tables (8
    orchestration, 5 ephemeral, backups) do not."""
    _kind, url = server
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE a (id INTEGER)")
        conn.exec_driver_sql("CREATE TABLE migration_alerts (id INTEGER)")  # the app's own
    engine.dispose()
    migrations = _migrations(tmp_path)
    db = ["--db", url]
    code = main(["apply", str(migrations), *db, "--upto", "V1__t1", "--table-budget", "1"])
    assert code == StepError.exit_code
    assert "the core schema has 2 tables, over the table budget of 1" in capsys.readouterr().err
    # Checked after the step too: t1 makes 3 (issue 19: it was checked before the run only).
    code = main(["apply", str(migrations), *db, "--upto", "V1__t1", "--table-budget", "2"])
    assert code == StepError.exit_code
    said = "after V1__t1: the core schema has 3 tables, over the table budget of 2"
    assert said in capsys.readouterr().err
    assert main(["apply", str(migrations), *db, "--upto", "V1__t1", "--table-budget", "3"]) == 0
    assert main(["purge", "--ephemeral", *db]) == 0  # the ephemeral tables exist too now
    assert main(["apply", str(migrations), *db, "--table-budget", "4"]) == 0  # a, m_a, t1, t2
    assert "completed, 1 of 1" in capsys.readouterr().out


def test_orchestration_mapped_onto_core_is_refused(
    server: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--orchestration-schema naming the core schema is refused before anything is
    written, saying what to set."""
    kind, url = server
    core = sa.make_url(url).database if kind == "mariadb" else "public"
    migrations = _migrations(tmp_path)
    code = main(["apply", str(migrations), "--db", url, "--orchestration-schema", str(core)])
    assert code == ConfigurationError.exit_code
    err = capsys.readouterr().err
    assert f"schemas.orchestration = '{core}' is the core schema itself" in err
    assert "Set schemas.orchestration to another name" in err
    assert _tables(url, None if kind == "mariadb" else "public") == []


def test_an_earlier_versions_tables_in_core_are_refused_then_moved(
    server: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orchestration tables an earlier version kept in core are not silently left behind
    (nothing would be known applied): the error gives the statements that move them, and
    after them the history is there."""
    kind, url = server
    migrations = _migrations(tmp_path)
    engine = sa.create_engine(url, poolclass=NullPool)
    old = SqlAlchemyStorage(engine, schema=None if kind == "mariadb" else "public")
    old.ensure_schema()
    code = main(["apply", str(migrations), "--db", url])
    assert code == ConfigurationError.exit_code
    err = capsys.readouterr().err
    assert "holds lupo_migrate's orchestration tables from an earlier version" in err
    move = err.split("before anything else runs: ")[1].split(" (backup tables")[0]
    with engine.begin() as conn:
        for statement in move.split("; "):
            conn.exec_driver_sql(statement)
    engine.dispose()
    assert main(["apply", str(migrations), "--db", url]) == 0
    core = None if kind == "mariadb" else "public"
    assert _tables(url, core) == ["t1", "t2"]


@pytest.fixture(name="weak_url")
def _weak_url(server: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """A user that may use the core database but not create databases or schemas."""
    kind, url = server
    database = sa.make_url(url).database
    user = f"lupo_weak_{uuid.uuid4().hex[:8]}"
    admin_url = MARIADB_SERVER if kind == "mariadb" else POSTGRESQL_SERVER + "/postgres"
    admin = sa.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if kind == "mariadb":
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'")
            conn.exec_driver_sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'%%'")
            weak = sa.make_url(url).set(username=user, password="pw")
        else:
            conn.exec_driver_sql(f'CREATE ROLE "{user}" LOGIN')
            weak = sa.make_url(url).set(username=user)
    try:
        yield kind, weak.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if kind == "mariadb":
                conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
            else:
                core = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
                with core.connect() as inside:
                    inside.exec_driver_sql(f'DROP OWNED BY "{user}"')
                core.dispose()
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{user}"')
        admin.dispose()


def test_a_refused_create_names_the_privilege(
    weak_url: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the privilege to create the orchestration database (schema), the error
    names the grant that is missing and the alternatives."""
    kind, url = weak_url
    migrations = _migrations(tmp_path)
    code = main(["apply", str(migrations), "--db", url])
    assert code == ConfigurationError.exit_code
    err = capsys.readouterr().err
    database = sa.make_url(url).database
    if kind == "mariadb":
        schema = f"{database}_lupo_orchestration"
        assert f"cannot create the orchestration database {schema}" in err
        assert f"GRANT CREATE ON `{schema}`.*" in err
    else:
        assert "cannot create the orchestration schema lupo_orchestration" in err
        assert f"GRANT CREATE ON DATABASE {database}" in err
    assert "or set schemas.orchestration" in err
    assert "pw@" not in err  # the password stays hidden


@pytest.mark.mariadb
def test_placeholders_render_the_default_names(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run renders ${orchestration} and ${ephemeral} as apply would place them."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__x.sql").write_text("SELECT * FROM ${orchestration}.a, ${ephemeral}.b;\n")
    assert main(["apply", str(migrations), "--db", mariadb_url, "--dry-run"]) == 0
    database = sa.make_url(mariadb_url).database
    out = capsys.readouterr().out
    assert f"FROM {database}_lupo_orchestration.a, {database}_lupo_ephemeral.b;" in out
