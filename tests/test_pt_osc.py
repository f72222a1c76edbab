"""pt-online-schema-change as the executor of an online copy (issue 21): the same result as
the client's plain ``ALTER``, under the run's phases; what a kill -9 leaves is settled by
``recover`` (the table as it was) or copied again by ``recover --resume``; the tool missing is
said before anything changes; the operator's controls it cannot honour are refused."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import apply_with_events as _apply
from databases import leftovers
from databases import mariadb_client as _client
from databases import mysqldump as _dump
from lupo_migrate.core.model import Outcome
from lupo_migrate.observe import Event
from lupo_migrate.session import session as _session
from lupo_migrate.session.config import ConfigurationError, Settings, load_settings
from lupo_migrate.sql import pt_osc as pt

# ---------------------------------------------------------------- the core, pure


@pytest.mark.parametrize(
    ("rest", "alter"),
    [
        (" MODIFY amount BIGINT NOT NULL;", "MODIFY amount BIGINT NOT NULL"),
        (
            " ADD COLUMN note VARCHAR(20), ADD INDEX k (k)",
            "ADD COLUMN note VARCHAR(20), ADD INDEX k (k)",
        ),
        ("CREATE INDEX t_k ON t (k)", "ADD INDEX t_k (k)"),
        ("create fulltext index f using btree on t (note)", "ADD FULLTEXT INDEX f (note)"),
        ("CREATE INDEX t_k ON t (k, amount) COMMENT 'x'", "ADD INDEX t_k (k, amount) COMMENT 'x'"),
        ("  ", None),
        ("CREATE TABLE x (id INT)", None),
    ],
)
def test_the_tools_alter_is_what_the_statement_does_to_its_table(
    rest: str, alter: str | None
) -> None:
    assert pt.alter_clause(rest) == alter


def test_the_tools_names_are_predicted_as_it_makes_them() -> None:
    assert pt.triggers("shop", "orders") == (
        "pt_osc_shop_orders_ins",
        "pt_osc_shop_orders_upd",
        "pt_osc_shop_orders_del",
    )
    long = pt.triggers("d" * 40, "t" * 40)
    assert all(len(n) == 64 for n in long)  # its prefix is cut at 60 characters
    assert pt.triggers("my-db", "t")[0] == "pt_osc_my_db_t_ins"
    assert pt.old_name("t", set()) == "_t_old"
    taken = {"_" * n + "t_old" for n in range(1, 10)}
    assert pt.old_name("t", taken) == "_" * 10 + "t_old"
    assert pt.old_name("t", taken | {"_" * 10 + "t_old"}) is None


def test_progress_lines_and_failures_are_read_from_what_the_tool_says() -> None:
    assert pt.progress("Copying `a`.`t`:  45% 01:02 remain") == (45, 62.0)
    assert pt.progress("Copying `a`.`t`:   5% 01:02:03 remain") == (5, 3723.0)
    assert pt.progress("2026-12-07T18:07:10 Creating triggers...") is None
    said = ["Copying `a`.`t`:  45% 01:02 remain", "", "Error copying rows: x", "Exiting."]
    assert pt.last_error(said) == "Error copying rows: x Exiting."
    assert pt.last_error([]) == "no output"


def test_the_command_keeps_the_old_table_and_never_shows_the_password() -> None:
    target = pt.dsn("shop", "t", host="db1", port=3307, user="app", socket=None)
    assert target == "D=shop,t=t,h=db1,P=3307,u=app"
    socket = pt.dsn("shop", "t", host="localhost", port=None, user="root", socket="/run/m.sock")
    assert socket == "D=shop,t=t,h=localhost,u=root,S=/run/m.sock"
    argv = pt.command(
        "/usr/bin/pt-online-schema-change",
        "MODIFY a BIGINT",
        target,
        new_table="lupo_bk_0123456789ab_new_t",
        chunk_time=0.1,
        most_threads=0,
        lock_wait=1,
        tries=4,
        backoff=1.0,
        pause_file="/tmp/p",
    )
    line = shlex.join(argv)
    assert "--no-drop-old-table" in argv
    assert "--execute" in argv
    assert argv[argv.index("--new-table-name") + 1] == "lupo_bk_0123456789ab_new_t"
    assert argv[argv.index("--pause-file") + 1] == "/tmp/p"
    assert "Threads_running=1000000" in line  # 0: the server's load never holds it
    assert "swap_tables:4:1" in line
    assert "secret" not in line
    assert pt.dsn("a,b", "t", host=None, port=None, user=None, socket=None) is None


def test_a_wrong_executor_is_refused_naming_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "lupo.toml").write_text('copy_executor = "gh-ost"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(cwd=tmp_path, environ={})
    assert "copy_executor 'gh-ost' is not one of lupo, pt-online-schema-change" in str(caught.value)
    assert "lupo.toml" in str(caught.value)


# ---------------------------------------------------------------- on MariaDB

SEED = (
    "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, k INT, amount INT NOT NULL,"
    " note VARCHAR(10));"
    " INSERT INTO t (k, amount, note) SELECT seq % 97, seq * 3, IF(seq % 5 = 0, NULL, 'x')"
    " FROM seq_1_to_{rows};"
    " DELETE FROM t WHERE id % 11 = 0;"
)
CHANGE = "ALTER TABLE t MODIFY amount BIGINT NOT NULL, ADD COLUMN extra INT DEFAULT 7"
TOOL = "pt-online-schema-change"


@pytest.fixture(name="tool")
def _tool() -> str:
    found = shutil.which(TOOL)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {TOOL} tests: apt-get install percona-toolkit")
        pytest.skip(f"{TOOL} is not installed")
    return found


def _left(url: str) -> list[str]:
    """Every table but ``t`` and every trigger of the application's database."""
    return leftovers(url, but=("t",))


