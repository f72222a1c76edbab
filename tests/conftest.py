"""Shared test configuration: hypothesis profiles picked by LUPO_HYPOTHESIS_PROFILE (or CI)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from databases import database_params, fresh_database

#: The user's corpus, checked out beside this repository (``../shared``). Tests that read it
#: skip when it is missing on a developer machine; in CI they run (and fail if it is missing).
CORPUS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "lupopedia"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir() and not os.environ.get("CI"), reason="shared corpus not checked out"
)

# ci: at least 500 examples for every property test (issue 2's acceptance);
# dev: quick feedback while editing; fast: smoke runs.
settings.register_profile(
    "ci",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("fast", max_examples=20, deadline=None)
settings.load_profile(
    os.environ.get("LUPO_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(name="database_url", params=database_params())
def _database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A new empty database on SQLite, MariaDB and PostgreSQL in turn (its SQLAlchemy URL)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(name="mariadb_url")
def _mariadb_url(tmp_path: pathlib.Path) -> Iterator[str]:
    """A new empty MariaDB database (for what only MySQL/MariaDB does)."""
    with fresh_database("mariadb", tmp_path) as url:
        yield url


@pytest.fixture(name="mariadb_pair")
def _mariadb_pair(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """Two new empty MariaDB databases: lupo_migrate's, and the client's to compare with."""
    with fresh_database("mariadb", tmp_path) as a, fresh_database("mariadb", tmp_path) as b:
        yield a, b


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands print no progress lines on stderr unless a test asks (``--progress``): the
    tests read stderr for findings and errors."""
    monkeypatch.setenv("LUPO_MIGRATE_PROGRESS", "off")
