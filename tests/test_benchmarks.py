"""The benchmark scripts still start: they import lupo_migrate's internals (the catalog
queries, the planner), which a refactoring can move without any other test noticing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert {p.name for p in BENCHMARKS} >= {
        "apply_many.py",
        "fingerprint.py",
        "planner.py",
        "online_alter.py",
    }


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_a_benchmark_imports_what_it_uses_and_shows_its_help(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.mariadb
@pytest.mark.slow
def test_the_online_alter_benchmark_runs_on_a_small_table() -> None:
    """It measures and checks every row on a table of 3,000 rows: the lupo_migrate line says
    the rows are intact (the targets' verdict depends on the machine: not asserted)."""
    script = next(p for p in BENCHMARKS if p.name == "online_alter.py")
    done = subprocess.run(
        [sys.executable, str(script), "--rows", "3000", "--only", "add index"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    ours = [line for line in lines if line.startswith("add index    lupo_migrate")]
    assert len(ours) == 1, done.stdout
    assert ours[0].endswith("  ok"), done.stdout
    assert any(line.startswith("targets (issue 21)") for line in lines)
