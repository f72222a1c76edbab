"""The layering as checks: the import-linter contracts of pyproject.toml hold, each one
catches a violation made on purpose, and no import circle is left inside the package.

docs/architecture.md says what lives in each layer and what it may import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
import pytest

import lupo_migrate

PACKAGE = Path(lupo_migrate.__file__).parent
PYPROJECT = PACKAGE.parent.parent / "pyproject.toml"

pytestmark = pytest.mark.skipif(
    not PYPROJECT.is_file(), reason="needs the source tree (pyproject.toml beside src/)"
)


def circles(package: str) -> list[list[str]]:
    """The import circles inside *package*: every import counts, those inside functions and
    under ``TYPE_CHECKING`` too (each says that one module needs the other)."""
    graph = grimp.build_graph(package, cache_dir=None)
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_node(module)
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    found = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    return sorted(found)


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package found first under *root*, with our contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
        "--config",
        str(PYPROJECT),
        "--no-cache",
    ]
    for contract in contracts:
        command += ["--contract", contract]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_no_import_circle_inside_the_package() -> None:
    assert circles("lupo_migrate") == []


def test_the_circle_check_finds_a_circle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: two modules importing each other (one only for annotations) are found."""
    pkg = tmp_path / "circled"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circled import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from circled import a\n"
    )
    (pkg / "c.py").write_text("from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert circles("circled") == [["circled.a", "circled.b"]]


def test_the_contracts_hold() -> None:
    done = lint_imports(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


#: (contract, module, the import added to it) for a violation of each contract.
VIOLATIONS = [
    ("layers", "core/model.py", "from lupo_migrate.run import wiring"),
    ("layers", "backends/sqlalchemy/storage.py", "from lupo_migrate.session import config"),
    ("pure-core", "core/planner.py", "import sqlalchemy"),
    ("layers", "sql/lint.py", "from lupo_migrate.files import headers"),
    ("pure-core", "core/decisions.py", "import os"),
    ("pure-core", "sql/split.py", "import sqlite3"),
    (
        "handlers-see-a-step-context",
        "handlers/module.py",
        "from lupo_migrate.run import orchestrator",
    ),
    ("faces-are-for-users", "run/step.py", "from lupo_migrate import errors as public_errors"),
]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package to break (without its caches)."""
    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(PACKAGE, root / "lupo_migrate", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize(("contract", "module", "line"), VIOLATIONS)
def test_each_contract_catches_a_violation(
    copy: Path, contract: str, module: str, line: str
) -> None:
    path = copy / "lupo_migrate" / module
    before = path.read_text(encoding="utf-8")
    path.write_text(f"{before}\n{line}  # a violation on purpose\n", encoding="utf-8")
    try:
        done = lint_imports(copy, contract)
    finally:
        path.write_text(before, encoding="utf-8")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
    assert module.removesuffix(".py").replace("/", ".") in done.stdout
