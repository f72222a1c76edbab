"""A DDL statement that gives up waiting for its lock is retried with a growing pause, and
never holds the application's queries longer than one lock wait (issue 21, PostgreSQL's
``lock_timeout`` with retry and backoff; the same on MySQL/MariaDB's ``lock_wait_timeout``).

The session holding the table is not one the run can see before it sends its DDL
(``long_transaction_wait`` off): the DDL is sent, queues, gives up after the short lock wait,
and the step is rolled back and tried again. Readers that arrive meanwhile queue behind the
waiting DDL, for one lock wait at most.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from databases import fresh_database
from lupo_migrate.core.errors import BlockedError, ConfigurationError
from lupo_migrate.core.model import Outcome
from lupo_migrate.core.retry import MOST_PAUSE, lock_retry_pause
from lupo_migrate.observe import Event
from lupo_migrate.session import session as _session
from lupo_migrate.session.config import Settings, load_settings

#: The short lock wait the runs here use (seconds; MySQL's is whole seconds).
WAIT = 1
FILES = {
    "V1__create.sql": "CREATE TABLE side (id INT PRIMARY KEY);\n",
    "V2__alter.sql": "CREATE TABLE other (id INT PRIMARY KEY);\n"
    "ALTER TABLE busy ADD COLUMN note VARCHAR(20);\n",
}


# ---------------------------------------------------------------- the pause, pure


def test_the_pause_doubles_from_the_base_up_to_the_most() -> None:
    assert [lock_retry_pause(n, 0.5, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert lock_retry_pause(40, 1.0, 0.0) == MOST_PAUSE
    assert lock_retry_pause(5000, 1.0, 0.0) == MOST_PAUSE  # no overflow however many tries


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0, 100, allow_nan=False),
    draw=st.floats(0, 1, exclude_max=True),
)
def test_the_pause_is_the_doubled_base_stretched_by_at_most_a_quarter(
    attempt: int, base: float, draw: float
) -> None:
    plain = min(base * 2.0 ** min(attempt - 1, 32), MOST_PAUSE)
    pause = lock_retry_pause(attempt, base, draw)
    assert plain <= pause <= plain * 1.25
    assert lock_retry_pause(attempt + 1, base, draw) >= pause  # never shorter than the last


@pytest.mark.parametrize(("attempt", "base", "draw"), [(0, 1.0, 0.0), (1, -1.0, 0.0), (1, 1, 1)])
def test_a_pause_of_nonsense_is_refused(attempt: int, base: float, draw: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        lock_retry_pause(attempt, base, draw)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LUPO_MIGRATE_LOCK_RETRIES", "-1", "lock_retries must be a whole number, 0 or more"),
        ("LUPO_MIGRATE_LOCK_RETRIES", "many", "lock_retries must be a whole number, 0 or more"),
        ("LUPO_MIGRATE_LOCK_RETRY_BACKOFF", "-2", "lock_retry_backoff must be a number of"),
    ],
)
def test_bad_retry_settings_are_refused_naming_the_setting(
    name: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=says):
        load_settings()


def test_retry_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (load_settings().lock_retries, load_settings().lock_retry_backoff) == (3, 1.0)
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_RETRIES", "7")
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_RETRY_BACKOFF", "0.25")
    assert (load_settings().lock_retries, load_settings().lock_retry_backoff) == (7, 0.25)


def test_a_blocked_error_survives_pickling_with_its_tries() -> None:
    import pickle

    error = BlockedError("V2", "V2.sql", sessions=("s1",), waited=1.0, timed_out=True, attempts=4)
    back = pickle.loads(pickle.dumps(error))
    assert (back.timed_out, back.attempts, str(back)) == (True, 4, str(error))
    assert "each of 4 tries" in str(back)


# ---------------------------------------------------------------- on the servers


@pytest.fixture(name="server_url", params=["mariadb", "postgresql"])
def _server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _prepare(url: str, tmp_path: Path) -> Path:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE busy (id INT PRIMARY KEY, v INT)")
        conn.exec_driver_sql("INSERT INTO busy VALUES (1, 10), (2, 20)")
    engine.dispose()
    migrations = tmp_path / "m"
    migrations.mkdir()
    for name, text in FILES.items():
        (migrations / name).write_text(text)
    return migrations


class Reader:
    """Reads *table* as an application would, recording how long each read took."""

    def __init__(self, url: str, table: str = "busy") -> None:
        self.table = table
        self.engine = sa.create_engine(url, pool_size=2)
        self.stop = threading.Event()
        self.took: list[float] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT COUNT(*) FROM busy").scalar()
            except Exception as error:
                self.errors.append(error)
            self.took.append(time.monotonic() - began)
            time.sleep(0.02)

    def __enter__(self) -> Reader:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.engine.dispose()


@contextlib.contextmanager
def _held(url: str, sql: str = "SELECT * FROM busy") -> Iterator[Callable[[float], None]]:
    """Another session whose open transaction ran *sql* (a read of ``busy``: it holds the
    table); yields ``release_after(seconds)``, which ends that transaction that much later.
    Ended at the latest on leaving."""
    engine = sa.create_engine(url)
    holder = engine.connect()
    holder.exec_driver_sql(sql)
    timers: list[threading.Timer] = []

    def release_after(seconds: float) -> None:
        timers.append(threading.Timer(seconds, holder.rollback))
        timers[-1].start()

    try:
        yield release_after
    finally:
        for timer in timers:
            timer.cancel()
        holder.rollback()
        holder.close()
        engine.dispose()


def _apply(
    url: str, migrations: Path, *, retries: int, release_after: float | None
) -> tuple[Any, list[Event], float]:
    """Apply *migrations* while another session holds ``busy`` in an open transaction,
    released after *release_after* seconds (None: held to the end); the result, the run's
    events and the seconds taken."""
    settings = Settings(
        db=url,
        migrations=migrations,
        lock_wait_timeout=WAIT,
        lock_retries=retries,
        lock_retry_backoff=0.3,
    )
    events: list[Event] = []
    with _held(url) as release, _session.session(settings) as opened:
        orch = opened.orchestrator
        orch.long_transaction_wait = None  # the run cannot see it before it sends its DDL
        orch.observers = [events.append]
        if release_after is not None:
            release(release_after)
        began = time.monotonic()
        result = orch.apply(opened.steps)
        took = time.monotonic() - began
    return result, events, took


def _outcome(result: Any) -> Outcome | None:
    return None if result.run is None else result.run.outcome


def _columns(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_ddl_behind_a_lock_gives_up_retries_and_never_holds_readers_longer_than_the_wait(
    server_url: str, tmp_path: Path
) -> None:
    migrations = _prepare(server_url, tmp_path)
    with Reader(server_url) as reader:
        result, events, took = _apply(server_url, migrations, retries=5, release_after=2.5)
    retries = [e for e in events if e.name == "step.lock_retry"]
    longest = max(reader.took)
    print(
        f"{server_url.split(':')[0]}: {len(retries)} retries, {took:.2f} s, longest read"
        f" {longest:.3f} s over {len(reader.took)} reads"
    )
    assert _outcome(result) is Outcome.COMPLETED, result
    assert result.applied == ("V1__create", "V2__alter")
    assert retries, "the ALTER never waited for the holder"
    first = retries[0].data
    assert (first["step"], first["index"], first["attempt"], first["retries"]) == (
        "V2__alter",
        1,
        1,
        5,
    )
    assert first["waited"] == WAIT
    assert first["pause"] >= 0.3
    assert [e.data["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert "note" in _columns(server_url, "busy")
    assert {"side", "other", "busy"} <= _tables(server_url)
    assert not reader.errors, reader.errors
    assert longest < WAIT + 0.5, longest  # one lock wait, never the whole wait for the holder
    assert took >= 2.0  # it did wait for the holder to go


@pytest.mark.slow
def test_when_the_retries_run_out_the_run_rolls_back_saying_how_often_it_tried(
    server_url: str, tmp_path: Path
) -> None:
    migrations = _prepare(server_url, tmp_path)
    with Reader(server_url) as reader:
        result, events, _took = _apply(server_url, migrations, retries=2, release_after=None)
    assert _outcome(result) is Outcome.ROLLED_BACK, result
    assert result.run is not None
    failure = result.run.failure
    assert failure is not None
    assert "each of 3 tries" in failure.message, failure
    assert "it did not run" in failure.message
    assert [e.data["attempt"] for e in events if e.name == "step.lock_retry"] == [1, 2]
    assert "side" not in _tables(server_url)
    assert "other" not in _tables(server_url)
    assert "note" not in _columns(server_url, "busy")
    assert max(reader.took) < WAIT + 0.5


@pytest.mark.slow
def test_no_retries_fails_at_the_first_wait(server_url: str, tmp_path: Path) -> None:
    migrations = _prepare(server_url, tmp_path)
    result, events, took = _apply(server_url, migrations, retries=0, release_after=None)
    assert result.run is not None
    assert result.run.outcome is Outcome.ROLLED_BACK
    assert not [e for e in events if e.name == "step.lock_retry"]
    assert took < WAIT + 5


# ---------------------------------------------------------------- CREATE INDEX CONCURRENTLY

CONCURRENT = {
    "V1__create.sql": "CREATE TABLE side (id INT PRIMARY KEY);\n",
    "V2__index.sql": "CREATE INDEX CONCURRENTLY busy_v ON busy (v);\n",
    "V3__alter.sql": "ALTER TABLE side ADD COLUMN note VARCHAR(20);\n",
}


@pytest.fixture(name="postgresql_url")
def _postgresql_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def _indexes(url: str) -> list[tuple[str, bool]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                (str(name), bool(valid))
                for name, valid in conn.exec_driver_sql(
                    "SELECT c.relname, i.indisvalid FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE i.indrelid = 'busy'::regclass ORDER BY 1"
                )
            ]
    finally:
        engine.dispose()


#: A write in an open transaction: CREATE INDEX CONCURRENTLY waits for it to end (its lock
#: wait runs out), and so does dropping the invalid index.
WRITES = "UPDATE busy SET v = v WHERE id = 1"


@pytest.mark.slow
def test_a_concurrent_index_beside_transactional_steps_retries_without_an_invalid_index(
    postgresql_url: str, tmp_path: Path
) -> None:
    migrations = _prepare(postgresql_url, tmp_path)
    for old in migrations.iterdir():
        old.unlink()
    for name, text in CONCURRENT.items():
        (migrations / name).write_text(text)
    events: list[Event] = []
    settings = Settings(
        db=postgresql_url,
        migrations=migrations,
        lock_wait_timeout=WAIT,
        lock_retries=5,
        lock_retry_backoff=0.3,
    )
    with (
        _held(postgresql_url, WRITES) as release_after,
        Reader(postgresql_url) as reader,
        _session.session(settings) as opened,
    ):
        orch = opened.orchestrator
        orch.long_transaction_wait = None
        orch.observers = [events.append]
        release_after(2.5)
        result = orch.apply(opened.steps)
    assert _outcome(result) is Outcome.COMPLETED, result
    assert result.applied == ("V1__create", "V2__index", "V3__alter")
    assert [e.data["step"] for e in events if e.name == "step.lock_retry"][:1] == ["V2__index"]
    assert _indexes(postgresql_url) == [("busy_pkey", True), ("busy_v", True)]
    assert "note" in _columns(postgresql_url, "side")
    assert not reader.errors
    assert max(reader.took) < WAIT + 0.5


@pytest.mark.slow
def test_a_unique_concurrent_index_that_fails_leaves_no_invalid_index(
    postgresql_url: str, tmp_path: Path
) -> None:
    migrations = _prepare(postgresql_url, tmp_path)
    (migrations / "V2__alter.sql").write_text(
        "CREATE UNIQUE INDEX CONCURRENTLY busy_v ON busy (v);\n"
    )
    engine = sa.create_engine(postgresql_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO busy VALUES (3, 10)")  # v 10 twice
    engine.dispose()
    with _session.session(Settings(db=postgresql_url, migrations=migrations)) as opened:
        result = opened.orchestrator.apply(opened.steps)
    assert _outcome(result) is Outcome.ROLLED_BACK, result
    assert result.run is not None
    assert result.run.failure is not None
    assert "busy_v" in result.run.failure.message
    assert _indexes(postgresql_url) == [("busy_pkey", True)]
    assert "side" not in _tables(postgresql_url)


@pytest.mark.slow
def test_a_concurrent_index_still_held_when_the_retries_run_out_blocks_saying_what_is_left(
    postgresql_url: str, tmp_path: Path
) -> None:
    migrations = _prepare(postgresql_url, tmp_path)
    (migrations / "V2__alter.sql").write_text("CREATE INDEX CONCURRENTLY busy_v ON busy (v);\n")
    settings = Settings(
        db=postgresql_url,
        migrations=migrations,
        lock_wait_timeout=WAIT,
        lock_retries=1,
        lock_retry_backoff=0.1,
    )
    with _held(postgresql_url, WRITES), _session.session(settings) as opened:
        opened.orchestrator.long_transaction_wait = None
        result = opened.orchestrator.apply(opened.steps)
    assert result.run is not None
    assert result.run.blocked, result
    assert result.run.failure is not None
    assert "gave up waiting for a lock" in result.run.failure.message
    assert "`lupo-migrate resolve`" in result.run.failure.message
    left = [f for f in result.findings if f.code == "invalid-index-left"]
    assert left
    assert "busy_v" in left[0].message
    assert left[0].hint == "once that session ends: DROP INDEX CONCURRENTLY IF EXISTS busy_v"
    assert _indexes(postgresql_url) == [("busy_pkey", True), ("busy_v", False)]


# ---------------------------------------------------------------- what the operator sees


@pytest.mark.parametrize("live", [False, True])
def test_progress_shows_each_retry_whether_live_or_not(live: bool) -> None:
    import io
    from datetime import UTC, datetime

    from lupo_migrate.observe.progress import Progress

    stream = io.StringIO()
    Progress(stream, live=live)(
        Event(
            name="step.lock_retry",
            run_id="r" * 32,
            target="default",
            at=datetime(2026, 12, 7, tzinfo=UTC),
            data={
                "phase": "migrating",
                "step": "V2__alter",
                "index": 1,
                "attempt": 2,
                "retries": 3,
                "waited": 1.0,
                "pause": 2.25,
                "sessions": ["session 7 (app@10.0.0.2, transaction open 9 s)"],
            },
        )
    )
    assert (
        "V2__alter: statement 2 gave up waiting 1 s for a lock (session 7 (app@10.0.0.2,"
        " transaction open 9 s)); retry 2 of 3 in 2.2 s\n"
    ) in stream.getvalue()


@pytest.mark.slow
def test_the_command_line_says_it_retries_and_then_applies(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """From the command line, where the run cannot tell who holds a table (a MySQL user
    without the PROCESS privilege, say: the DDL is sent at once), each retry is a line on
    stderr, and the run applies once the holder has gone."""
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget
    from lupo_migrate.cli import main

    monkeypatch.setattr(SqlAlchemyTarget, "holders", lambda *_args, **_kw: None)
    migrations = _prepare(server_url, tmp_path)
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_WAIT", str(WAIT))
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_RETRY_BACKOFF", "0.3")
    monkeypatch.setenv("LUPO_MIGRATE_PROGRESS", "plain")
    with _held(server_url) as release_after:
        release_after(2.5)
        code = main(["apply", str(migrations), "--db", server_url])
    out, err = capsys.readouterr()
    with capsys.disabled():  # what the operator sees, shown with -s
        print(err)
    assert code == 0, (out, err)
    assert "V2__alter: statement 2 gave up waiting 1 s for a lock (" in err, err
    assert "; retry 1 of 3 in " in err
    assert "note" in _columns(server_url, "busy")


@pytest.mark.slow
def test_a_stop_asked_during_the_pause_ends_the_run_without_another_try(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """request_stop (the first Ctrl-C or SIGTERM) while the run pauses before a retry: no
    further try, the run rolls back at once."""
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget

    sent: list[str] = []
    execute = SqlAlchemyTarget.execute

    def counting(self: SqlAlchemyTarget, connection: Any, statement: str) -> None:
        sent.append(statement)
        execute(self, connection, statement)

    monkeypatch.setattr(SqlAlchemyTarget, "execute", counting)
    migrations = _prepare(server_url, tmp_path)
    settings = Settings(
        db=server_url,
        migrations=migrations,
        lock_wait_timeout=WAIT,
        lock_retries=5,
        lock_retry_backoff=30.0,
    )
    events: list[Event] = []
    with _held(server_url), _session.session(settings) as opened:
        orch = opened.orchestrator
        orch.long_transaction_wait = None

        def stop_in_the_pause(event: Event) -> None:
            events.append(event)
            if event.name == "step.lock_retry":
                threading.Timer(0.3, orch.request_stop, ("operator's stop",)).start()

        orch.observers = [stop_in_the_pause]
        began = time.monotonic()
        result = orch.apply(opened.steps)
        took = time.monotonic() - began
    assert _outcome(result) is Outcome.ROLLED_BACK, result
    assert [e.data["attempt"] for e in events if e.name == "step.lock_retry"] == [1]
    assert took < WAIT + 8, took  # not the 30 s pause
    assert len([s for s in sent if s.startswith("ALTER TABLE busy")]) == 1, sent  # one try
    assert "side" not in _tables(server_url)


# ---------------------------------------------------------------- waiting with nothing held

TWO_TABLES = {
    "V1__two.sql": "ALTER TABLE side ADD COLUMN x INT;\nALTER TABLE busy ADD COLUMN y INT;\n",
}


def _two_tables(url: str, tmp_path: Path) -> Path:
    migrations = _prepare(url, tmp_path)
    for old in migrations.iterdir():
        old.unlink()
    for name, text in TWO_TABLES.items():
        (migrations / name).write_text(text)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE side (id INT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO side VALUES (1)")
    engine.dispose()
    return migrations


@pytest.mark.slow
@pytest.mark.parametrize("release_after", [2.5, None])
def test_a_step_that_meets_a_held_table_waits_with_nothing_held(
    postgresql_url: str, tmp_path: Path, release_after: float | None
) -> None:
    """PostgreSQL: the step's first ALTER locks ``side``; its second finds ``busy`` held by
    an open transaction. Waiting there, unsent, would keep ``side`` locked for as long: the
    step is rolled back and waits with nothing held, so readers of ``side`` never wait."""
    migrations = _two_tables(postgresql_url, tmp_path)
    settings = Settings(db=postgresql_url, migrations=migrations, long_transaction_wait=4.0)
    events: list[Event] = []
    with (
        _held(postgresql_url) as release,
        Reader(postgresql_url, "side") as reader,
        _session.session(settings) as opened,
    ):
        opened.orchestrator.observers = [events.append]
        if release_after is not None:
            release(release_after)
        began = time.monotonic()
        result = opened.orchestrator.apply(opened.steps)
        took = time.monotonic() - began
    waiting = [e for e in events if e.name == "step.waiting"]
    # Once, or again when a look at the holders lands while the holder's ROLLBACK is in
    # flight (seen once in CI: "transaction open 0 s"): every wait is for busy, before the
    # step's second statement, with nothing held.
    assert waiting, events
    assert all(w.data["tables"] == ["busy"] for w in waiting), waiting
    assert all(w.data["index"] == 1 for w in waiting), waiting
    assert not reader.errors
    assert max(reader.took) < 0.5, max(reader.took)  # side was never held while waiting
    if release_after is not None:
        assert _outcome(result) is Outcome.COMPLETED, result
        assert "x" in _columns(postgresql_url, "side")
        assert "y" in _columns(postgresql_url, "busy")
        assert took >= release_after - 0.5
    else:
        assert _outcome(result) is Outcome.ROLLED_BACK, result
        assert result.run is not None
        assert result.run.failure is not None
        assert "transient" in result.run.failure.message
        assert "holding busy" in result.run.failure.message, result.run.failure.message
        assert "x" not in _columns(postgresql_url, "side")
        assert 4.0 <= took < 12, took
