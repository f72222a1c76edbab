"""A plain ``pip install`` of the wheel applies on SQLite, MariaDB and PostgreSQL (issue 19, 1).

As a user installs it: the project is built into a wheel, and the wheel installed with pip into
a new virtual environment that holds nothing else but what the wheel says it needs, found
among the packages installed here and everything those need in turn (tests may not download,
see ``venvs``). A dependency the wheel forgot to declare is then missing, as on a user's
machine: on 1e1146b SQLAlchemy was an extra, and ``lupo-migrate apply`` ended in
``ModuleNotFoundError``. The installed ``lupo-migrate`` then applies the quickstart with the
URLs a user types.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from databases import fresh_database
from venvs import closure, make_venv, requirements_of_wheel, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"


@pytest.fixture(scope="module", name="wheel")
def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built into a wheel, from a copy (nothing is built in the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    done = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp / "dist",
        source,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp / "dist").glob("lupo_migrate-*.whl")
    return wheel


@pytest.fixture(scope="module", name="lupo")
def _lupo(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``lupo-migrate`` of a new virtual environment where the wheel was installed with
    ``pip install`` and no extra."""
    tmp = tmp_path_factory.mktemp("venv")
    needed = closure(requirements_of_wheel(wheel), tmp / "needed")
    python = make_venv(tmp / "venv", see=[needed])
    done = run(python, "-m", "pip", "install", "--no-index", wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = run(python, "-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return python.parent / "lupo-migrate"


def test_the_wheel_needs_the_drivers_of_the_three_engines_and_no_extra(wheel: Path) -> None:
    plain = {
        r.name.lower() for r in requirements_of_wheel(wheel) if r.marker is None
    }  # no `extra == ...`
    assert {"sqlalchemy", "pymysql", "psycopg2-binary"} <= plain
    extras = {
        str(r.marker): r.name.lower()
        for r in requirements_of_wheel(wheel)
        if r.marker is not None and "extra" in str(r.marker)
    }
    assert extras.get('extra == "postgresql"') == "psycopg2-binary", extras  # the README's


def test_the_environment_has_only_what_the_wheel_needs(lupo: Path) -> None:
    """The check above is worth something only if the environment lacks what is not declared
    (hypothesis, a test-only package, is installed here)."""
    python = lupo.parent / "python"
    done = run(python, "-c", "import hypothesis")
    assert done.returncode == 1, done.stderr
    assert "ModuleNotFoundError" in done.stderr, done.stderr


USER_SCHEMES = {
    "sqlite": ("sqlite",),
    "mariadb": ("mysql", "mysql+pymysql", "mariadb"),
    "postgresql": ("postgresql", "postgres"),
}


def _cases() -> Iterator[object]:
    for kind, schemes in USER_SCHEMES.items():
        marks = [] if kind == "sqlite" else [getattr(pytest.mark, kind)]
        for scheme in schemes:
            yield pytest.param(kind, scheme, id=f"{scheme}", marks=marks)


@pytest.mark.parametrize(("kind", "scheme"), list(_cases()))
def test_a_plain_install_applies_with_the_url_a_user_types(
    lupo: Path, kind: str, scheme: str, tmp_path: Path
) -> None:
    with fresh_database(kind, tmp_path) as url:
        typed = re.sub(r"^[\w+]+://", f"{scheme}://", url)
        done = run(lupo, "apply", QUICKSTART, "--db", typed, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.fullmatch(r"run [0-9a-f]{32}: completed, 4 of 4 step\(s\) applied\n", done.stdout)
        again = run(lupo, "apply", QUICKSTART, "--db", typed, cwd=tmp_path)
        assert again.stdout == "nothing to do: all 4 migration(s) already applied\n", again.stderr
        status = run(lupo, "status", QUICKSTART, "--db", typed, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "completed" in status.stdout, status.stdout


def test_requirement_markers_are_read_as_pip_reads_them() -> None:
    """The helper's own check: a requirement of an extra is not needed by a plain install."""
    from venvs import _wanted

    assert _wanted(Requirement("a"), ())
    assert not _wanted(Requirement('b; extra == "postgresql"'), ())
    assert _wanted(Requirement('b; extra == "postgresql"'), ("postgresql",))
