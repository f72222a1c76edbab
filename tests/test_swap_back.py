"""The swap-back of an online copy (issue 21, ``copy_swap_back``): after the cut-over the old
table is kept current by triggers, and rolling the step back within its window swaps it back
at once, with every row written since the cut-over and nothing copied again. Where the old
table could not take a change, or the table was altered since, the swap-back is refused and
the rollback undoes the step as written, as it would without one."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import apply_with_events as _apply
from databases import leftovers
from databases import mariadb_client as _client
from lupo_migrate.core.model import Outcome
from lupo_migrate.sql import online_copy as oc
from test_recover import _wait_gone

SEED = (
    "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, k INT, amount INT NOT NULL,"
    " note VARCHAR(10), gone INT NOT NULL DEFAULT 4, UNIQUE KEY uk (k, note));"
    " INSERT INTO t (k, amount, note, gone) SELECT seq, seq * 3, IF(seq % 5 = 0, NULL, 'x'),"
    " seq % 9 FROM seq_1_to_{rows};"
    " CREATE TABLE {mirror} LIKE t; INSERT INTO {mirror} SELECT * FROM t;"
)
#: A type change, a column added, one dropped: the old table differs in each way.
CHANGE = "ALTER TABLE t MODIFY amount BIGINT NOT NULL, ADD COLUMN extra INT DEFAULT 7, DROP gone"
#: The way back without a swap-back (the rollback puts the dropped column's values back).
DOWN = (
    "ALTER TABLE t MODIFY amount INT NOT NULL, DROP COLUMN extra,"
    " ADD COLUMN gone INT NOT NULL DEFAULT 4 AFTER note"
)
_COLUMNS = "id, k, amount, note"


# ---------------------------------------------------------------- the core, pure


def test_the_triggers_write_the_old_table_and_mark_what_it_cannot_take() -> None:
    names = oc.names_for("lupo_bk_", "0123456789abcdef", "t")
    ins, upd, dele = oc.back_trigger_sql(
        names, "`t`", "`bk`.`old`", "`bk`.`rev`", ["id", "a"], ["id"], "sh'op"
    )
    mark = "UPDATE `bk`.`rev` SET diverged = diverged + 1 WHERE id = 1"
    for sql in (ins, upd, dele):
        # The mark is the handler of any failure; a record gone (1146) is no failure.
        assert "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN" in sql
        assert "DECLARE CONTINUE HANDLER FOR 1146 BEGIN END;" in sql
        assert mark in sql
        # Only in its own database: not in a copy a dump of it was restored into.
        assert "IF DATABASE() = 'sh''op' THEN" in sql
    assert "INSERT INTO `bk`.`old` (`id`, `a`) VALUES (NEW.`id`, NEW.`a`)" in ins
    # An update sets the new definition's columns only (an old-only column keeps its value)
    # of the row by its old key (the key may move).
    assert "UPDATE `bk`.`old` SET `id` = NEW.`id`, `a` = NEW.`a` WHERE `id` <=> OLD.`id`" in upd
    assert "DELETE FROM `bk`.`old` WHERE `id` <=> OLD.`id`" in dele
    assert "REPLACE" not in ins + upd + dele  # a REPLACE would drop a row clashing elsewhere


def test_applying_the_log_keeps_old_only_columns_and_fails_on_another_unique_clash() -> None:
    sql = oc.back_write_sql("`o`", ["id", "a"], ["id"])
    assert sql.startswith("INSERT INTO `o` (`id`, `a`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE")
    same = "`o`.`id` <=> VALUES(`id`)"
    assert f"`o`.`a` = IF({same}, VALUES(`a`), `o`.`a`)" in sql
    # The key last: a clash fails (a subquery of two rows; NULL would become 0 silently).
    assert sql.endswith(f"`o`.`id` = IF({same}, `o`.`id`, (SELECT 1 UNION ALL SELECT 2))")


def test_a_swap_back_is_refused_for_each_reason_it_could_lose_something() -> None:
    ok = {"diverged": 0, "triggers_there": True, "same_definition": True, "old_there": True}
    assert oc.swap_refusal(**ok) is None
    assert "could not be written" in str(oc.swap_refusal(**{**ok, "diverged": 3}))
    assert oc.swap_refusal(**{**ok, "old_there": False}) == "the old table is gone"
    assert "triggers" in str(oc.swap_refusal(**{**ok, "triggers_there": False}))
    assert "altered again" in str(oc.swap_refusal(**{**ok, "same_definition": False}))
    text = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB AUTO_INCREMENT=7"
    assert oc.definition(text) == oc.definition(text.replace("=7", "=9001"))


# ---------------------------------------------------------------- on MariaDB


def _migrations(tmp_path: Path) -> Path:
    root = tmp_path / "m"
    root.mkdir(exist_ok=True)
    (root / "V1__change.sql").write_text(f"-- online: copy\n{CHANGE};\n-- lupo:down\n{DOWN};\n")
    return root


def _lupo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lupo_migrate", *args], capture_output=True, text=True
    )


def _one(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def _definition(url: str, table: str) -> str:
    text = str(_one(url, f"SHOW CREATE TABLE {table}")[0][1])
    return oc.definition(text).replace(f"`{table.split('.')[-1]}`", "`T`", 1)


@pytest.fixture
def mirror(mariadb_url: str) -> Iterator[str]:
    """``mirror``, in a database of its own (a table of the target's that the run does not
    touch, written during the run, would fail its post-validation): the application's
    writes, without the migration."""
    name = f"{sa.make_url(mariadb_url).database}_m"
    _client(mariadb_url, f"CREATE DATABASE `{name}`;")
    try:
        yield f"`{name}`.mirror"
    finally:
        _client(mariadb_url, f"DROP DATABASE IF EXISTS `{name}`;")


def _differ(url: str, mirror: str, columns: str = _COLUMNS) -> list[tuple[object, ...]]:
    """Rows of t and mirror that are not in both."""
    return _one(
        url,
        f"SELECT {columns}, COUNT(*) FROM (SELECT {columns} FROM t UNION ALL SELECT {columns}"
        f" FROM {mirror}) u GROUP BY {columns} HAVING COUNT(*) <> 2",
    )


@pytest.fixture
def writing(
    mariadb_url: str, mirror: str
) -> Iterator[tuple[threading.Event, list[BaseException], list[int]]]:
    """A writer on ``t`` and ``mirror`` alike (inserts, updates, the key moved, deletes, each
    in a transaction), from the moment the test starts it until the end."""
    stop, errors, done = threading.Event(), [], [0]
    start = threading.Event()

    def write() -> None:
        start.wait()
        engine = sa.create_engine(mariadb_url)
        rng = random.Random(11)
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    key = rng.randrange(1, 6500)
                    kind = rng.randrange(4)
                    for table in ("t", mirror):
                        if kind == 0:
                            conn.exec_driver_sql(
                                f"INSERT INTO {table} (id, k, amount, note) VALUES"
                                f" ({300000 + done[0]}, {100000 + done[0]}, {key}, 'new')"
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
                    time.sleep(0.001)
        except BaseException as exc:  # the test fails on it
            errors.append(exc)
        finally:
            engine.dispose()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield start, errors, done
    finally:
        start.set()
        stop.set()
        thread.join()


@pytest.mark.mariadb
def test_a_rollback_swaps_the_old_table_back_with_every_row_written_since(
    mariadb_url: str,
    tmp_path: Path,
    mirror: str,
    writing: tuple[threading.Event, list[BaseException], list[int]],
) -> None:
    """A writer runs through the copy, the cut-over, the window and the rollback: the
    rollback is the swap (no copy, the down section not run), the table has its old
    definition, every row the writer wrote (mirrored), and the dropped column's values of
    the rows it did not write; nothing of the copy is left on the table."""
    _client(mariadb_url, SEED.format(rows=6000, mirror=mirror))
    before = _definition(mariadb_url, "t")
    gone = dict(_one(mariadb_url, "SELECT id, gone FROM t"))
    root = _migrations(tmp_path)
    start, errors, done = writing
    start.set()
    time.sleep(0.3)
    result, _events = _apply(mariadb_url, root, copy_chunk_time=0.02, copy_swap_back=True)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    triggers = leftovers(mariadb_url, "lupo%")
    assert len(triggers) == 3, triggers
    assert all("_b" in t for t in triggers), triggers
    time.sleep(0.5)  # the window: the writer goes on, on the new definition
    at_rollback = done[0]
    rolled = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "online copy" not in rolled.stderr  # swapped, not copied again
    time.sleep(0.3)
    writing_after = done[0]
    assert errors == []
    assert writing_after > at_rollback > 100
    assert _definition(mariadb_url, "t") == before
    assert _definition(mariadb_url, mirror) == before
    assert _differ(mariadb_url, mirror) == []
    # The dropped column came back with its values; rows inserted since have its default.
    kept = dict(_one(mariadb_url, "SELECT id, gone FROM t"))
    assert all(kept[i] == gone[i] for i in kept if i in gone)
    assert leftovers(mariadb_url, "lupo%") == []
    assert "t swapped back to its old table, kept current since the cut-over" in rolled.stderr


@pytest.mark.mariadb
def test_a_write_the_old_table_cannot_take_succeeds_and_spends_the_swap_back(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """A value only the new definition holds: the application's write succeeds all the
    same, the swap-back is marked spent, and the rollback undoes the step as written (here
    after that row was deleted again, so that the way back changes no row written since),
    keeping every row the application wrote."""
    _client(mariadb_url, SEED.format(rows=3000, mirror=mirror))
    root = _migrations(tmp_path)
    result, _events = _apply(mariadb_url, root, copy_swap_back=True)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    _client(mariadb_url, "INSERT INTO t (id, k, amount) VALUES (90001, 1, 5000000000);")
    assert _one(mariadb_url, "SELECT amount FROM t WHERE id = 90001") == [(5000000000,)]
    refused = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert refused.returncode != 0  # that row cannot go back to INT: refused before anything
    assert "Nothing was touched" in refused.stderr, refused.stderr
    _client(mariadb_url, "DELETE FROM t WHERE id = 90001; UPDATE t SET note = 'w' WHERE id = 5;")
    _client(mariadb_url, f"UPDATE {mirror} SET note = 'w' WHERE id = 5;")
    rolled = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert (
        "t could not be swapped back (1 change(s) since the cut-over could not be written"
        " into the old table); undone as written instead"
    ) in rolled.stderr, rolled.stderr
    assert _differ(mariadb_url, mirror) == []
    assert leftovers(mariadb_url, "lupo%") == []


@pytest.mark.mariadb
def test_a_table_altered_again_since_is_not_swapped_back(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """Another change of the table after the cut-over (here by hand): the rollback is
    refused before anything (the swap would lose it), the swap-back stays armed, and once
    the change is undone the rollback swaps."""
    _client(mariadb_url, SEED.format(rows=3000, mirror=mirror))
    root = _migrations(tmp_path)
    result, _events = _apply(mariadb_url, root, copy_swap_back=True)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    _client(mariadb_url, "ALTER TABLE t ADD INDEX ix_amount (amount);")
    armed = leftovers(mariadb_url, "lupo%")
    refused = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert refused.returncode != 0
    assert "table t: index ix_amount: added" in refused.stderr, refused.stderr
    assert "ix_amount" in _definition(mariadb_url, "t")  # the hand's change was not lost
    assert leftovers(mariadb_url, "lupo%") == armed
    _client(mariadb_url, "ALTER TABLE t DROP INDEX ix_amount;")
    rolled = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "t swapped back to its old table" in rolled.stderr
    assert _differ(mariadb_url, mirror) == []
    assert _definition(mariadb_url, "t") == _definition(mariadb_url, mirror)


@pytest.mark.mariadb
def test_purging_the_backups_ends_the_swap_back_and_writes_go_on(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """When the window closes, ``purge`` drops the triggers before the old table they write
    into: the application's writes go on, on the new definition alone."""
    _client(mariadb_url, SEED.format(rows=3000, mirror=mirror))
    root = _migrations(tmp_path)
    (tmp_path / "lupo.toml").write_text("keep_rollback_hours = 0\n")
    result, _events = _apply(mariadb_url, root, copy_swap_back=True, keep_rollback_hours=0.0)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    assert len(leftovers(mariadb_url, "lupo%")) == 3
    time.sleep(1.1)  # the window (0 hours) closes after the second it began in
    purged = subprocess.run(
        [sys.executable, "-m", "lupo_migrate", "purge", str(root), "--db", mariadb_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert leftovers(mariadb_url, "lupo%") == []
    _client(mariadb_url, "INSERT INTO t (id, k, amount) VALUES (90003, 3, 5000000000);")
    assert _one(mariadb_url, "SELECT amount FROM t WHERE id = 90003") == [(5000000000,)]


@pytest.mark.mariadb
@pytest.mark.slow
def test_kill_9_at_random_moments_of_a_swap_back_is_repaired_by_recover(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """``rollback`` killed (-9) at a random moment, before, during or after its swap, again
    and again: ``recover`` (or the rollback run again, when the kill came before the
    rollback began) ends with the old table back, every row written since, nothing left."""
    seed = int(time.time())
    rng = random.Random(seed)
    root = _migrations(tmp_path)
    for attempt in range(6 if os.environ.get("CI") else 3):
        where = f"seed {seed}, attempt {attempt}"
        _client(
            mariadb_url,
            f"DROP TABLE IF EXISTS t, {mirror}; " + SEED.format(rows=3000, mirror=mirror),
        )
        before = _definition(mariadb_url, "t")
        target = f"k{attempt}"
        result, _events = _apply(mariadb_url, root, copy_swap_back=True, target=target)
        assert result.run.outcome is Outcome.COMPLETED, where  # type: ignore[attr-defined]
        written = "INSERT INTO {t} (id, k, amount, note) VALUES ({n}, {n}, 70, 'late');"
        _client(mariadb_url, written.format(t="t", n=90000 + attempt))
        _client(mariadb_url, written.format(t=mirror, n=90000 + attempt))
        args = ["--db", mariadb_url, "--target", target]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lupo_migrate",
                "rollback",
                result.run.id,
                str(root),
                *args,
                "-y",
            ],  # type: ignore[attr-defined]
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        orch = f"{sa.make_url(mariadb_url).database}_lupo_orchestration"
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            rolling = _one(
                mariadb_url,
                f"SELECT COUNT(*) FROM `{orch}`.migration_batches"
                f" WHERE target = '{target}' AND phase = 'rolling_back'",
            )
            if rolling != [(0,)]:
                break
            time.sleep(0.01)
        # Every other time a reader holds the table: the swap's RENAME waits for it (and the
        # record's row is held meanwhile) when the kill comes.
        holder = sa.create_engine(mariadb_url).connect() if attempt % 2 else None
        if holder is not None:
            holder.exec_driver_sql("SELECT COUNT(*) FROM t WHERE id < 3").all()
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()  # a no-op when it had ended
        process.wait(timeout=10)
        if holder is not None:
            holder.rollback()
            holder.close()
            holder.engine.dispose()
        _wait_gone(mariadb_url, f"{sa.make_url(mariadb_url).database}_lupo_orchestration")
        recovered = _lupo("recover", str(root), *args)
        assert recovered.returncode in (0, 13), (where, recovered.stdout, recovered.stderr)
        status = _lupo("status", str(root), *args)
        if "0 applied, 1 pending" not in status.stdout:  # killed before the rollback began
            again = _lupo("rollback", result.run.id, str(root), *args, "-y")  # type: ignore[attr-defined]
            assert again.returncode == 0, (where, again.stdout, again.stderr)
        assert _definition(mariadb_url, "t") == before, where
        assert _differ(mariadb_url, mirror) == [], where
        assert leftovers(mariadb_url, "lupo%") == [], where


@pytest.mark.mariadb
def test_a_swap_whose_process_died_after_its_rename_is_tidied_when_asked_again(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """The moment no kill lands on by chance (between the swap's RENAME and its tidying),
    made by hand: asked again, the swap-back finds it made, drops the triggers and sets the
    new table among the backups, and says it is done."""
    from lupo_migrate.session import session as _session
    from lupo_migrate.session.config import Settings

    _client(mariadb_url, SEED.format(rows=2000, mirror=mirror))
    before = _definition(mariadb_url, "t")
    root = _migrations(tmp_path)
    result, _events = _apply(mariadb_url, root, copy_swap_back=True)
    run_id = result.run.id  # type: ignore[attr-defined]
    names = oc.names_for("lupo_bk_", run_id, "t")
    orch = f"{sa.make_url(mariadb_url).database}_lupo_orchestration"
    _client(mariadb_url, f"RENAME TABLE t TO `{names.swapped}`, `{orch}`.`{names.old}` TO t;")
    with _session.session(Settings(db=mariadb_url, migrations=root)) as opened:
        assert opened.orchestrator.target.swap_back(run_id, CHANGE) is None  # type: ignore[attr-defined]
        assert opened.orchestrator.target.swap_back(run_id, CHANGE) is None  # type: ignore[attr-defined]
    assert leftovers(mariadb_url, "lupo%") == []
    assert _definition(mariadb_url, "t") == before
    moved = _one(
        mariadb_url,
        f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{orch}'"
        f" AND table_name = '{names.swapped}'",
    )
    assert moved == [(1,)]


@pytest.mark.mariadb
def test_a_dump_restored_into_another_database_does_not_write_into_the_old_table(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """``mysqldump`` carries the triggers; restored into another database of the same server
    (a staging copy), they must not write into this database's old table, nor fail the
    copy's writes."""
    _client(mariadb_url, SEED.format(rows=2000, mirror=mirror))
    root = _migrations(tmp_path)
    result, _events = _apply(mariadb_url, root, copy_swap_back=True)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    database = sa.make_url(mariadb_url).database
    dumped = subprocess.run(
        ["mysqldump", "-uroot", "-h127.0.0.1", str(database), "t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "_bin_t" in dumped  # the triggers travel with the dump
    copy = f"{database}_copy"
    _client(mariadb_url, f"CREATE DATABASE `{copy}`;")
    subprocess.run(["mariadb", "-uroot", "-h127.0.0.1", copy], input=dumped, text=True, check=True)
    _client(
        mariadb_url,
        f"INSERT INTO `{copy}`.t (id, k, amount) VALUES (95000, 1, 5000000000);"
        f" UPDATE `{copy}`.t SET note = 'copy' WHERE id < 50;"
        f" DELETE FROM `{copy}`.t WHERE id = 60;",
    )
    rolled = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "t swapped back to its old table" in rolled.stderr
    assert _differ(mariadb_url, mirror) == []  # nothing the copy wrote came back here


@pytest.mark.mariadb
def test_a_spent_swap_back_leaves_no_trigger_when_the_pre_images_undo_the_step(
    mariadb_url: str, tmp_path: Path, mirror: str
) -> None:
    """No down section: the step is undone by its derived inverse, itself an online copy
    (the file's header); the spent swap-back's triggers are dropped first, so that the
    undo's pre-images do not take them for the table's own and bring them back."""
    _client(mariadb_url, SEED.format(rows=3000, mirror=mirror))
    root = tmp_path / "m"
    root.mkdir()
    (root / "V1__change.sql").write_text(
        "-- online: copy\nALTER TABLE t MODIFY amount BIGINT NOT NULL;\n"
    )
    result, _events = _apply(mariadb_url, root, copy_swap_back=True)
    assert result.run.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    _client(mariadb_url, "INSERT INTO t (id, k, amount) VALUES (90001, 1, 5000000000);")
    _client(mariadb_url, "DELETE FROM t WHERE id = 90001;")
    rolled = _lupo("rollback", result.run.id, str(root), "--db", mariadb_url, "-y")  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "could not be swapped back (1 change(s)" in rolled.stderr, rolled.stderr
    assert leftovers(mariadb_url, "lupo%") == []
    assert _definition(mariadb_url, "t") == _definition(mariadb_url, mirror)
