"""The online copy on MySQL/MariaDB (issue 21): a shadow table kept up to date by triggers,
filled in chunks with a checkpoint, swapped in by one RENAME. The result must be what the
``mariadb`` client's plain ``ALTER`` leaves, no row the application writes meanwhile may be
lost or changed, and a process killed at any moment is repaired by ``recover`` (the table as it
was) or finished by ``recover --resume`` (from the last chunk)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from databases import apply_with_events as _apply
from databases import leftovers
from databases import mariadb_client as _client
from databases import mysqldump as _dump
from lupo_migrate.core.model import Outcome
from lupo_migrate.observe import Event
from lupo_migrate.session import session as _session
from lupo_migrate.session.config import Settings
from lupo_migrate.sql import online_copy as oc

# ---------------------------------------------------------------- the core, pure


def test_names_start_with_the_runs_backup_prefix_and_fit_mysql() -> None:
    names = oc.names_for("lupo_bk_", "0123456789abcdef", "t" * 64)
    every = (
        names.shadow,
        names.old,
        names.checkpoint,
        names.log,
        *names.triggers,
        *names.sync_triggers,
        names.back_log,
        *names.back_log_triggers,
        *names.back_triggers,
        names.revert,
        names.swapped,
    )
    assert all(n.startswith("lupo_bk_0123456789ab_") and len(n) <= 64 for n in every)
    assert len(set(every)) == len(every)
    other = oc.names_for("lupo_bk_", "0123456789abcdef", "t" * 63 + "u")
    assert other.shadow != names.shadow  # shortened names keep a digest of the table's


@pytest.mark.parametrize(
    ("rest", "refused"),
    [
        (" MODIFY amount BIGINT NOT NULL", None),
        (" ADD COLUMN note VARCHAR(20), ADD INDEX k (k)", None),
        (" DROP COLUMN note", None),
        (" CONVERT TO CHARACTER SET utf8mb4", None),
        (" CHANGE a b INT", "renames a column"),
        (" RENAME COLUMN a TO b", "renames a column"),
        (" RENAME TO u", "renames the table"),
        (" ADD UNIQUE KEY u (k)", "unique or primary"),
        (" ADD CONSTRAINT c UNIQUE (k)", "unique or primary"),
        (" ADD PRIMARY KEY (id)", "unique or primary"),
        ("CREATE UNIQUE INDEX u ON t (k)", "unique key"),
        (" DROP PRIMARY KEY", "primary key"),
        (" ADD FOREIGN KEY (k) REFERENCES p (id)", "foreign key"),
        (" REMOVE PARTITIONING", "partitions"),
    ],
)
def test_what_an_online_copy_cannot_reproduce_is_refused(rest: str, refused: str | None) -> None:
    why = oc.statement_refusal(rest)
    assert (why is None) if refused is None else (refused in str(why))


def test_a_table_the_copy_cannot_swap_exactly_is_refused() -> None:
    cols = (oc.ColumnFacts("id", False, False, False),)
    assert oc.table_refusal(oc.TableFacts(columns=cols, key=("id",))) is None
    assert "no primary key" in str(oc.table_refusal(oc.TableFacts(columns=cols, key=())))
    assert "refer to it" in str(
        oc.table_refusal(oc.TableFacts(columns=cols, key=("id",), referenced_by=("child",)))
    )
    assert "triggers" in str(
        oc.table_refusal(oc.TableFacts(columns=cols, key=("id",), triggers=("audit",)))
    )
    assert "MyISAM" in str(
        oc.table_refusal(oc.TableFacts(columns=cols, key=("id",), engine="MyISAM"))
    )


def test_the_chunk_keeps_a_newer_row_and_fails_on_another_unique_clash() -> None:
    names = oc.names_for("lupo_bk_", "r" * 16, "t")
    sql = oc.chunk_sql(names, "`t`", ("a", "b", "v"), ("a", "b"), first=False)
    # after (a, b) > (x, y), up to (a, b) <= (p, q), spelt out for the index
    assert "((`a` > %s) OR (`a` = %s AND `b` > %s))" in sql
    assert "((`a` < %s) OR (`a` = %s AND `b` <= %s))" in sql
    assert "LOCK IN SHARE MODE" not in sql  # no row lock: changes meanwhile are in the log
    assert sql.endswith(
        "ON DUPLICATE KEY UPDATE `lupo_bk_rrrrrrrrrrrr_new_t`.`a` = IF("
        "`lupo_bk_rrrrrrrrrrrr_new_t`.`a` <=> VALUES(`a`) AND `lupo_bk_rrrrrrrrrrrr_new_t`.`b`"
        " <=> VALUES(`b`), `lupo_bk_rrrrrrrrrrrr_new_t`.`a`, (SELECT 1 UNION ALL SELECT 2)),"
        " `lupo_bk_rrrrrrrrrrrr_new_t`.`b` = IF(`lupo_bk_rrrrrrrrrrrr_new_t`.`a` <=> VALUES(`a`)"
        " AND `lupo_bk_rrrrrrrrrrrr_new_t`.`b` <=> VALUES(`b`), `lupo_bk_rrrrrrrrrrrr_new_t`.`b`,"
        " (SELECT 1 UNION ALL SELECT 2))"
    )
    assert oc.after_params(("a", "b"), [1, 2]) == [1, 1, 2]


def test_the_log_notes_keys_only_and_the_apply_reads_the_original_as_it_is_now() -> None:
    names = oc.names_for("lupo_bk_", "r" * 16, "t")
    ins, upd, dele = oc.log_trigger_sql(names, "`t`", ("id",))
    log = "`lupo_bk_rrrrrrrrrrrr_log_t`"
    assert ins.endswith(f"INSERT INTO {log} (`lupo_seq`, `id`) VALUES (UUID_SHORT(), NEW.`id`)")
    assert upd.endswith("VALUES (UUID_SHORT(), OLD.`id`), (UUID_SHORT(), NEW.`id`)")
    assert dele.endswith("VALUES (UUID_SHORT(), OLD.`id`)")
    remove, insert = oc.apply_sql(names, "`t`", ("id", "v"), ("id",), 2)
    assert remove == "DELETE FROM `lupo_bk_rrrrrrrrrrrr_new_t` WHERE `id` IN (%s, %s)"
    assert "FROM `t` AS src WHERE src.`id` IN (%s, %s) ON DUPLICATE KEY UPDATE" in insert
    assert oc.key_in(("a", "b"), 2) == "(`a`, `b`) IN ((%s, %s), (%s, %s))"
    assert oc.locked_rows_sql("`t`", ("id",), ("id",), 1).endswith("LOCK IN SHARE MODE")


@given(
    size=st.integers(oc.LEAST_CHUNK, oc.MOST_CHUNK),
    rows=st.integers(0, oc.MOST_CHUNK),
    seconds=st.floats(0, 100, allow_nan=False),
    target=st.floats(0.001, 10, allow_nan=False),
)
def test_the_next_chunk_stays_in_bounds_and_moves_toward_the_target(
    size: int, rows: int, seconds: float, target: float
) -> None:
    after = oc.next_chunk(size, rows, seconds, target)
    assert oc.LEAST_CHUNK <= after <= oc.MOST_CHUNK
    assert size // 4 - 1 <= after <= size * 2
    if rows and seconds > target * 1.01:
        assert after <= size  # too slow: never larger
    if rows and 0 < seconds < target * 0.99:
        assert after >= size  # too fast: never smaller


def test_a_new_not_null_column_without_a_default_is_refused() -> None:
    key = oc.ColumnFacts("id", False, False, False)
    value = oc.ColumnFacts("v", True, True, False)
    columns, why = oc.copy_columns([key, value], [key, value], ["id"])
    assert columns == ("id", "v")
    assert why is None
    generated = oc.ColumnFacts("g", True, False, True)
    assert oc.copy_columns([key, value], [key, generated], ["id"]) == (("id",), None)
    _, why = oc.copy_columns([key], [key, oc.ColumnFacts("n", False, False, False)], ["id"])
    assert why == "it adds n NOT NULL without a default"
    _, why = oc.copy_columns([key, value], [value], ["id"])
    assert why == "it drops id, a column of the primary key"


# ---------------------------------------------------------------- on MariaDB

SEED = (
    "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, k INT, amount INT NOT NULL,"
    " note VARCHAR(10), made DATETIME DEFAULT '2026-01-01 00:00:00');"
    " INSERT INTO t (k, amount, note) SELECT seq % 97, seq * 3, IF(seq % 5 = 0, NULL, 'x')"
    " FROM seq_1_to_{rows};"
    " DELETE FROM t WHERE id % 11 = 0;"
)
CHANGE = "ALTER TABLE t MODIFY amount BIGINT NOT NULL, ADD COLUMN extra INT DEFAULT 7"


def _left(url: str) -> list[str]:
    """What online copies left in the application's database: tables and triggers."""
    return leftovers(url, "lupo%")