def _migrations(tmp_path: Path, text: str, executor: str = TOOL) -> Path:
    root = tmp_path / "m"
    root.mkdir(exist_ok=True)
    (root / "V1__change.sql").write_text(text)
    (tmp_path / "lupo.toml").write_text(f'copy_executor = "{executor}"\ncopy_chunk_time = 0.01\n')
    return root


def _settings(url: str, root: Path, **more: object) -> Settings:
    return Settings(db=url, migrations=root, copy_executor=TOOL, **more)  # type: ignore[arg-type]


@pytest.mark.mariadb
def test_the_tool_leaves_what_the_clients_plain_alter_leaves_and_keeps_the_old_table(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    ours, theirs = mariadb_pair
    for url in mariadb_pair:
        _client(url, SEED.format(rows=3000))
    _client(theirs, CHANGE + ";")
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    events: list[Event] = []
    with _session.session(_settings(ours, root)) as opened:
        opened.orchestrator.observers = [events.append]
        result = opened.orchestrator.apply(opened.steps)
        backups = opened.orchestrator.target.backup_schema  # type: ignore[attr-defined]
    assert result.run.outcome is Outcome.COMPLETED
    assert [e.data.get("strategy") for e in events if e.name == "statement"] == ["copy"]
    told = [e.data for e in events if e.name == "step.copy"]
    assert {k: told[-1][k] for k in ("event", "table", "executor")} == {
        "event": "cut_over",
        "table": "t",
        "executor": TOOL,
    }
    assert _dump(ours, "t") == _dump(theirs, "t")
    assert _left(ours) == []
    engine = sa.create_engine(ours)
    with engine.connect() as conn:
        kept = conn.exec_driver_sql(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{backups}'"
            f" AND table_name = 'lupo_bk_{result.run.id[:12]}_old_t'"
        ).all()
        rows = conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{backups}`.`{kept[0][0]}`").scalar()
    engine.dispose()
    assert rows == 2728  # the old table, kept among the run's backups for its window


MIRRORED = "CREATE TABLE mirror LIKE t; INSERT INTO mirror SELECT * FROM t;"
DOWN = "ALTER TABLE t MODIFY amount INT NOT NULL, DROP COLUMN extra"
#: The same rows in t and mirror (ids, values), whatever their definitions.
SAME = "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, k, amount, note))) FROM "


def _same_rows(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.exec_driver_sql(SAME + "t").one()
                == conn.exec_driver_sql(SAME + "mirror").one()
            )
    finally:
        engine.dispose()


def _apply_while_writing(url: str, root: Path, executor: str = TOOL) -> tuple[object, int]:
    """Apply *root* while a writer inserts, updates and deletes rows of ``t`` and of
    ``mirror`` alike, each change in its own transaction; the result and the writes."""
    stop, failures, written = threading.Event(), [], [0]

    def write() -> None:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    n = written[0]
                    try:
                        for table in ("t", "mirror"):
                            conn.exec_driver_sql(
                                f"INSERT INTO {table} (id, k, amount) VALUES ({100000 + n}, 1, {n})"
                            )
                            conn.exec_driver_sql(
                                f"UPDATE {table} SET amount = amount + 1"
                                f" WHERE id = {1 + n * 7 % 60000}"
                            )
                            conn.exec_driver_sql(
                                f"DELETE FROM {table} WHERE id = {2 + n * 13 % 60000}"
                            )
                        conn.commit()
                    except sa.exc.OperationalError as error:
                        # pt-online-schema-change's triggers write the new table while its
                        # chunks fill it: a deadlock now and then, which an application
                        # retries (the whole transaction, both tables, was rolled back).
                        if "1213" not in str(error):
                            raise
                        conn.rollback()
                        continue
                    written[0] += 1
                    time.sleep(0.002)
        except BaseException as error:
            failures.append(error)
        finally:
            engine.dispose()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result, _events = _apply(url, root, copy_executor=executor, copy_chunk_time=0.01)
    finally:
        stop.set()
        writer.join()
    assert failures == []
    return result, written[0]


@pytest.mark.mariadb
def test_every_row_written_during_the_tools_copy_is_kept(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    ours = mariadb_pair[0]
    _client(ours, SEED.format(rows=60000) + MIRRORED)
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    result, written = _apply_while_writing(ours, root)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert written > 10
    assert _same_rows(ours)
    assert _left(ours) == ["mirror"]


@pytest.mark.mariadb
def test_a_rollback_after_the_tools_cut_over_keeps_the_rows_written_since(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """The down section is copied by the tool too; the rows written after the run stay."""
    ours = mariadb_pair[0]
    _client(ours, SEED.format(rows=3000) + MIRRORED)
    root = _migrations(
        tmp_path, f"-- online: copy\n{CHANGE};\n-- lupo:down\n-- online: copy\n{DOWN};\n"
    )
    result, _events = _apply(ours, root, copy_executor=TOOL)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    for table in ("t", "mirror"):
        _client(
            ours,
            f"INSERT INTO {table} (id, k, amount) VALUES (9001, 5, 77);"
            f" UPDATE {table} SET note = 'changed' WHERE id = 7; DELETE FROM {table} WHERE id = 8;",
        )
    done = _lupo("rollback", result.run.id, str(root), "--db", ours, "-y", cwd=tmp_path)  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stdout + done.stderr
    assert _same_rows(ours)
    definition = _dump(ours, "t").split("INSERT")[0].replace("`t`", "`x`")
    assert definition == _dump(ours, "mirror").split("INSERT")[0].replace("`mirror`", "`x`")
    assert _left(ours) == ["mirror"]


@pytest.mark.mariadb
@pytest.mark.parametrize("executor", ["lupo", TOOL])
def test_a_rollback_keeps_the_rows_written_while_the_copy_ran(
    executor: str, mariadb_pair: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The run's seal takes for its own only the rows its alteration explains: what the
    writer changed while the copy ran stays as the writer left it (it was put back from the
    pre-images before: 218 rows of the writer's undone, measured)."""
    if executor == TOOL:
        request.getfixturevalue("tool")
    ours = mariadb_pair[0]
    _client(ours, SEED.format(rows=60000) + MIRRORED)
    root = _migrations(
        tmp_path,
        f"-- online: copy\n{CHANGE};\n-- lupo:down\n-- online: copy\n{DOWN};\n",
        executor,
    )
    result, _written = _apply_while_writing(ours, root, executor)
    done = _lupo("rollback", result.run.id, str(root), "--db", ours, "-y", cwd=tmp_path)  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stdout + done.stderr
    assert _same_rows(ours)


def _lupo(
    *args: str, cwd: Path | None = None, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "lupo_migrate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def _tool_running() -> bool:
    done = subprocess.run(["pgrep", "-f", TOOL], capture_output=True, text=True)
    return bool(done.stdout.strip())


@pytest.mark.mariadb
@pytest.mark.slow
def test_kill_9_while_the_tool_copies_is_settled_by_recover_or_copied_again(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """The run is killed while the tool copies (its triggers are on ``t``): the tool dies
    with it; ``recover`` drops what it made and leaves ``t`` as it was; ``recover --resume``
    copies again from the start and leaves what the plain ALTER leaves."""
    ours, theirs = mariadb_pair
    seed = "DROP TABLE IF EXISTS t;" + SEED.format(rows=200000)
    _client(theirs, seed + CHANGE + ";")
    expected = _dump(theirs, "t")
    # Over the backup limit: the down section is the way back.
    root = _migrations(
        tmp_path, f"-- online: copy\n{CHANGE};\n-- lupo:down\n-- online: copy\n{DOWN};\n"
    )
    triggers = set(pt.triggers(str(sa.make_url(ours).database), "t"))
    engine = sa.create_engine(ours)
    for number, resume in enumerate((False, True), 1):
        _client(ours, seed)
        before = _dump(ours, "t")
        target = f"round{number}"
        command = [sys.executable, "-m", "lupo_migrate", "apply", str(root), "--db", ours]
        process = subprocess.Popen(
            [*command, "--target", target],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        deadline = time.monotonic() + 60
        with engine.connect() as conn:
            while True:
                present = {
                    str(r[0])
                    for r in conn.exec_driver_sql(
                        "SELECT trigger_name FROM information_schema.triggers"
                        " WHERE trigger_schema = DATABASE()"
                    ).all()
                }
                conn.rollback()
                if triggers <= present:
                    break
                assert process.poll() is None, "the run ended before the tool copied"
                assert time.monotonic() < deadline
                time.sleep(0.01)
        process.kill()
        process.wait()
        gone = time.monotonic() + 10
        while _tool_running():
            assert time.monotonic() < gone, "the tool went on copying after its run died"
            time.sleep(0.1)
        settings = _settings(ours, root, target=target)
        with _session.session(settings) as opened:
            result = opened.orchestrator.recover(opened.steps, resume=resume)
        if resume:
            assert result.run.outcome is Outcome.COMPLETED
            assert _dump(ours, "t") == expected
        else:
            assert result.run.outcome is Outcome.ROLLED_BACK
            assert _dump(ours, "t") == before
        assert _left(ours) == []
    engine.dispose()


@pytest.mark.mariadb
def test_the_tool_missing_fails_the_step_before_anything_changes(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    url = mariadb_pair[0]
    _client(url, SEED.format(rows=3000))
    before = _dump(url, "t")
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    python_only = os.path.dirname(sys.executable)
    done = _lupo("apply", str(root), "--db", url, cwd=tmp_path, path=python_only)
    assert done.returncode != 0
    assert (
        "copy_executor is pt-online-schema-change, which is not installed here (not on PATH):"
        " install percona-toolkit, or set copy_executor = lupo" in done.stderr
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert _dump(url, "t") == before
    assert _left(url) == []


@pytest.mark.mariadb
def test_controls_the_tool_cannot_honour_are_refused_and_pause_is_kept(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """A copy the tool makes (its checkpoint, as the run writes it): ``cutover --postpone``
    and ``throttle --chunk-time`` are refused, changing nothing; ``pause`` is written."""
    from lupo_migrate.backends.sqlalchemy import online_copy as shell
    from lupo_migrate.sql import online_copy as oc

    url = mariadb_pair[0]
    _client(url, SEED.format(rows=100))
    names = oc.names_for("lupo_bk_", "0123456789abcdef", "t")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        cur = shell._Cursor(conn.connection.dbapi_connection)
        shell.create_checkpoint(cur, names, CHANGE, 100, pt.PHASE, old_table="_t_old")
    for args in (("cutover", "--postpone"), ("throttle", "--chunk-time", "0.5")):
        done = _lupo(*args, "--db", url)
        assert done.returncode != 0
        assert "runs under pt-online-schema-change, which cannot postpone its cut-over" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr
    paused = _lupo("pause", "--db", url)
    assert paused.returncode == 0, paused.stderr
    listed = _lupo("copies", "--db", url).stdout
    assert "(paused)" in listed
    assert "pt-osc" in listed
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT paused, postponed, chunk_time FROM {names.checkpoint}"
        ).one()
    engine.dispose()
    assert tuple(row) == (1, 0, None)


@pytest.mark.mariadb
def test_the_tool_reaches_a_server_that_asks_a_password_and_leaves_no_file(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """A URL with a password (characters a file or a shell would need escaped): the tool
    gets it in its environment; nothing of it is left in the temporary directory."""
    url = mariadb_pair[0]
    database = str(sa.make_url(url).database)
    user = f"pt{os.getpid()}"
    password = 'se#cr"et,=x'
    _client(
        url,
        SEED.format(rows=300) + f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'se#cr\\\"et,=x';"
        f" GRANT ALL ON *.* TO '{user}'@'127.0.0.1';",
    )
    before = set(os.listdir(tempfile.gettempdir()))
    try:
        secret_url = sa.make_url(url).set(username=user, password=password)
        root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
        result, _events = _apply(
            secret_url.render_as_string(hide_password=False), root, copy_executor=TOOL
        )
        assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    finally:
        _client(url, f"DROP USER '{user}'@'127.0.0.1';")
    left = {n for n in set(os.listdir(tempfile.gettempdir())) - before if "pt-osc" in n}
    assert left == set()
    assert database


@pytest.mark.mariadb
def test_an_old_table_the_tool_names_otherwise_than_foreseen_is_still_kept(
    tool: str, mariadb_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old table's name is foreseen before the tool runs; one taken meanwhile makes the
    tool pick another. Made here by foreseeing a wrong one: the swap is still found, the
    old table kept among the run's backups, nothing left behind."""
    from lupo_migrate.backends.sqlalchemy import pt_osc as shell

    url = mariadb_pair[0]
    _client(url, SEED.format(rows=300))
    monkeypatch.setattr(shell.pt, "old_name", lambda table, existing: f"__{table}_old")
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    result, events = _apply(url, root, copy_executor=TOOL)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert [e.data["event"] for e in events if e.name == "step.copy"][-1] == "cut_over"
    assert _left(url) == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        kept = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name ="
            f" 'lupo_bk_{result.run.id[:12]}_old_t'"  # type: ignore[attr-defined]
        ).scalar()
    engine.dispose()
    assert kept == 1
