"""A statement's connection drops after it was sent: the outcome is looked up in the live
schema (never the statement sent again), and the run rolls back from what the storage and the
schema say, on fresh connections."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from lupo_migrate.cli import _settings, main
from lupo_migrate.core.model import Outcome
from lupo_migrate.session import session
from test_recover import _apply_until, _prepare
from test_rollback_verified import _run, _same, _state

pytestmark = [pytest.mark.mariadb]

FILES = {
    "V1__first.sql": "CREATE TABLE first (id INT PRIMARY KEY);\nINSERT INTO first VALUES (1);\n",
    "V2__change.sql": "UPDATE old SET v = v + 100 WHERE id > 0;\n"
    "ALTER TABLE old ADD COLUMN added INT DEFAULT 5;\n",
    "V3__slow.sql": "CREATE TABLE slow AS SELECT SLEEP(3) AS x;\n",
    "V4__never.sql": "CREATE TABLE never (id INT);\n",
}


class _Dropping:
    """The target, whose connection drops right after the statement containing *text* ran
    (the reply is lost): the server did the work, the client cannot know."""

    def __init__(self, inner: Any, text: str) -> None:
        self._inner, self._text, self.sent = inner, text, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def execute(self, connection: Any, statement: str) -> None:
        self.sent.append(statement)
        self._inner.execute(connection, statement)
        if self._text in statement:
            connection.invalidate()  # the socket goes: what was pending rolls back
            raise pymysql.err.OperationalError(2013, "Lost connection to server during query")


def test_a_ddl_whose_reply_was_lost_is_found_run_and_undone(
    mariadb_url: str, tmp_path: Path
) -> None:
    before, args, orch = _prepare(mariadb_url, tmp_path, {k: FILES[k] for k in list(FILES)[:2]})
    settings = _settings(
        directory=Path(args[0]),
        db=mariadb_url,
        target_name=None,
        manifest=None,
        config=None,
        renames=(),
        orchestration_schema=orch,
    )
    try:
        with session.session(settings) as opened:
            dropping = _Dropping(opened.orchestrator.target, "ADD COLUMN added")
            opened.orchestrator.target = dropping
            result = opened.apply()
            run = result.run
            assert run is not None
            assert run.outcome is Outcome.ROLLED_BACK
            codes = [f.code for f in opened.orchestrator.storage.findings(run.id)]
            messages = " | ".join(f.message for f in opened.orchestrator.storage.findings(run.id))
        assert "connection-lost" in codes, messages
        assert "the connection dropped during statement 2" in messages
        # Looked up, found run, never sent again; undone (from the down or the pre-image).
        assert "statement 2 of V2__change was in flight" in messages
        assert "the live schema shows it ran" in messages
        assert sum("ADD COLUMN added" in s for s in dropping.sent) == 1
        _same(_state(mariadb_url), before)
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")


def test_a_statement_whose_connection_is_killed_is_found_not_run_and_the_run_rolls_back(
    mariadb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KILL CONNECTION of the step's connection in the middle of a CREATE TABLE ... SELECT:
    the table is not there, so nothing of it is undone; the steps before are; exit 11."""
    before, args, orch = _prepare(mariadb_url, tmp_path, FILES)
    try:
        process = _apply_until(mariadb_url, args, "SLEEP(3)")
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as conn:
            ident = conn.exec_driver_sql(
                "SELECT id FROM information_schema.processlist"
                " WHERE info LIKE %s AND info NOT LIKE %s",
                ("%SLEEP(3)%", "%processlist%"),
            ).scalar_one()
            started = time.monotonic()
            conn.exec_driver_sql(f"KILL CONNECTION {int(ident)}")
        engine.dispose()
        code = process.wait(timeout=60)
        out, err = process.communicate()
        assert time.monotonic() - started < 30
        assert code == 11, (out, err)
        assert "connection dropped during statement 1" in err, err
        assert "statement 1 of V3__slow was in flight" in err
        assert "the live schema shows it did not run" in err
        _same(_state(mariadb_url), before)
        assert main(["history", *args]) == 0
        assert "rolled_back  class A  0/4 step(s)" in capsys.readouterr().out
        assert main(["apply", *args, "--upto", "V2__change"]) == 0  # the target works again
    finally:
        _run(mariadb_url, f"DROP DATABASE IF EXISTS `{orch}`")
