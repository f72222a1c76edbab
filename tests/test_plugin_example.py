"""The plugin example (``examples/plugin``) installs with pip and its file type shows in ``plan``.

Issue 6's acceptance, checked as a user would: a new virtual environment that sees this
interpreter's packages (lupo_migrate, pytest, SQLAlchemy; see ``venvs``: whether the suite runs
in a venv or not) gets the plugin from a copy of its directory with ``pip install
--no-build-isolation --no-deps --no-index`` (offline); its ``lupo-migrate`` then plans the
demo, applies and rolls it back on SQLite, MariaDB and PostgreSQL (the values' literals are the
part that differs by server), and the plugin's own tests pass there. Nothing is installed in
this environment, so no other test sees the ``seed`` file type, and nothing is built in the
working tree.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from venvs import make_venv, site_dirs
from venvs import run as _run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
GROUP = "lupo_migrate.handlers"


def _entry_points() -> set[str]:
    """The handler entry points this environment declares (``name = value``)."""
    return {f"{ep.name} = {ep.value}" for ep in metadata.entry_points(group=GROUP)}


@pytest.fixture(scope="module", name="python")
def _python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``python`` of a virtual environment with the plugin installed from a copy."""
    before = _entry_points()
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "plugin"
    shutil.copytree(
        PLUGIN,
        source,
        ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.db"
        ),
    )
    python = make_venv(tmp / "venv", see=site_dirs())
    done = _run(
        python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", source
    )
    assert done.returncode == 0, f"pip failed:\n{done.stdout}\n{done.stderr}"
    assert _entry_points() == before, "the plugin must not be installed in this environment"
    return python


def test_the_seed_type_appears_in_plan(python: Path) -> None:
    """``lupo-migrate plan examples/plugin/demo`` lists the seed step with its type."""
    done = _run(python, "-m", "lupo_migrate", "plan", "examples/plugin/demo")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "plan for examples/plugin/demo: 2 step(s) in 2 generation(s)"
    assert re.fullmatch(
        r"\s+1\s+1\s+create_countries\s+doctrine\s+[0-9a-f]{12}\s+V1__create_countries\.sql",
        lines[2],
    ), lines[2]
    assert re.fullmatch(
        r"\s+2\s+2\s+seed_countries\s+seed\s+[0-9a-f]{12}\s+V2__countries\.seed\.csv", lines[3]
    ), lines[3]


def test_the_dry_run_shows_the_inserts(python: Path) -> None:
    """``apply --dry-run`` lists the seed's INSERTs, values escaped (MySQL by default)."""
    done = _run(python, "-m", "lupo_migrate", "apply", "examples/plugin/demo", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "-- seed_countries (V2__countries.seed.csv)" in done.stdout
    assert (
        "INSERT INTO `countries` (`code`, `name`, `population`)"
        " VALUES ('ci', 'Côte d''Ivoire', 31170000);"
    ) in done.stdout


def _apply(python: Path, directory: str | Path, url: str) -> str:
    """Apply *directory* to *url* with the command line; returns the run id."""
    done = _run(python, "-m", "lupo_migrate", "apply", directory, "--db", url)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.fullmatch(
        r"run ([0-9a-f]{32}): completed, (\d+) of \2 step\(s\) applied\n", done.stdout
    )
    assert found, done.stdout
    return found[1]


def _select(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        names = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return sorted(n for n in names if not n.startswith(("migration_", "lupo_bk_")))


def test_the_demo_applies_and_rolls_back(python: Path, database_url: str) -> None:
    """``apply`` inserts the seed's rows; ``rollback`` deletes them and drops the table."""
    run_id = _apply(python, "examples/plugin/demo", database_url)
    assert _select(database_url, "SELECT code, name, population FROM countries ORDER BY code") == [
        ("aq", "Antarctica", None),
        ("ci", "Côte d'Ivoire", 31170000),
        ("fr", "France", 68170000),
        ("jp", "日本", 124500000),
        ("nl", "Netherlands, Kingdom of the", 17880000),
    ]
    done = _run(
        python,
        "-m",
        "lupo_migrate",
        "rollback",
        run_id,
        "examples/plugin/demo",
        "--db",
        database_url,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled_back, 2 step(s) of the run undone" in done.stdout
    assert _tables(database_url) == []


#: Values whose literals need care: quotes, backslashes (escapes on MySQL and on PostgreSQL
#: without standard_conforming_strings), SQL, driver placeholders, newlines, non-ASCII text.
ODD = ("it's", "C:\\x\\", "\\'", "'); DROP TABLE odd; --", "%s %(x)s :n ?", "a\nb", "🦊", "007")


def test_odd_values_round_trip(python: Path, database_url: str, tmp_path: Path) -> None:
    """Every value reads back as written, into the ``${core}`` schema of each backend."""
    root = tmp_path / "migrations"
    root.mkdir()
    (root / "V1__odd.sql").write_text(
        "CREATE TABLE odd (code VARCHAR(10) PRIMARY KEY, v TEXT, n BIGINT);\n", encoding="utf-8"
    )
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["code", "v", "n"])
    writer.writerows([f"k{i}", value, i - 3] for i, value in enumerate(ODD))
    (root / "V2__odd.seed.csv").write_text(
        "---\ndepends_on: [V1__odd]\ntable: ${core}.odd\n---\n" + rows.getvalue(),
        encoding="utf-8",
    )
    _apply(python, root, database_url)
    assert _select(database_url, "SELECT code, v, n FROM odd ORDER BY code") == [
        (f"k{i}", value, i - 3) for i, value in enumerate(ODD)
    ]


def test_the_plugins_own_tests_pass(python: Path) -> None:
    """``python -m pytest examples/plugin/tests`` in the environment the plugin is in."""
    done = _run(
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        PLUGIN / "tests",
        cwd=PLUGIN,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed in ", summary), summary
