"""The examples run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EMBED = Path(__file__).resolve().parents[1] / "examples" / "embed.py"


def _embed(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EMBED), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _check(lines: list[str]) -> None:
    assert lines[0] == "before: []"
    assert lines[1] == (
        "applied: create_authors, create_posts, seed_authors, add_post_status (completed)"
    )
    assert lines[2] == "after: ['authors', 'posts']"
    assert lines[3].startswith("can roll back: run available until ")
    assert lines[4] == "rollback: rolled_back"
    assert lines[-1] == "after rollback: []"


def test_the_embedding_example_on_sqlite() -> None:
    """Its own SQLite file: apply, the decision listed, rollback, the schema as before.

    The orchestration tables live in a file beside it: the steps' down sections (not the
    pre-images) must have undone the run, so the comparison afterwards had nothing to put
    back."""
    lines = _embed()
    _check(lines)
    assert lines[5].endswith("pre-images; restored 0, dropped 0")


@pytest.mark.mariadb
def test_the_embedding_example_on_mariadb(mariadb_url: str) -> None:
    lines = _embed(mariadb_url)
    _check(lines)
    assert "info: rollback compared 2 touched object(s) with their pre-images" in lines[5]
