"""MySQL/MariaDB ALTER TABLE and CREATE INDEX sent with the most online algorithm the server
accepts (issue 21, the strategy per statement): ``sql.online`` chooses the order, the server
refuses what it cannot honour before doing anything, and the result is what the ``mariadb``
client leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import apply_with_events as _apply
from databases import mariadb_client as _client
from lupo_migrate.core.errors import ConfigurationError, MigrationFileError
from lupo_migrate.core.model import Outcome
from lupo_migrate.session import session as _session
from lupo_migrate.session.config import Settings, load_settings
from lupo_migrate.sql.online import (
    AS_WRITTEN,
    COPY,
    INPLACE,
    INSTANT,
    attempts,
    check_mode,
    retarget,
)

# ---------------------------------------------------------------- the choice, pure


@pytest.mark.parametrize(
    ("statement", "mode", "strategies"),
    [
        ("ALTER TABLE t ADD COLUMN c INT", "auto", [INSTANT, INPLACE, COPY, AS_WRITTEN]),
        ("alter online table `my t` add index (c)", "auto", [INSTANT, INPLACE, COPY, AS_WRITTEN]),
        ("ALTER TABLE t MODIFY c BIGINT", "copy", [COPY]),
        ("CREATE INDEX i ON t (c)", "copy", [COPY]),
        ("-- why\nALTER TABLE db.t DROP COLUMN c", "inplace", [INSTANT, INPLACE]),
        ("ALTER TABLE t MODIFY c BIGINT", "instant", [INSTANT]),
        ("CREATE UNIQUE INDEX i ON t (c)", "auto", [INPLACE, COPY, AS_WRITTEN]),
        ("CREATE INDEX i ON t (c)", "inplace", [INPLACE]),
        ("CREATE INDEX i ON t (c)", "instant", [INSTANT]),
        ("ALTER TABLE t ADD COLUMN c INT", "off", []),
        ("ALTER TABLE t ADD COLUMN c INT, ALGORITHM=COPY", "auto", []),  # the file says
        ("ALTER TABLE t ADD COLUMN c INT, LOCK = SHARED", "inplace", []),
        ("ALTER TABLE t ADD PARTITION (PARTITION p3 VALUES LESS THAN (30))", "auto", []),
        ("CREATE TABLE t (id INT)", "auto", []),
        ("UPDATE t SET c = 1", "auto", []),
        ("DROP INDEX i ON t", "auto", []),
    ],
)
def test_the_order_of_algorithms_tried(statement: str, mode: str, strategies: list[str]) -> None:
    assert [s for s, _ in attempts(statement, "mysql", mode)] == strategies


def test_nothing_is_chosen_on_postgresql_nor_sqlite() -> None:
    for family in ("postgresql", "sqlite"):
        assert attempts("ALTER TABLE t ADD COLUMN c INT", family, "auto") == ()


def test_the_clause_goes_on_a_line_of_its_own_after_a_trailing_comment() -> None:
    statement = "ALTER TABLE t ADD COLUMN c INT -- the reason"
    texts = [text for _, text in attempts(statement, "mysql", "auto")]
    assert texts == [
        statement + "\n, ALGORITHM=INSTANT",
        statement + "\n, ALGORITHM=INPLACE, LOCK=NONE",
        statement,  # an online copy alters the shadow table with the statement as written
        statement,
    ]


def test_retarget_replaces_only_the_altered_table() -> None:
    assert retarget("ALTER TABLE `t` ADD COLUMN t INT", "p.x") == "ALTER TABLE p.x ADD COLUMN t INT"
    assert retarget("CREATE INDEX t ON db.t (t)", "x") == "CREATE INDEX t ON x (t)"
    assert retarget("UPDATE t SET c = 1", "x") is None


def test_the_header_knows_the_same_modes_as_the_setting() -> None:
    import json
    from importlib import resources

    from lupo_migrate.files.header_schema import ONLINE_MODES
    from lupo_migrate.sql.online import MODES

    schema = json.loads(
        resources.files("lupo_migrate").joinpath("schemas/header.schema.json").read_text()
    )
    assert set(ONLINE_MODES) == set(MODES) == set(schema["properties"]["online"]["enum"])


def test_the_modes_are_checked() -> None:
    assert check_mode(" Inplace ", "here") == "inplace"
    assert check_mode("COPY", "here") == "copy"
    with pytest.raises(ValueError, match="here: online must be one of auto, instant, inplace"):
        check_mode("fast", "here")


def test_the_setting_refuses_a_bad_mode_naming_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().online == "auto"
    monkeypatch.setenv("LUPO_MIGRATE_ONLINE", "shadow")
    with pytest.raises(ConfigurationError, match=r"LUPO_MIGRATE_ONLINE.*shadow"):
        load_settings()
    (tmp_path / "lupo.toml").write_text('online = "inplace"\n')
    monkeypatch.delenv("LUPO_MIGRATE_ONLINE")
    assert load_settings().online == "inplace"


def test_the_copy_settings_are_checked_naming_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUPO_MIGRATE_COPY_REPLICAS", "mysql://r1/shop, mysql://r2/shop")
    settings = load_settings()
    assert settings.copy_replicas == ("mysql://r1/shop", "mysql://r2/shop")
    assert (settings.copy_max_lag, settings.copy_chunk_time) == (1.0, 0.1)
    (tmp_path / "lupo.toml").write_text('copy_replicas = ["replica1"]\n')
    monkeypatch.delenv("LUPO_MIGRATE_COPY_REPLICAS")
    with pytest.raises(ConfigurationError, match=r"lupo.toml.*copy_replicas must be a list of"):
        load_settings()
    (tmp_path / "lupo.toml").write_text("copy_chunk_time = 0\n")
    with pytest.raises(ConfigurationError, match=r"copy_chunk_time must be a number of seconds"):
        load_settings()
    (tmp_path / "lupo.toml").write_text("copy_max_lag = -1\n")
    with pytest.raises(ConfigurationError, match=r"copy_max_lag must be a number of seconds, 0"):
        load_settings()


def test_a_replica_out_of_reach_holds_the_copy() -> None:
    import math

    from lupo_migrate.backends.sqlalchemy.online_copy import ReplicaLag
    from lupo_migrate.backends.sqlalchemy.target import _replica_connection

    lag = ReplicaLag(["mysql://root@127.0.0.1:1/x"], _replica_connection)
    assert lag() == math.inf  # nothing listens on port 1
    lag.close()
    assert ReplicaLag([], _replica_connection)() is None


# ---------------------------------------------------------------- on MariaDB

TABLE = (
    "CREATE TABLE busy (id INT PRIMARY KEY, v INT, s VARCHAR(20));"
    " INSERT INTO busy VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL)"
)
CHANGES = (
    "ALTER TABLE busy ADD COLUMN note VARCHAR(20) -- instant\n;\n"
    "ALTER TABLE busy ADD INDEX busy_v (v);\n"
    "CREATE INDEX busy_s ON busy (s);\n"
    "ALTER TABLE busy MODIFY v BIGINT;\n"
)


def _migrations(tmp_path: Path, files: dict[str, str]) -> Path:
    """A migrations directory holding *files* (name to text)."""
    root = tmp_path / "m"
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _show(url: str, table: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql(f"SHOW CREATE TABLE `{table}`").one()[1])
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_each_alter_runs_with_the_most_online_algorithm_and_leaves_what_the_client_leaves(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    ours, theirs = mariadb_pair
    for url in mariadb_pair:
        _client(url, TABLE)
    _client(theirs, CHANGES)
    root = _migrations(tmp_path, {"V1__changes.sql": CHANGES})
    result, events = _apply(ours, root)
    assert result.run is not None  # type: ignore[attr-defined]
    assert result.run.outcome is Outcome.COMPLETED, result  # type: ignore[attr-defined]
    ran = [e.data.get("strategy") for e in events if e.name == "statement"]
    assert ran == [INSTANT, INPLACE, INPLACE, AS_WRITTEN]
    assert _show(ours, "busy") == _show(theirs, "busy")


@pytest.mark.mariadb
def test_a_file_that_must_not_block_writes_fails_before_a_copy_runs(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    url = mariadb_pair[0]
    _client(url, TABLE)
    before = _show(url, "busy")
    root = _migrations(
        tmp_path,
        {
            "V1__type.sql": "-- online: inplace\n"
            "ALTER TABLE busy ADD COLUMN note INT;\n"
            "ALTER TABLE busy MODIFY v BIGINT;\n"
        },
    )
    result, _events = _apply(url, root)
    run = result.run  # type: ignore[attr-defined]
    assert run.outcome is Outcome.ROLLED_BACK
    message = run.failure.message
    assert "statement 2" in message, message
    assert "ALGORITHM=INPLACE is not supported" in message
    assert "online: inplace allows no algorithm that blocks writes" in message
    assert "-- online: auto" in message
    assert _show(url, "busy") == before  # the first ALTER was undone, the second never ran


@pytest.mark.mariadb
def test_online_off_sends_the_statement_as_written(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    url = mariadb_pair[0]
    _client(url, TABLE)
    root = _migrations(tmp_path, {"V1__a.sql": "ALTER TABLE busy ADD COLUMN note INT;\n"})
    result, events = _apply(url, root, online="off")
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert [e.data.get("strategy") for e in events if e.name == "statement"] == [None]


def test_a_bad_online_header_names_the_file(tmp_path: Path) -> None:
    root = _migrations(
        tmp_path, {"V1__a.sql": "-- online: fast\nALTER TABLE busy ADD COLUMN note INT;\n"}
    )
    with (
        pytest.raises(MigrationFileError, match=r"V1__a\.sql.*online"),
        _session.session(Settings(db=f"sqlite:///{tmp_path / 'x.db'}", migrations=root)) as opened,
    ):
        opened.orchestrator.apply(opened.steps)


@pytest.mark.mariadb
def test_the_dry_run_says_each_alters_algorithm_tried_on_an_empty_copy(
    mariadb_pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lupo_migrate.cli import main

    url = mariadb_pair[0]
    _client(url, TABLE)
    root = _migrations(tmp_path, {"V1__side.sql": "CREATE TABLE side (id INT PRIMARY KEY);\n"})
    assert main(["apply", str(root), "--db", url]) == 0  # lupo_migrate's schema now exists
    (root / "V2__changes.sql").write_text(
        CHANGES + "CREATE TABLE fresh (id INT);\nALTER TABLE fresh ADD COLUMN x INT;\n"
    )
    (root / "V3__later.sql").write_text(
        "-- online: inplace\nALTER TABLE busy MODIFY note VARCHAR(40);\n"
    )
    before = _show(url, "busy")
    capsys.readouterr()
    assert main(["apply", str(root), "--db", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if line.startswith("-- online:")]
    assert said == [
        "-- online: instant: ALGORITHM=INSTANT, a change of metadata only",
        "-- online: inplace: ALGORITHM=INPLACE, LOCK=NONE, writes go on while it runs",
        "-- online: inplace: ALGORITHM=INPLACE, LOCK=NONE, writes go on while it runs",
        "-- online: as written: the server cannot run it without blocking writes (it may copy"
        " the table) (no online copy: it holds about 3 rows (copy_min_rows is 10000))",
        "-- online: checked when it runs (fresh does not exist yet)",
        # tried on the copy as V2 left it: its note column is there
        "-- online: instant: ALGORITHM=INSTANT, a change of metadata only",
    ]
    assert out.index(said[0]) < out.index("ALTER TABLE busy ADD COLUMN note")
    assert _show(url, "busy") == before  # nothing of the application's was touched
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        left = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE 'lupo_probe%%'"
        ).scalar()
    engine.dispose()
    assert left == 0


def test_the_orchestrator_refuses_a_bad_online_mode_or_retry_setting(tmp_path: Path) -> None:
    from lupo_migrate.core.errors import InvalidArgumentError

    url = f"sqlite:///{tmp_path / 'x.db'}"
    root = tmp_path / "m"
    root.mkdir()
    with _session.session(Settings(db=url, migrations=root)) as opened:
        orch = opened.orchestrator
        kinds = {
            "storage": orch.storage,
            "lock": orch.lock,
            "freeze": orch.freeze,
            "clock": orch.clock,
            "registry": orch.registry,
            "target": orch.target,
            "root": root,
        }
        with pytest.raises(InvalidArgumentError, match=r"online must be one of .*'shadow'"):
            type(orch)(**kinds, online="shadow")
        with pytest.raises(InvalidArgumentError, match="copy_chunk_time must be a number above"):
            type(orch)(**kinds, copy_chunk_time=0)
        with pytest.raises(InvalidArgumentError, match="copy_min_rows must be a number"):
            type(orch)(**kinds, copy_min_rows=-1)
        with pytest.raises(InvalidArgumentError, match="lock_retry_backoff must be a number"):
            type(orch)(**kinds, lock_retry_backoff=-1)
        with pytest.raises(InvalidArgumentError, match="lock_retries must be a number"):
            type(orch)(**kinds, lock_retries=-2)
        assert type(orch)(**kinds, online="inplace").online == "inplace"
        assert type(orch)(**kinds, online="copy").online == "copy"
