"""Property: rolling back a completed run undoes the run's own changes and keeps every
application write made since (issue 18's acceptance).

Hypothesis draws a run (DDL and DML, drops included: ``test_rollback_property.runs``) and
application writes made after it (inserts, updates, deletes by key on the run's tables, in
columns the run neither added nor renamed). Then ``rollback --dry-run`` must list exactly the
rows both changed (the conflicts), and ``rollback --conflicts keep`` (or ``undo``) must leave:
the schema as before the run; every row the application wrote since as the application left
it (``keep``) or, where the run had changed it too, as before the run (``undo``); every other
row as before the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from databases import fresh_database
from lupo_migrate.cli import main
from test_rollback_property import _reset, _state, runs, same_schema

EXAMPLES = 100 if os.environ.get("CI") else 20
REFUSED = 13
Rows = dict[Any, dict[str, Any]]


def _read(engine: sa.Engine, table: str) -> Rows | None:
    """*table*'s rows by id (None: no such table)."""
    with engine.connect() as conn:
        if table not in sa.inspect(conn).get_table_names():
            return None
        result = conn.exec_driver_sql(f"SELECT * FROM {table}")
        names = list(result.keys())
        return {row[0]: dict(zip(names, row, strict=True)) for row in result}


def _same(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and str(a) == str(b))


def _renames(statements: list[str]) -> dict[str, dict[str, str]]:
    """Per table of the base (p, q), its columns' names after the run -> before it."""
    out: dict[str, dict[str, str]] = {"p": {}, "q": {}}
    for sql in statements:
        found = re.fullmatch(r"ALTER TABLE (\w+) RENAME COLUMN (\w+) TO (\w+)", sql)
        if found and found.group(1) in out:
            table, old, new = found.groups()
            out[table][new] = out[table].pop(old, old)
    return out


@st.composite
def app_writes(
    draw: st.DrawFn, after: dict[str, Rows | None], writable: dict[str, list[str]]
) -> list[str]:
    """Writes by key to the tables still there under their names, in *writable* columns."""
    out: list[str] = []
    referred = {1, 3}  # the base's q rows refer to these p rows (q may be renamed)
    for table, rows in sorted(after.items()):
        if rows is None or not writable[table]:
            continue
        keys = sorted(rows)
        for n in range(draw(st.integers(0, 2))):
            out.append(f"INSERT INTO {table} (id) VALUES ({50_000 + n})")
        for _ in range(draw(st.integers(0, 3))):
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            column = draw(st.sampled_from(writable[table]))
            out.append(f"UPDATE {table} SET {column} = {draw(st.integers(1, 99))} WHERE id = {key}")
        free = [k for k in keys if table != "p" or k not in referred]
        if free and draw(st.booleans()):
            out.append(f"DELETE FROM {table} WHERE id = {draw(st.sampled_from(free))}")
    return out


def _changed(a: Rows, b: Rows, pairs: list[tuple[str, str]]) -> set[Any]:
    """The keys whose rows differ between *a* and *b* (present in one only, or a value of
    the (column in a, column in b) *pairs* differs)."""
    return {
        k
        for k in a.keys() | b.keys()
        if (k in a) != (k in b) or any(not _same(a[k][x], b[k][y]) for x, y in pairs)
    }


def _check(url: str, statements: list[str], data: st.DataObject, tmp: Path, policy: str) -> None:
    engine = sa.create_engine(url)
    try:
        kind = "mariadb" if url.startswith("mysql") else url.partition(":")[0].split("+")[0]
        _reset(engine, kind)
        schema_before = _state(engine)[0]
        before = {t: _read(engine, t) for t in ("p", "q")}
        migrations = tmp / "m"
        migrations.mkdir()
        for number, sql in enumerate(statements, start=1):
            (migrations / f"V{number}__s.sql").write_text(f"{sql};\n", encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["apply", str(migrations), "--db", url])
        assume(code == 0)  # a drawn statement the engine refuses: another example
        run = re.findall(r"run (\w+): completed", out.getvalue())[0]
        after = {t: _read(engine, t) for t in ("p", "q")}
        renames = _renames(statements)
        writable = {}
        for table in ("p", "q"):
            rows, was = after[table], before[table]
            assert was is not None
            columns = next(iter(rows.values())).keys() if rows else []
            writable[table] = [
                c
                for c in columns
                if c not in ("id", "p_id")  # q.p_id refers to p: kept as it is
                and c not in renames[table]
                and c in next(iter(was.values()))
            ]
        writes = data.draw(app_writes(after, writable), label="application writes")
        with engine.begin() as conn:
            for sql in writes:
                conn.exec_driver_sql(sql)
        now = {t: _read(engine, t) for t in ("p", "q")}

        expected_conflicts = 0
        expected: dict[str, Rows] = {}
        for table in ("p", "q"):
            was = before[table]
            assert was is not None
            a, n = after[table], now[table]
            if a is None or n is None:  # renamed or dropped by the run: nobody wrote it
                expected[table] = was
                continue
            back = renames[table]
            original = next(iter(was.values())).keys()
            columns = next(iter(a.values())).keys() if a else []
            pairs = [(back.get(c, c), c) for c in columns if back.get(c, c) in original]
            by_run = _changed(was, a, pairs)
            by_app = _changed(a, n, [(c, c) for c in columns])
            expected_conflicts += len(by_run & by_app)
            rows: Rows = {}
            for key in was.keys() | n.keys():
                if key in by_app and not (policy == "undo" and key in by_run):
                    if key in n:  # the application's row, its columns named as before
                        rows[key] = {
                            back.get(c, c): v
                            for c, v in n[key].items()
                            if back.get(c, c) in original
                        }
                elif key in was:
                    rows[key] = dict(was[key])
            expected[table] = rows

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["rollback", run, str(migrations), "--db", url, "--dry-run"])
        assert code == 0, err.getvalue()
        shown = re.search(r"conflicts \((\d+)\)", out.getvalue())
        assert (int(shown.group(1)) if shown else 0) == expected_conflicts, out.getvalue()

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["rollback", run, str(migrations), "--db", url, "--conflicts", policy])
        if code == REFUSED and "cannot be put back without changing them" in err.getvalue():
            # rows written since would not fit a column's old definition (NULL where it was
            # NOT NULL): refused, and nothing was touched
            assert {t: _read(engine, t) for t in ("p", "q")} == now
            return
        assert code == 0, (out.getvalue(), err.getvalue())
        assert same_schema(schema_before, _state(engine)[0], kind) == []
        for table in ("p", "q"):
            final = _read(engine, table)
            assert final is not None
            assert sorted(final) == sorted(expected[table]), table
            for key, row in expected[table].items():
                for column, value in row.items():
                    assert _same(final[key][column], value), (table, key, column)
    finally:
        engine.dispose()


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
)
@SETTINGS
@given(data=st.data())
def test_a_completed_run_rolled_back_keeps_what_was_written_since(
    kind: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    policy = data.draw(st.sampled_from(["keep", "undo"]), label="policy")
    statements = data.draw(
        runs(sqlite=kind == "sqlite", postgresql=kind == "postgresql"), label="run"
    )
    assume(statements)
    tmp = tmp_path_factory.mktemp("since")
    with fresh_database(kind, tmp) as url:
        _check(url, statements, data, tmp, policy)
