"""lupo-migrate apply / status / history / verify / baseline on real databases."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import needs_corpus
from databases import table_names
from lupo_migrate import errors
from lupo_migrate.cli import main
from lupo_migrate.core.model import DOWN_OFFSET

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"
CORPUS = ROOT.parent / "shared" / "corpus" / "lupopedia"

#: The legacy tables 20260120_drop_legacy_tables_and_set_limit_4.1.17.sql drops.
LIVEHELP = (
    "channels", "messages", "modules", "modules_dep", "operator_channels", "referers_monthly",
    "sessions", "visit_track",
)  # fmt: skip

CLEAN_CORPUS = [
    "4.0.113_add_seven_love_agents.sql",
    "4_1_1_create_help_topics.sql",
    "4_1_1_seed_help_topics.sql",
    "4.1.3_insert_pack_role_registry.sql",
    "4.1.4_lupopedia_minimal_rest_api_tables.sql",
    "4.1.5_insert_exhusband_agent.sql",
    "4.1.6_create_labs_declarations_table.sql",
    "4_1_6_create_tldnr_table.sql",
    "20260120_drop_legacy_tables_and_set_limit_4.1.17.sql",
    "4.2.0_add_genesis_doctrine_tables.sql",
    "4.2.0_schema_freeze_enforcement.sql",
    "4.2.1_add_reverse_shaka_sync_table.sql",
    "4.4.1_create_actor_moods_table.sql",
]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class TestQuickstart:
    def test_apply_then_nothing_to_do_then_status_and_history(
        self, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The quickstart applies on SQLite, MariaDB and PostgreSQL; a re-run is a no-op."""
        code, out, err = cli(
            capsys, "apply", str(QUICKSTART), "--db", database_url, "--progress", "auto"
        )
        assert code == 0, err
        assert "completed, 4 of 4 step(s) applied" in out
        # stderr is no terminal here: progress comes as milestone lines, nothing else
        progress = err.splitlines()
        assert progress[0].endswith(": 4 step(s)"), err
        assert "[4/4] add_post_status applied" in progress
        assert progress[-1].endswith(": completed"), err
        assert not [line for line in progress if line.startswith(("error", "warning"))]
        engine = sa.create_engine(database_url)
        with engine.connect() as conn:
            names = conn.exec_driver_sql("SELECT name FROM authors ORDER BY id").scalars().all()
            status = conn.exec_driver_sql("SELECT status FROM posts").all()
        engine.dispose()
        assert names == ["Captain Wolfie", "Ada; the second"]
        assert status == []
        code, out, _ = cli(capsys, "apply", str(QUICKSTART), "--db", database_url)
        assert code == 0
        assert out.startswith("nothing to do: all 4 migration(s) already applied")
        code, out, _ = cli(capsys, "status", str(QUICKSTART), "--db", database_url)
        assert "4 applied, 0 pending" in out
        assert "idle, completed" in out
        code, out, _ = cli(capsys, "history", str(QUICKSTART), "--db", database_url)
        assert len(out.splitlines()) == 1
        assert "completed" in out

    def test_an_edited_applied_file_is_refused_until_accepted(
        self, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """verify and apply refuse the edit (exit 5); verify --accept records it; then fine."""
        migrations = tmp_path / "m"
        shutil.copytree(QUICKSTART, migrations)
        assert cli(capsys, "apply", str(migrations), "--db", database_url)[0] == 0
        seed = migrations / "V3__seed_authors.sql"
        seed.write_text(seed.read_text() + "-- a comment added later\n")
        code, out, _ = cli(capsys, "verify", str(migrations), "--db", database_url)
        assert code == errors.MigrationFileError.exit_code
        assert "V3__seed_authors.sql" in out
        assert "edited after it was applied" in out
        code, _, err = cli(capsys, "apply", str(migrations), "--db", database_url)
        assert code == errors.MigrationFileError.exit_code
        assert "verify --accept seed_authors" in err
        code, out, _ = cli(
            capsys, "verify", str(migrations), "--db", database_url, "--accept", "seed_authors"
        )
        assert code == 0
        assert "accepted seed_authors" in out
        assert cli(capsys, "verify", str(migrations), "--db", database_url)[0] == 0

    def test_baseline_marks_an_existing_database(
        self, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After baseline --upto create_posts, apply runs only the two later steps."""
        engine = sa.create_engine(database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE authors (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                " created_ymdhis BIGINT NOT NULL)"
            )
            conn.exec_driver_sql(
                "CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL,"
                " title VARCHAR(300) NOT NULL, body TEXT)"
            )
        engine.dispose()
        code, out, _ = cli(
            capsys, "baseline", str(QUICKSTART), "--db", database_url, "--upto", "create_posts"
        )
        assert code == 0
        assert "2 step(s) recorded" in out
        code, out, _ = cli(capsys, "apply", str(QUICKSTART), "--db", database_url)
        assert "2 of 2 step(s) applied" in out

    def test_dry_run_prints_statements_and_creates_nothing(
        self, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run shows the SQL in order, and the database stays empty."""
        code, out, _ = cli(capsys, "apply", "--dry-run", str(QUICKSTART), "--db", database_url)
        assert code == 0
        assert out.index("CREATE TABLE authors") < out.index("CREATE TABLE posts")
        assert "'Ada; the second'" in out
        if not database_url.startswith("sqlite"):
            assert table_names(database_url) == set()
        else:
            assert not Path(sa.make_url(database_url).database or "").exists()


@pytest.mark.mariadb
class TestBadInput:
    def test_a_wrong_password_is_one_line_and_writes_nothing(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Access denied: exit 12, the password masked, a hint."""
        url = "mysql+pymysql://root:s3cret@127.0.0.1:3306/test"
        code, out, err = cli(capsys, "apply", str(QUICKSTART), "--db", url)
        assert code == errors.ConfigurationError.exit_code
        assert out == ""
        assert err.count("\n") == 1
        assert "s3cret" not in err
        assert "root:***@127.0.0.1" in err
        assert "check the user name and password" in err

    def test_an_unreachable_host_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Connection refused: exit 12 and 'is the server running'."""
        code, _, err = cli(
            capsys, "apply", str(QUICKSTART), "--db", "mysql+pymysql://root@127.0.0.1:1/test"
        )
        assert code == errors.ConfigurationError.exit_code
        assert err.count("\n") == 1
        assert "is the server running" in err

    def test_a_missing_directory_is_one_line_and_connects_to_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The directory is checked before the database is touched."""
        db = tmp_path / "x.db"
        code, _, err = cli(capsys, "apply", str(tmp_path / "nope"), "--db", f"sqlite:///{db}")
        assert code == errors.MigrationFileError.exit_code
        assert err.count("\n") == 1
        assert not db.exists()

    def test_a_file_that_is_not_utf8_is_named_and_nothing_is_written(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The bad file and its line; no orchestration table is created."""
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__ok.sql").write_text("CREATE TABLE ok (id INTEGER);\n")
        (migrations / "V2__latin1.sql").write_bytes(b"-- caf\xe9\nCREATE TABLE x (id INTEGER);\n")
        db = tmp_path / "x.db"
        code, _, err = cli(capsys, "apply", str(migrations), "--db", f"sqlite:///{db}")
        assert code == errors.MigrationFileError.exit_code
        assert "V2__latin1.sql:1" in err
        assert "UTF-8" in err
        assert not db.exists()


def corpus_dir(tmp_path: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """A migrations directory holding the corpus files *names*, and a manifest in that order."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    for name in names:
        shutil.copy(CORPUS / "migrations" / name, migrations / name)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("steps:\n" + "".join(f"  - {n}\n" for n in names))
    return migrations, manifest


def _load_baseline(url: str) -> None:
    """Load the corpus baseline (185 tables) with the mariadb client, as a user would."""
    database = sa.make_url(url).database or ""
    with (CORPUS / "baseline" / "core.sql").open("rb") as source:
        subprocess.run(
            ["mysql", "-uroot", "-h127.0.0.1", "-P3306", database],
            stdin=source,
            check=True,
            capture_output=True,
        )


@pytest.mark.mariadb
@needs_corpus
class TestCorpusOnMariaDB:
    def test_the_13_clean_migrations_apply_in_one_run_and_a_rerun_is_a_noop(
        self, mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Baseline loaded: one run applies 13 files with checksums; again does nothing."""
        _load_baseline(mariadb_url)
        migrations, manifest = corpus_dir(tmp_path, CLEAN_CORPUS)
        database = sa.make_url(mariadb_url).database
        args = [
            str(migrations),
            "--db",
            mariadb_url,
            "--manifest",
            str(manifest),
            "--rename",
            f"lupopedia={database}",
            "--orchestration-schema",
            f"{database}_orch",
        ]
        code, _, err = cli(capsys, "apply", *args, "--table-budget", "77")  # the doctrine's
        assert code == errors.StepError.exit_code
        assert "the core schema has 185 tables, over the table budget of 77 by 108" in err
        assert "--table-budget N" in err
        code, out, err = cli(capsys, "apply", *args, "--table-budget", "250")
        assert code == 0
        # the lint rules report the eight legacy tables the 4.1.17 file drops, and go on
        assert err.splitlines() == [
            f"warning: 20260120_drop_legacy_tables_and_set_limit_4.1.17.sql:{12 + i}: drops"
            f" table livehelp_{name} and its rows [drop-table]"
            for i, name in enumerate(LIVEHELP)
        ]
        assert "completed, 13 of 13 step(s) applied" in out
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT step_id, checksum FROM `{database}_orch`.migration_files ORDER BY id"
            ).all()
        engine.dispose()
        assert [r[0] for r in rows] == [n[: -len(".sql")] for n in CLEAN_CORPUS]
        assert all(len(r[1]) == 64 for r in rows)
        code, out, _ = cli(capsys, "apply", *args, "--table-budget", "250")
        assert out.startswith("nothing to do")
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{database}_orch`")
        engine.dispose()


@pytest.mark.mariadb
@pytest.mark.slow
@pytest.mark.parametrize("runners", [4, 8])
def test_concurrent_applies_one_wins_the_others_name_the_holder(
    runners: int, mariadb_url: str, tmp_path: Path
) -> None:
    """Four (issue 3), then eight (issue 5) processes at once: one applies; the others exit
    non-zero naming the holder; every statement runs once.

    The winner's first step waits at a gate (a user lock this test holds) until every other
    process has exited: however slowly the machine starts them, they all ask for the run lock
    while the winner holds it, and none comes too late to find the work done."""
    gate = f"lupo_test_gate_{uuid.uuid4().hex[:12]}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    for i in range(6):
        wait = f"DO GET_LOCK('{gate}', 120)" if i == 0 else "DO SLEEP(0.05)"
        (migrations / f"V{i + 1}__t{i}.sql").write_text(
            f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY);\n{wait};\n"
        )
    command = [sys.executable, "-m", "lupo_migrate", "apply", str(migrations), "--db", mariadb_url]
    keeper = sa.create_engine(mariadb_url, poolclass=sa.pool.NullPool)
    with keeper.connect() as held:
        assert held.exec_driver_sql(f"SELECT GET_LOCK('{gate}', 0)").scalar_one() == 1
        procs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(runners)
        ]
        deadline = time.monotonic() + 120
        while sum(p.poll() is not None for p in procs) < runners - 1:
            assert time.monotonic() < deadline, "the other processes did not give up"
            time.sleep(0.05)
        held.exec_driver_sql(f"DO RELEASE_LOCK('{gate}')")
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    keeper.dispose()
    winners = [r for r in results if r[0] == 0 and "completed, 6 of 6" in r[1]]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, results
    assert len(losers) == runners - 1, results
    for code, _out, err in losers:
        assert code == errors.LockHeldError.exit_code
        assert "is held by" in err
        assert ":" in err.split("is held by")[1]  # host:pid:... of the holder
    engine = sa.create_engine(mariadb_url)
    orch = f"{engine.url.database}_lupo_orchestration"  # the default orchestration database
    with engine.connect() as conn:
        count = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {orch}.migration_files").scalar_one()
        journal = conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM {orch}.migration_progress WHERE done_at IS NOT NULL"
        ).scalar_one()
    engine.dispose()
    assert count == 6
    assert journal == 12  # each statement ran exactly once


class TestFailedRuns:
    def test_a_failing_dml_step_rolls_the_whole_run_back(
        self, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Step 3 hits a duplicate key: its first insert and steps 1-2 are undone; ledger empty."""
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__a.sql").write_text(
            "CREATE TABLE a (id INTEGER PRIMARY KEY);\nINSERT INTO a (id) VALUES (1);\n"
            "-- lupo:down\nDROP TABLE a;\n"
        )
        (migrations / "V2__b.sql").write_text(
            "INSERT INTO a (id) VALUES (2);\n-- lupo:down\nDELETE FROM a WHERE id = 2;\n"
        )
        (migrations / "V3__c.sql").write_text(
            "INSERT INTO a (id) VALUES (3);\nINSERT INTO a (id) VALUES (1);\n"
        )
        code, out, err = cli(capsys, "apply", str(migrations), "--db", database_url)
        assert code == errors.StepError.exit_code
        assert "rolled_back, 0 of 3 step(s) applied" in out
        assert "V3__c.sql:2" in err
        assert "a" not in table_names(database_url)
        code, out, _ = cli(capsys, "status", str(migrations), "--db", database_url)
        assert "0 applied, 3 pending" in out
        assert "rolled_back" in out

    def test_a_step_failing_after_its_own_ddl_is_undone_part_way(
        self, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CREATE that ran before the failing ALTER is dropped again (derived inverse)."""
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__ok.sql").write_text("CREATE TABLE ok1 (id INTEGER PRIMARY KEY);\n")
        (migrations / "V2__half.sql").write_text(
            "CREATE TABLE half (id INTEGER PRIMARY KEY);\n"
            "ALTER TABLE missing ADD COLUMN x INTEGER;\n"
        )
        code, out, _ = cli(capsys, "apply", str(migrations), "--db", database_url)
        assert code == errors.StepError.exit_code
        assert "rolled_back" in out
        assert not {"ok1", "half"} & table_names(database_url)

    def test_mysql_journal_keeps_the_ddl_that_stayed_and_drops_the_dml_rolled_back(
        self, mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """CREATE commits at once; the INSERT after it rolls back with the failure.

        The journal says so (the CREATE done, no INSERT), and the undo drops the table.
        """
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__mixed.sql").write_text(
            "CREATE TABLE mixed (id INTEGER PRIMARY KEY);\n"
            "INSERT INTO mixed (id) VALUES (1);\n"
            "INSERT INTO mixed (id) VALUES (1);\n"
        )
        code, out, err = cli(capsys, "apply", str(migrations), "--db", mariadb_url)
        assert code == errors.StepError.exit_code, err
        assert "rolled_back" in out
        assert "mixed" not in table_names(mariadb_url)
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT stmt_index, done_at IS NOT NULL"
                f" FROM {engine.url.database}_lupo_orchestration.migration_progress"
                " ORDER BY stmt_index"
            ).all()
        engine.dispose()
        # 0: the CREATE, kept and marked done again after the rollback; DOWN_OFFSET: its DROP.
        assert [tuple(r) for r in rows] == [(0, 1), (DOWN_OFFSET, 1)]
