"""An open transaction on a table the plan alters: the run waits no longer than its bound,
fails as transient naming the session, and application queries on that table are never
stalled longer than the bound."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._blockers import install_metadata_lock_info
from lupo_migrate.cli import main
from test_recover import _prepare
from test_rollback_verified import _run, _same, _state

pytestmark = [pytest.mark.mariadb]

BOUND = 2.0
FILES = {
    "V1__first.sql": "CREATE TABLE first (id INT PRIMARY KEY);\n",
    "V2__alter.sql": "ALTER TABLE old ADD COLUMN x INT;\n",
}


@pytest.fixture(name="lock_info", params=["exact", "suspects"])
def _lock_info(request: pytest.FixtureRequest, mariadb_url: str) -> Iterator[str]:
    """exact: the metadata_lock_info plugin tells who holds which table (the run waits
    before it sends the ALTER); suspects: it does not (the ALTER's lock wait is the bound)."""
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as conn:
        had = bool(
            conn.exec_driver_sql(
                "SELECT COUNT(*) FROM information_schema.plugins"
                " WHERE plugin_name = 'METADATA_LOCK_INFO' AND plugin_status = 'ACTIVE'"
            ).scalar()
        )
        if request.param == "exact" and not install_metadata_lock_info(conn):
            message = "the metadata_lock_info plugin cannot be installed here"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        if request.param == "suspects" and had:
            conn.exec_driver_sql("UNINSTALL SONAME 'metadata_lock_info'")
    try:
        yield str(request.param)
    finally:
        with engine.connect() as conn:
            active = bool(
                conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM information_schema.plugins"
                    " WHERE plugin_name = 'METADATA_LOCK_INFO' AND plugin_status = 'ACTIVE'"
                ).scalar()
            )
            if active and not had:
                conn.exec_driver_sql("UNINSTALL SONAME 'metadata_lock_info'")
            elif had and not active:
                install_metadata_lock_info(conn)
        engine.dispose()


def test_an_open_transaction_on_an_altered_table_fails_the_run_as_transient_in_time(
    mariadb_url: str,
    tmp_path: Path,
    lock_info: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before, args, orch = _prepare(mariadb_url, tmp_path, FILES)
    monkeypatch.setenv("LUPO_MIGRATE_LONG_TRANSACTION_WAIT", str(BOUND))
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_WAIT", str(int(BOUND)))
    # One wait, no retry: the bound of a single try (test_lock_retries.py retries).
    monkeypatch.setenv("LUPO_MIGRATE_LOCK_RETRIES", "0")
    engine = sa.create_engine(mariadb_url, pool_size=4)
    holder = engine.connect()
    stop = threading.Event()
    stalls: list[float] = []

    def application() -> None:  # reads the table all along, as an application would
        while not stop.is_set():
            began = time.monotonic()
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT COUNT(*) FROM old").scalar()
            stalls.append(time.monotonic() - began)
            time.sleep(0.05)

    reader = threading.Thread(target=application)
    try:
        holder.exec_driver_sql("SELECT * FROM old").all()  # its transaction holds old open
        session = holder.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        reader.start()
        began = time.monotonic()
        code = main(["apply", *args])
        took = time.monotonic() - began
        stop.set()
        reader.join()
        out, err = capsys.readouterr()
        with capsys.disabled():  # the figures, shown with -s
            longest = max(stalls, default=0.0)
            print(f"{lock_info}: failed after {took:.2f} s, longest read {longest:.3f} s")
        assert code == 11, (out, err)
        assert "transient" in err, err
        assert f"session {session} (" in err, err
        assert "it did not run" in err
        assert took < BOUND + 8, took  # the bound, plus starting and rolling back
        assert stalls
        assert max(stalls) < BOUND + 0.5, (lock_info, max(stalls))
        if lock_info == "exact":
            assert took >= BOUND  # it waited for the session, the ALTER unsent
            assert max(stalls) < 1.0, max(stalls)  # nothing queued behind an ALTER
            assert "holding old" in err
        holder.rollback()
        _same(_state(mariadb_url), before)
        assert main(["apply", *args]) == 0, capsys.readouterr()  # once it ended: applies
    finally:
        stop.set()
        if reader.is_alive():
            reader.join()
        holder.close()
        engine.dispose()
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")
