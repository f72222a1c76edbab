"""The table budget: off unless configured, then checked before the run and after every step
that creates a table (issue 19, point 10). On 1e1146b it was 77 by default, so any database
of more tables was refused, and it was checked only before the run, so one run could create
any number of tables past it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from lupo_migrate import errors
from lupo_migrate.cli import main


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        return {n for n in sa.inspect(engine).get_table_names() if not n.startswith("migration_")}
    finally:
        engine.dispose()


def _existing(url: str, count: int) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        for n in range(count):
            conn.exec_driver_sql(f"CREATE TABLE app_{n} (id INTEGER)")
    engine.dispose()


def _files(tmp_path: Path, count: int, first: int = 1) -> Path:
    migrations = tmp_path / "m"
    migrations.mkdir(exist_ok=True)
    for n in range(first, first + count):
        (migrations / f"V{n}__t{n}.sql").write_text(f"CREATE TABLE t{n} (id INTEGER);\n")
    return migrations


def test_a_database_of_many_tables_needs_no_budget_setting(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _existing(database_url, 80)
    migrations = _files(tmp_path, 1)
    assert main(["apply", str(migrations), "--db", database_url]) == 0, capsys.readouterr()


def test_over_the_budget_already_a_run_that_creates_no_table_runs_with_a_warning(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _existing(database_url, 12)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__i.sql").write_text("INSERT INTO app_0 (id) VALUES (1);\n")
    code = main(["apply", str(migrations), "--db", database_url, "--table-budget", "10"])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "12 tables, over the table budget of 10 by 2 (this run creates no table)" in err


def test_a_run_is_stopped_at_the_step_that_goes_over_the_budget(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _files(tmp_path, 15)
    (tmp_path / "lupo.toml").write_text("table_budget = 10\n")
    code = main(
        ["apply", str(migrations), "--db", database_url, "--config", str(tmp_path / "lupo.toml")]
    )
    out, err = capsys.readouterr()
    assert code == errors.StepError.exit_code, (out, err)
    assert "0 of 15 step(s) applied" in out  # rolled back
    assert "after V11__t11: the core schema has 11 tables, over the table budget of 10" in err
    assert _tables(database_url) == set()
    code = main(["apply", str(migrations), "--db", database_url, "--table-budget", "15"])
    assert code == 0, capsys.readouterr()
    assert len(_tables(database_url)) == 15


def test_the_lupopedia_example_sets_its_budget() -> None:
    from lupo_migrate.session.config import load_settings

    example = Path(__file__).resolve().parents[1] / "examples" / "lupopedia.toml"
    settings = load_settings(config=example, environ={})
    assert settings.table_budget == 77
    assert settings.forbid == ("foreign-key", "trigger")


def test_the_catalog_is_counted_once_while_the_tables_stay_within_the_budget(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve steps each creating a table, budget 13 with one table there: counted once (at
    the first step that creates one), then bounded by what the steps create; a step whose
    table would go over is counted again, and stopped on the real count."""
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget

    counted: list[int] = []
    real = SqlAlchemyTarget.core_table_count

    def spy(self: SqlAlchemyTarget, connection: object = None) -> int:
        counted.append(real(self, connection))
        return counted[-1]

    monkeypatch.setattr(SqlAlchemyTarget, "core_table_count", spy)
    _existing(database_url, 1)
    migrations = _files(tmp_path, 12)
    code = main(["apply", str(migrations), "--db", database_url, "--table-budget", "13"])
    assert code == 0, capsys.readouterr()
    assert counted == [1, 2]  # before the run; after V1 (app_0 and t1); not asked again
    _files(tmp_path, 2, first=13)
    counted.clear()
    code = main(["apply", str(migrations), "--db", database_url, "--table-budget", "14"])
    out, err = capsys.readouterr()
    assert code == errors.StepError.exit_code, (out, err)
    assert "after V14__t14: the core schema has 15 tables, over the table budget of 14" in err
    assert counted[-2:] == [14, 15]  # after V13 (a new run: asked), after V14 (bound 15)