def _migrations(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "m"
    root.mkdir(exist_ok=True)
    (root / "V1__change.sql").write_text(text)
    return root


@pytest.mark.mariadb
def test_an_online_copy_leaves_what_the_clients_plain_alter_leaves(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    ours, theirs = mariadb_pair
    for url in mariadb_pair:
        _client(url, SEED.format(rows=3000))
    _client(theirs, CHANGE + ";")
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    result, events = _apply(ours, root)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    ran = [e.data.get("strategy") for e in events if e.name == "statement"]
    assert ran == ["copy"]
    copy = [e.data for e in events if e.name == "step.copy"]
    assert copy[-1]["event"] == "cut_over"
    progress = [d for d in copy if d["event"] == "progress"]
    assert progress[-1]["copied"] == 2728  # every row, once (3000 less the 272 deleted)
    assert _dump(ours, "t") == _dump(theirs, "t")
    assert _left(ours) == []


@pytest.mark.mariadb
def test_the_copys_progress_reaches_the_metrics_and_the_terminal(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    import io

    from lupo_migrate.observe import Metrics
    from lupo_migrate.observe.progress import Progress

    url = mariadb_pair[0]
    _client(url, SEED.format(rows=3000))
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    metrics, stream = Metrics(), io.StringIO()
    with _session.session(Settings(db=url, migrations=root)) as opened:
        opened.orchestrator.observers = [metrics, Progress(stream, live=False)]
        opened.orchestrator.apply(opened.steps)
    shot = metrics.snapshots()[-1]
    assert shot.copy_rows_done == 2728
    assert shot.copy_rows_total >= 2728
    assert shot.copy_eta_seconds == 0.0
    assert 'lupo_migrate_copy_rows_done{target="default"' in metrics.prometheus()
    said = stream.getvalue()
    assert "online copy of t: 2,728 of about " in said
    assert "online copy of t: cut over" in said


@pytest.mark.mariadb
def test_auto_copies_a_big_table_the_server_would_block_and_alters_a_small_one(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    ours, theirs = mariadb_pair
    for url in mariadb_pair:
        _client(url, SEED.format(rows=3000) + "CREATE TABLE small LIKE t;")
        _client(url, "INSERT INTO small SELECT * FROM t WHERE id < 50; ANALYZE TABLE t, small;")
    text = f"{CHANGE};\nALTER TABLE small MODIFY amount BIGINT NOT NULL;\n"
    _client(theirs, text)
    root = _migrations(tmp_path, text)
    result, events = _apply(ours, root, copy_min_rows=1000)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    ran = [e.data.get("strategy") for e in events if e.name == "statement"]
    assert ran == ["copy", "as written"]
    told = [e.data for e in events if e.name == "step.copy" and e.data["event"] == "not_copied"]
    assert "copy_min_rows is 1000" in told[0]["reason"]
    assert _dump(ours, "t", "small") == _dump(theirs, "t", "small")


@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("setup", "statement", "reason"),
    [
        ("", "ALTER TABLE t ADD UNIQUE KEY u (k)", "adds a unique or primary key"),
        ("", "ALTER TABLE t CHANGE note memo VARCHAR(10)", "renames a column"),
        ("ALTER TABLE t DROP PRIMARY KEY, MODIFY id INT NOT NULL;", CHANGE, "no primary key"),
        (
            "CREATE TABLE child (id INT PRIMARY KEY, t_id INT, FOREIGN KEY (t_id) REFERENCES"
            " t (id));",
            CHANGE,
            "foreign keys of child refer to it",
        ),
        (
            "CREATE TRIGGER audit BEFORE UPDATE ON t FOR EACH ROW SET NEW.k = NEW.k;",
            CHANGE,
            "it has triggers (audit)",
        ),
        ("", "ALTER TABLE t ADD COLUMN n INT NOT NULL", "adds n NOT NULL without a default"),
    ],
)
def test_online_copy_refuses_what_it_cannot_do_exactly_and_touches_nothing(
    mariadb_pair: tuple[str, str], tmp_path: Path, setup: str, statement: str, reason: str
) -> None:
    url = mariadb_pair[0]
    _client(url, SEED.format(rows=200) + setup)
    before = _dump(url, "t")
    root = _migrations(tmp_path, f"-- online: copy\n{statement};\n")
    result, _events = _apply(url, root)
    run = result.run  # type: ignore[attr-defined]
    assert run.outcome is Outcome.ROLLED_BACK
    failure = run.failure.message
    assert reason in failure
    assert "online: copy cannot copy this table exactly" in failure
    assert "nothing ran" in failure
    assert _dump(url, "t") == before
    assert [n for n in _left(url) if n != "audit"] == []


@pytest.mark.mariadb
def test_every_row_written_during_the_copy_is_kept(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """A writer inserts, updates (the key too) and deletes, in transactions, all through the
    copy, and does the same to a mirror table: after the cut-over the two hold the same rows."""
    url = mariadb_pair[0]
    _client(
        url,
        SEED.format(rows=20000) + "CREATE TABLE mirror LIKE t; INSERT INTO mirror SELECT * FROM t;",
    )
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]

    def write() -> None:
        engine = sa.create_engine(url)
        rng = random.Random(7)
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    key = rng.randrange(1, 22000)
                    kind = rng.randrange(4)
                    for table in ("t", "mirror"):
                        if kind == 0:
                            conn.exec_driver_sql(
                                f"INSERT INTO {table} (id, k, amount, note) VALUES"
                                f" ({30000 + done[0]}, 1, {key}, 'new')"
                            )
                        elif kind == 1:
                            conn.exec_driver_sql(
                                f"UPDATE {table} SET amount = amount + 1, note = 'upd'"
                                f" WHERE id = {key}"
                            )
                        elif kind == 2:
                            conn.exec_driver_sql(f"DELETE FROM {table} WHERE id = {key}")
                        else:
                            conn.exec_driver_sql(
                                f"UPDATE IGNORE {table} SET id = id + 100000 WHERE id = {key}"
                            )
                    conn.commit()
                    done[0] += 1
        except BaseException as exc:  # the test fails on it below
            errors.append(exc)
        finally:
            engine.dispose()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.3)
        root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
        result, events = _apply(url, root, copy_chunk_time=0.02)
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
    assert errors == []
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert [e.data.get("strategy") for e in events if e.name == "statement"] == ["copy"]
    assert done[0] > 100
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            differ = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM (SELECT id, k, amount, note, made FROM t UNION ALL"
                " SELECT id, k, amount, note, made FROM mirror) u GROUP BY id, k, amount, note,"
                " made HAVING COUNT(*) <> 2"
            ).all()
            counts = conn.exec_driver_sql(
                "SELECT (SELECT COUNT(*) FROM t), (SELECT COUNT(*) FROM mirror)"
            ).one()
    finally:
        engine.dispose()
    assert differ == []
    assert counts[0] == counts[1]


# ---------------------------------------------------------------- killed mid-copy

_KILLS = 10


def _checkpoint(url: str) -> dict[str, object] | None:
    """The checkpoint of the copy under way (None: none is)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return _read_checkpoint(conn)
    finally:
        engine.dispose()


def _read_checkpoint(conn: sa.Connection) -> dict[str, object] | None:
    names = conn.exec_driver_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema ="
        " DATABASE() AND table_name LIKE 'lupo%%chk%%'"
    ).all()
    conn.rollback()
    if not names:
        return None
    try:
        row = conn.exec_driver_sql(
            f"SELECT phase, last_key, copied FROM `{names[0][0]}`"
        ).one_or_none()
    except sa.exc.ProgrammingError:  # dropped meanwhile
        conn.rollback()
        return None
    conn.rollback()
    if row is None:
        return None
    last = None if row[1] is None else json.loads(row[1])
    return {"phase": row[0], "last": last, "copied": int(row[2])}


def _applying(url: str, root: Path, target: str) -> subprocess.Popen[bytes]:
    """``lupo-migrate apply`` of *root* as a process (in the directory of *root*, whose
    ``lupo.toml`` it reads), recorded under *target*."""
    command = [sys.executable, "-m", "lupo_migrate", "apply", str(root), "--db", url]
    return subprocess.Popen(
        [*command, "--target", target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root.parent,
    )


def _recover(url: str, root: Path, target: str, resume: bool) -> tuple[object, list[Event]]:
    events: list[Event] = []
    settings = Settings(db=url, migrations=root, target=target, copy_chunk_time=0.005)
    with _session.session(settings) as opened:
        opened.orchestrator.observers = [events.append]
        result = opened.orchestrator.recover(opened.steps, resume=resume)
    return result, events


@pytest.mark.mariadb
@pytest.mark.slow
def test_kill_9_at_random_moments_of_a_copy_is_repaired_by_recover_or_resumed(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """Ten kills at random moments of the copy (each round its own ledger): ``recover``
    leaves the table exactly as it was; ``recover --resume`` goes on from the checkpoint
    (after its last key: rows copied are not copied again) and leaves what the client's
    plain ALTER leaves."""
    ours, theirs = mariadb_pair
    rng = random.Random(21)
    seed = "DROP TABLE IF EXISTS t;" + SEED.format(rows=30000)
    _client(theirs, seed + CHANGE + ";")
    expected = _dump(theirs, "t")
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    (tmp_path / "lupo.toml").write_text("copy_chunk_time = 0.005\n")
    engine = sa.create_engine(ours)
    # How long the copy runs on this machine (its checkpoint is there that long): the kills
    # land at random moments within it.
    _client(ours, seed)
    process = _applying(ours, root, "calibration")
    with engine.connect() as conn:
        _until(lambda: _read_checkpoint(conn) is not None, 60)
        began = time.monotonic()
        _until(lambda: _read_checkpoint(conn) is None, 60)
        lasted = time.monotonic() - began
    assert process.wait(60) == 0
    kills = mid_copy = attempt = 0
    while kills < _KILLS:
        attempt += 1
        assert attempt <= 2 * _KILLS, f"only {kills} kills landed in {attempt - 1} rounds"
        _client(ours, seed)
        before = _dump(ours, "t")
        target = f"round{attempt}"
        process = _applying(ours, root, target)
        deadline = time.monotonic() + 60
        with engine.connect() as conn:
            while _read_checkpoint(conn) is None and process.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.9 * lasted))
        if process.poll() is not None:  # it ended first: no kill this round
            continue
        process.kill()
        process.wait()
        kills += 1
        at_kill = _checkpoint(ours)
        copying = at_kill is not None and at_kill["phase"] == "copying"
        mid_copy += copying
        resume = kills % 2 == 0
        result, events = _recover(ours, root, target, resume)
        outcome = result.run.outcome  # type: ignore[attr-defined]
        if resume:
            assert outcome is Outcome.COMPLETED, (attempt, at_kill)
            assert _dump(ours, "t") == expected, (attempt, at_kill)
            told = [e.data for e in events if e.name == "step.copy"]
            if copying and at_kill is not None and at_kill["last"] is not None:
                resumed = [d for d in told if d["event"] == "resumed"]
                assert resumed, (attempt, told)
                assert resumed[0]["last"] == at_kill["last"]
                assert resumed[0]["copied"] == at_kill["copied"]
                # Each row once, over both processes. Killed after the last chunk committed
                # (the phase not yet switching), the resumed copy has no chunk left to
                # report: the checkpoint's count is the whole.
                progress = [d for d in told if d["event"] == "progress"]
                final = progress[-1]["copied"] if progress else resumed[0]["copied"]
                assert final == 27273, (attempt, at_kill, told)
        else:
            assert outcome is Outcome.ROLLED_BACK, (attempt, at_kill)
            assert _dump(ours, "t") == before, (attempt, at_kill)
        assert _left(ours) == []
    engine.dispose()
    print(f"{kills} kills in {attempt} rounds, {mid_copy} while rows were copied")
    assert mid_copy >= _KILLS // 2, "most kills should land while rows are copied"


# ---------------------------------------------------------------- an operator's hold


def _lupo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lupo_migrate", *args], capture_output=True, text=True
    )


def _applying_in_thread(
    settings: Settings, observer: Callable[[Event], None], results: list[object]
) -> threading.Thread:
    """``apply`` with *settings* in a thread of its own, started, told to *observer*; its
    result is appended to *results*."""

    def run() -> None:
        with _session.session(settings) as opened:
            opened.orchestrator.observers = [observer]
            results.append(opened.orchestrator.apply(opened.steps))

    worker = threading.Thread(target=run)
    worker.start()
    return worker


def _until(what: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.02)


@pytest.mark.mariadb
def test_pause_throttle_and_postpone_hold_a_copy_from_another_process_and_are_recorded(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """The run's first progress event holds it until ``pause`` (another process) is done, so
    the pause lands mid-copy whatever the machine's speed."""
    url = mariadb_pair[0]
    _client(url, SEED.format(rows=30000))
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    said = _lupo("pause", "--db", url)
    assert said.returncode != 0
    assert "no online copy is under way on this database" in said.stderr
    first, go = threading.Event(), threading.Event()
    results: list[object] = []

    def hold(event: Event) -> None:
        if event.name == "step.copy" and event.data["event"] == "progress" and not first.is_set():
            first.set()
            go.wait(60)

    settings = Settings(db=url, migrations=root, copy_chunk_time=0.002)
    worker = _applying_in_thread(settings, hold, results)
    try:
        assert first.wait(60)
        paused = _lupo("pause", "--db", url, "--operator", "ann")
        assert paused.returncode == 0, paused.stderr
        go.set()
        time.sleep(0.5)  # the chunk under way ends first
        still = _checkpoint(url)
        time.sleep(0.6)
        assert _checkpoint(url) == still, "a paused copy copies nothing"
        assert still is not None
        assert still["copied"] < 27273
        listed = _lupo("copies", "--db", url).stdout
        assert "t: run " in listed
        assert "(paused)" in listed
        from lupo_migrate.dashboard import sections

        with _session.session(Settings(db=url), files=False) as looking:
            shown = sections.copies(looking.orchestrator)  # the dashboard's section
        assert [(c["table"], c["paused"], c["phase"]) for c in shown] == [("t", True, "copying")]
        done = _lupo("cutover", "--db", url, "--postpone", "--table", "t")
        assert done.returncode == 0, done.stderr
        throttled = _lupo("throttle", "--db", url, "--max-threads", "1", "--chunk-time", "0.01")
        assert "throttled (most_threads 1, chunk_time 0.01)" in throttled.stdout
        # hold the copy on Threads_running: another session keeps a query running
        with sa.create_engine(url).connect() as busy:
            running = threading.Thread(target=busy.exec_driver_sql, args=("SELECT SLEEP(2)",))
            running.start()
            assert _lupo("resume", "--db", url).returncode == 0
            time.sleep(0.6)
            assert _checkpoint(url) == still, "held while the server runs more than 1 thread"
            assert _lupo("throttle", "--db", url, "--max-threads", "0").returncode == 0
            running.join()
        # the rows are copied, then the cut-over waits: the table keeps its definition
        _until(lambda: int(str((_checkpoint(url) or {}).get("copied", 0))) >= 27273)
        time.sleep(0.6)
        assert worker.is_alive()
        assert "`amount` int(11)" in _dump(url, "t")
        assert "cut-over postponed" in _lupo("copies", "--db", url).stdout
        assert _lupo("cutover", "--db", url, "--now").returncode == 0
        worker.join(60)
    finally:
        go.set()
        worker.join(60)
    assert results
    run_ = results[0].run  # type: ignore[attr-defined]
    assert run_.outcome is Outcome.COMPLETED
    assert "`amount` bigint(20)" in _dump(url, "t")
    shown = _lupo("show", run_.id, "--db", url).stdout
    for line in (
        "online copy of t: paused (by ann)",
        "online copy of t: cut-over postponed",
        "online copy of t: throttled (most_threads 1, chunk_time 0.01)",
        "online copy of t: resumed",
        "online copy of t: cut-over let go ahead",
    ):
        assert line in shown, shown


@pytest.mark.mariadb
@pytest.mark.parametrize("down", [True, False])
def test_a_rollback_after_the_cut_over_keeps_the_rows_written_since(
    mariadb_pair: tuple[str, str], tmp_path: Path, down: bool
) -> None:
    """Rows written after the cut-over stay when the run is rolled back in its window,
    whether the file has a down section (sent by an online copy too) or not (the run's
    pre-images put the definition back)."""
    ours, theirs = mariadb_pair
    change = "ALTER TABLE t MODIFY amount BIGINT NOT NULL"
    text = f"-- online: copy\n{change};\n"
    if down:
        text += "-- lupo:down\n-- online: copy\nALTER TABLE t MODIFY amount INT NOT NULL;\n"
    for url in mariadb_pair:
        _client(url, SEED.format(rows=3000))
    root = _migrations(tmp_path, text)
    result, _events = _apply(ours, root)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    written = (
        "INSERT INTO t (k, amount, note) VALUES (5, 77, 'after'), (6, 78, NULL);"
        " UPDATE t SET note = 'changed' WHERE id = 7; DELETE FROM t WHERE id = 8;"
    )
    for url in mariadb_pair:
        _client(url, written)
    done = _lupo("rollback", result.run.id, str(root), "--db", ours, "-y")  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stdout + done.stderr
    assert _dump(ours, "t") == _dump(theirs, "t")  # as if only the application had written


@pytest.mark.mariadb
def test_a_rollback_that_would_change_a_row_written_since_is_refused_touching_nothing(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    url = mariadb_pair[0]
    _client(url, SEED.format(rows=3000))
    root = _migrations(tmp_path, "-- online: copy\nALTER TABLE t MODIFY amount BIGINT NOT NULL;\n")
    result, _events = _apply(url, root)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    _client(url, "INSERT INTO t (k, amount) VALUES (1, 5000000000), (2, 3);")
    before = _dump(url, "t")
    done = _lupo("rollback", result.run.id, str(root), "--db", url, "-y")  # type: ignore[attr-defined]
    assert done.returncode != 0
    assert "1 row(s) of t hold values in amount that do not convert back to int(11)" in (
        done.stderr
    )
    assert "Nothing was touched" in done.stderr
    assert _dump(url, "t") == before


@pytest.mark.mariadb
@pytest.mark.parametrize(
    "seed",
    [
        # sparse whole-number keys: chunks by the index, not by arithmetic
        "CREATE TABLE t (id BIGINT PRIMARY KEY, amount INT NOT NULL);"
        " INSERT INTO t SELECT seq * 1000000000000, seq FROM seq_1_to_2500;",
        # a composite key
        "CREATE TABLE t (a INT, b VARCHAR(8), amount INT NOT NULL, PRIMARY KEY (a, b));"
        " INSERT INTO t SELECT seq % 7, CONCAT('k', seq), seq FROM seq_1_to_2500;",
        # a text key, a generated column, a float and a date
        "CREATE TABLE t (id VARCHAR(12) PRIMARY KEY, amount INT NOT NULL, f FLOAT, d DATETIME,"
        " g INT AS (amount * 2) VIRTUAL);"
        " INSERT INTO t (id, amount, f, d) SELECT CONCAT('x', seq), seq, seq / 3,"
        " '2026-01-01' + INTERVAL seq MINUTE FROM seq_1_to_2500;",
    ],
    ids=["sparse", "composite", "text"],
)
def test_keys_of_every_shape_are_copied_as_the_plain_alter_leaves_them(
    mariadb_pair: tuple[str, str], tmp_path: Path, seed: str
) -> None:
    ours, theirs = mariadb_pair
    change = "ALTER TABLE t MODIFY amount BIGINT NOT NULL"
    for url in mariadb_pair:
        _client(url, seed)
    _client(theirs, change + ";")
    result, events = _apply(ours, _migrations(tmp_path, f"-- online: copy\n{change};\n"))
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert [e.data.get("strategy") for e in events if e.name == "statement"] == ["copy"]
    assert _dump(ours, "t") == _dump(theirs, "t")
    assert _left(ours) == []


# ---------------------------------------------------------------- a replica that lags


@pytest.fixture(name="replicated")
def _replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A primary (binary log on) and its replica: two servers of this machine's MariaDB
    of their own, on loopback ports, made for this test and stopped after it."""
    import shutil
    import socket

    if shutil.which("mariadb-install-db") is None or shutil.which("mariadbd") is None:
        pytest.skip("mariadb-install-db / mariadbd are not installed")
    base = tmp_path_factory.mktemp("replication")
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    servers = []
    try:
        for number, port in enumerate(ports, 1):
            data = base / f"s{number}"
            install = ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root"]
            install += ["--auth-root-authentication-method=normal", "--skip-test-db"]
            subprocess.run(install, capture_output=True, check=True)
            extra = [f"--log-bin={base}/bin{number}", "--binlog-format=ROW"] if number == 1 else []
            server = ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}"]
            server += [f"--port={port}", "--bind-address=127.0.0.1", f"--server-id={number}"]
            server += [f"--socket={base}/s{number}.sock", f"--pid-file={base}/s{number}.pid"]
            servers.append(
                subprocess.Popen(
                    [*server, "--skip-log-error", *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        urls = [f"mysql+pymysql://root@127.0.0.1:{port}" for port in ports]
        for url in urls:
            _until(lambda url=url: _reachable(url), 60)
        replica = sa.create_engine(urls[1], isolation_level="AUTOCOMMIT")
        with replica.connect() as conn:
            conn.exec_driver_sql(
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={ports[0]},"
                " MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=no"
            )
            conn.exec_driver_sql("START SLAVE")
        replica.dispose()
        primary = sa.create_engine(urls[0], isolation_level="AUTOCOMMIT")
        with primary.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE shop")
        primary.dispose()
        yield f"{urls[0]}/shop", urls[1]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(60)


def _reachable(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.mark.mariadb
@pytest.mark.slow
def test_the_copy_waits_while_a_replica_does_not_replicate_and_goes_on_after(
    replicated: tuple[str, str], tmp_path: Path
) -> None:
    primary, replica = replicated
    engine = sa.create_engine(replica, isolation_level="AUTOCOMMIT")
    _client_at(primary, SEED.format(rows=3000))
    _until(lambda: _rows_at(f"{replica}/shop", "t") == 2728)  # replicated
    with engine.connect() as conn:
        conn.exec_driver_sql("STOP SLAVE SQL_THREAD")
    told: list[dict[str, object]] = []
    results: list[object] = []

    def watch(event: Event) -> None:
        if event.name == "step.copy":
            told.append(dict(event.data))

    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    settings = Settings(db=primary, migrations=root, copy_replicas=(replica,))
    worker = _applying_in_thread(settings, watch, results)
    try:
        _until(lambda: any(d["event"] == "throttled" for d in told))
        time.sleep(0.6)
        assert worker.is_alive()
        assert not any(d["event"] == "cut_over" for d in told)
        held = next(d for d in told if d["event"] == "throttled")
        assert held["reason"] == "a replica does not replicate (stopped, or out of reach)"
        with engine.connect() as conn:
            conn.exec_driver_sql("START SLAVE SQL_THREAD")
        worker.join(60)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql("START SLAVE SQL_THREAD")
        worker.join(60)
        engine.dispose()
    assert results
    assert results[0].run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    _until(lambda: "bigint" in _column_type(f"{replica}/shop", "t", "amount"))


def _client_at(url: str, sql: str) -> None:
    """*sql* on *url*'s database (a server of its own: the client's port is in the URL)."""
    parsed = sa.make_url(url)
    subprocess.run(
        ["mariadb", "-uroot", "-h127.0.0.1", f"-P{parsed.port}", str(parsed.database)],
        input=sql,
        text=True,
        check=True,
    )


def _rows_at(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
    except sa.exc.DBAPIError:
        return -1
    finally:
        engine.dispose()


def _column_type(url: str, table: str, column: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT column_type FROM information_schema.columns WHERE table_schema ="
                f" DATABASE() AND table_name = '{table}' AND column_name = '{column}'"
            ).scalar()
            return str(found)
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_failure_to_tidy_after_the_cut_over_does_not_fail_the_statement(
    mariadb_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the RENAME ran, the statement has run: a failure dropping the copy's triggers
    afterwards is told (``tidy_failed``), never a failed step that a rollback would then
    take for one that did not run."""
    from lupo_migrate.backends.sqlalchemy import online_copy as shell

    def broken(*_args: object) -> None:
        raise RuntimeError("DROP TRIGGER refused")

    monkeypatch.setattr(shell, "finish", broken)
    url = mariadb_pair[0]
    _client(url, SEED.format(rows=300))
    result, events = _apply(url, _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n"))
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    told = [e.data for e in events if e.name == "step.copy" and e.data["event"] == "tidy_failed"]
    assert told[0]["reason"] == "DROP TRIGGER refused"
    assert "`amount` bigint(20)" in _dump(url, "t")
    assert "t: run " in _lupo("copies", "--db", url).stdout  # what is left is listed


# ---------------------------------------------------------------- the application's rows


@pytest.mark.mariadb
@pytest.mark.parametrize("down", [True, False])
def test_a_rollback_puts_back_what_the_alteration_changed_and_keeps_what_the_application_wrote(
    mariadb_pair: tuple[str, str], tmp_path: Path, down: bool
) -> None:
    """``MODIFY amount DECIMAL(12,1)`` rounds the values (the alteration's own change); while
    the copy runs the application updates, inserts and deletes rows. The rollback puts the
    rounded values back exactly and leaves the application's rows as it wrote them: the
    table ends as a mirror that only the application wrote to."""
    ours = mariadb_pair[0]
    seed = (
        "CREATE TABLE {t} (id INT PRIMARY KEY, amount DECIMAL(12,3) NOT NULL, note VARCHAR(10));"
        " INSERT INTO {t} SELECT seq, seq * 1.234, 'x' FROM seq_1_to_3000;"
    )
    _client(ours, seed.format(t="t") + seed.format(t="mirror"))
    change = "ALTER TABLE t MODIFY amount DECIMAL(12,1) NOT NULL"
    text = f"-- online: copy\n{change};\n"
    if down:
        text += (
            "-- lupo:down\n-- online: copy\nALTER TABLE t MODIFY amount DECIMAL(12,3) NOT NULL;\n"
        )
    root = _migrations(tmp_path, text)
    writes = (
        "UPDATE {t} SET amount = 7, note = 'app' WHERE id = 10;"
        " INSERT INTO {t} VALUES (5000, 9, 'new'); DELETE FROM {t} WHERE id = 20;"
    )
    wrote = threading.Event()

    def application(event: Event) -> None:
        if event.name == "step.copy" and event.data["event"] == "progress" and not wrote.is_set():
            _client(ours, writes.format(t="t") + writes.format(t="mirror"))
            wrote.set()

    settings = Settings(db=ours, migrations=root, copy_chunk_time=0.002)
    with _session.session(settings) as opened:
        opened.orchestrator.observers = [application]
        result = opened.orchestrator.apply(opened.steps)
    assert result.run.outcome is Outcome.COMPLETED
    assert wrote.is_set(), "the application wrote while the copy ran"
    engine = sa.create_engine(ours)
    with engine.connect() as conn:
        rounded = conn.exec_driver_sql("SELECT amount FROM t WHERE id = 2999").scalar()
    engine.dispose()
    assert str(rounded) == "3700.8"  # 3700.766, rounded by the alteration
    done = _lupo("rollback", result.run.id, str(root), "--db", ours, "-y")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _dump(ours, "t").replace("`t`", "`x`") == _dump(ours, "mirror").replace(
        "`mirror`", "`x`"
    )


@pytest.mark.mariadb
@pytest.mark.parametrize("auto_increment", [True, False])
def test_a_chunk_that_clashes_on_another_unique_key_fails_and_changes_no_key(
    mariadb_url: str, auto_increment: bool
) -> None:
    """The clash guard on the server: a row in the shadow holding the chunk's value of
    another unique key. The chunk fails (and is retried after the log, or fails the copy);
    the shadow's row keeps its key. Before, the guard set the key to NULL, which MariaDB
    turns into 0 for an AUTO_INCREMENT key, silently: the row lost its key."""
    names = oc.names_for("lupo_bk_", "c" * 16, "t")
    auto = " AUTO_INCREMENT" if auto_increment else ""
    _client(
        mariadb_url,
        f"CREATE TABLE t (id INT{auto} PRIMARY KEY, k INT, UNIQUE KEY uk (k));"
        " INSERT INTO t VALUES (1, 10), (2, 20);"
        f" CREATE TABLE {names.shadow} LIKE t; INSERT INTO {names.shadow} VALUES (7, 20);",
    )
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            sql = oc.chunk_sql(names, "`t`", ("id", "k"), ("id",), first=True)
            with pytest.raises(sa.exc.OperationalError) as raised:
                conn.exec_driver_sql(sql, (2,))
            assert raised.value.orig.args[0] == oc.CLASH  # type: ignore[union-attr]
            conn.rollback()
            rows = conn.exec_driver_sql(f"SELECT id, k FROM {names.shadow} ORDER BY id").all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(7, 20)]


@pytest.mark.mariadb
def test_columns_added_and_dropped_online_while_the_application_writes_elsewhere(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """A copy that drops a column and adds one while the application writes the table and
    another one: the run completes (the other table's change is told, not a failure: a
    column dropped is part of the ALTER, no rows written), and its rollback gives the
    dropped column's values back and keeps every row the application wrote."""
    ours = mariadb_pair[0]
    seed = (
        "CREATE TABLE {t} (id INT PRIMARY KEY, amount INT NOT NULL, note VARCHAR(10));"
        " INSERT INTO {t} SELECT seq, seq, CONCAT('n', seq) FROM seq_1_to_3000;"
    )
    _client(ours, seed.format(t="t") + seed.format(t="mirror") + "CREATE TABLE other (i INT);")
    change = "ALTER TABLE t DROP COLUMN note, ADD COLUMN extra INT DEFAULT 7"
    # No down section: the pre-images put the definition and the dropped values back (a
    # down section that adds the column again is trusted as written, and leaves it empty).
    root = _migrations(tmp_path, f"-- online: copy\n{change};\n")
    writes = (
        "UPDATE {t} SET amount = -7 WHERE id = 10; INSERT INTO {t} (id, amount) VALUES (5000, 9);"
        " DELETE FROM {t} WHERE id = 20;"
    )
    wrote = threading.Event()

    def application(event: Event) -> None:
        if event.name == "step.copy" and event.data["event"] == "progress" and not wrote.is_set():
            _client(ours, writes.format(t="t") + writes.format(t="mirror"))
            _client(ours, "INSERT INTO other VALUES (1), (2);")
            wrote.set()

    settings = Settings(db=ours, migrations=root, copy_chunk_time=0.002)
    with _session.session(settings) as opened:
        opened.orchestrator.observers = [application]
        result = opened.orchestrator.apply(opened.steps)
    assert wrote.is_set(), "the application wrote while the copy ran"
    assert result.run.outcome is Outcome.COMPLETED, result.run.failure
    told = [f for f in result.findings if f.code == "untouched-data-changed"]
    assert [f.severity.value for f in told] == ["warning", "warning"]  # mirror, other
    assert all("the application wrote while the run only altered tables" in f.message for f in told)
    done = _lupo("rollback", result.run.id, str(root), "--db", ours, "-y")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _dump(ours, "t").replace("`t`", "`x`") == _dump(ours, "mirror").replace(
        "`mirror`", "`x`"
    )


@pytest.mark.mariadb
@pytest.mark.parametrize("resume", [False, True])
def test_recover_after_kill_9_keeps_what_the_application_wrote_during_the_copy(
    mariadb_pair: tuple[str, str], tmp_path: Path, resume: bool
) -> None:
    """The application writes while the copy runs, then the run is killed: ``recover``
    (the run rolled back as frozen) and ``recover --resume`` both keep every row as the
    application left it, as in a mirror only the application wrote to."""
    ours = mariadb_pair[0]
    _client(
        ours,
        SEED.format(rows=30000) + "CREATE TABLE mirror LIKE t; INSERT INTO mirror SELECT * FROM t;",
    )
    root = _migrations(tmp_path, f"-- online: copy\n{CHANGE};\n")
    (tmp_path / "lupo.toml").write_text("copy_chunk_time = 0.005\n")
    process = _applying(ours, root, "killed")
    engine = sa.create_engine(ours)
    with engine.connect() as conn:
        _until(lambda: (_read_checkpoint(conn) or {}).get("phase") == "copying", 60)
    writes = (
        "UPDATE {t} SET amount = 7, note = 'app' WHERE id IN (10, 29000);"
        " INSERT INTO {t} (id, k, amount) VALUES (40000, 1, 9); DELETE FROM {t} WHERE id = 20;"
    )
    _client(ours, writes.format(t="t") + writes.format(t="mirror"))
    assert process.poll() is None, "the copy ended before it was killed"
    process.kill()
    process.wait()
    result, _events = _recover(ours, root, "killed", resume)
    expected = Outcome.COMPLETED if resume else Outcome.ROLLED_BACK
    assert result.run.outcome is expected  # type: ignore[attr-defined]
    rows = "SELECT id, k, amount, note, made FROM {t} ORDER BY id"
    with engine.connect() as conn:
        assert (
            conn.exec_driver_sql(rows.format(t="t")).all()
            == conn.exec_driver_sql(rows.format(t="mirror")).all()
        )
    engine.dispose()
    assert _left(ours) == []


@pytest.mark.mariadb
def test_rows_an_alter_ignore_removed_come_back_with_a_rollback(
    mariadb_pair: tuple[str, str], tmp_path: Path
) -> None:
    """``ALTER IGNORE TABLE ... ADD UNIQUE`` removes duplicates: the alteration's own
    change, which the seal keeps (rows the converted pre-image lacks too), so the rollback
    puts them back."""
    url = mariadb_pair[0]
    _client(
        url,
        "CREATE TABLE t (id INT PRIMARY KEY, k INT); INSERT INTO t VALUES (1, 5), (2, 5), (3, 6);",
    )
    before = _dump(url, "t")
    root = _migrations(tmp_path, "ALTER IGNORE TABLE t ADD UNIQUE KEY uk (k);\n")
    result, _events = _apply(url, root)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM t ORDER BY id").scalars().all() == [1, 3]
    engine.dispose()
    done = _lupo("rollback", result.run.id, str(root), "--db", url, "-y")  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stdout + done.stderr
    assert _dump(url, "t") == before
