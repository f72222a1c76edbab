"""Property: a run killed (-9) at any statement, then recovered, leaves the database exactly as
it was before the run, on SQLite, MariaDB and PostgreSQL (issue 18's acceptance).

Hypothesis draws a run (``test_rollback_property.runs``: DDL and DML, drops included) and a
moment: before a statement is sent, or after it ran and before its journal says so. The
process applying the run (``tests/_killer.py``) dies there; ``lupo-migrate recover`` must
give back every table's definition and rows as before the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from databases import fresh_database
from lupo_migrate.cli import main
from test_rollback_property import _reset, _state, runs, same_schema

EXAMPLES = 100 if os.environ.get("CI") else 10  # issue 18: at least 100 per engine in CI
KILLER = Path(__file__).with_name("_killer.py")
LOCK_HELD, REFUSED = 10, 13


def _recover(url: str, migrations: Path) -> tuple[int, str, str]:
    """``recover``, asked again while the server has not yet seen the dead run go."""
    for _ in range(50):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["recover", str(migrations), "--db", url])
        early = code == LOCK_HELD or (code == REFUSED and "no run of target" in err.getvalue())
        if not early:
            return code, out.getvalue(), err.getvalue()
        time.sleep(0.1)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_run_killed_anywhere_is_recovered_to_where_it_began(
    kind: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    statements = data.draw(
        runs(sqlite=kind == "sqlite", postgresql=kind == "postgresql"), label="run"
    )
    assume(statements)
    mode = data.draw(st.sampled_from(["before", "after"]), label="dies")
    at = data.draw(st.integers(0, len(statements) - 1), label="at statement")
    tmp = tmp_path_factory.mktemp("kill")
    with fresh_database(kind, tmp) as url:
        engine = sa.create_engine(url)
        try:
            _reset(engine, kind)
            before = _state(engine)
        finally:
            engine.dispose()
        migrations = tmp / "m"
        migrations.mkdir()
        for number, sql in enumerate(statements, start=1):
            (migrations / f"V{number}__s.sql").write_text(f"{sql};\n", encoding="utf-8")
        killed = subprocess.run(
            [sys.executable, str(KILLER), mode, str(at), str(migrations), "--db", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # 3: the run ended before that statement (an earlier one was refused: rolled back)
        assume(killed.returncode == -9)
        code, out, err = _recover(url, migrations)
        assert code == 0, (out, err)
        assert "recovered, rolled_back" in out, (out, err)
        engine = sa.create_engine(url)
        try:
            after = _state(engine)
        finally:
            engine.dispose()
        assert same_schema(before[0], after[0], kind) == [], err
        assert after[1] == before[1], err
