"""A plan of all four file types with dependencies across them (issue 6's acceptance): it
applies, validates and rolls back fully on MariaDB and SQLite; scope D rolls back only the
documentation step."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import CORPUS, needs_corpus
from databases import fresh_database, table_names
from lupo_migrate import plan_directory
from test_agent_handler import UPSERT, prepare, rows
from test_apply import cli
from test_documentation_handler import SET_VERSION
from test_rollback_verified import _same, _state

pytestmark = needs_corpus

ACCOUNTS = """CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(50));
INSERT INTO accounts VALUES (1, 'first');
"""
INVOICES = """MIGRATION = {"depends_on": ["V1__accounts"]}


def up(ctx):
    ctx.execute("CREATE TABLE invoices (id INT PRIMARY KEY, account INT)")
    ctx.execute("INSERT INTO invoices VALUES (1, 1)")


def down(ctx):
    ctx.execute("DROP TABLE invoices")
"""


def layout(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    migrations = root / "migrations"
    (migrations / "billing").mkdir(parents=True)
    shutil.copytree(CORPUS / "docs", root / "docs")
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    (migrations / "billing" / "0001_init.py").write_text(INVOICES)
    (migrations / "V2__agents.yaml").write_text(
        UPSERT.replace(
            "  id: agents_love\n", "  id: agents_love\n  depends_on: billing.0001_init\n"
        )
    )
    (migrations / "V3__docs.md").write_text(
        SET_VERSION.replace("id: docs_4_1_0\n", "id: docs_4_1_0\ndepends_on: agents_love\n")
    )
    return root


def docs(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "docs").iterdir()}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_doctrine_module_agent_and_documentation_steps_apply_and_roll_back(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = layout(tmp_path)
    plan = plan_directory(root / "migrations").plan
    assert [(s.id, s.file_type) for s in plan.steps] == [
        ("V1__accounts", "doctrine"),
        ("billing.0001_init", "module"),
        ("agents_love", "agent"),
        ("docs_4_1_0", "documentation"),
    ]
    original_docs = docs(root)
    with fresh_database(kind, tmp_path) as url:
        prepare(url)  # lupo_agents with its rows, before any run
        start = _state(url)
        agents_before = rows(url)
        args = [str(root / "migrations"), "--db", url]
        if kind == "mariadb":  # lupo_migrate's own tables apart, so the state compares cleanly
            args += ["--orchestration-schema", f"{sa.make_url(url).database}_orch"]
        code, out, err = cli(capsys, "apply", *args)
        assert code == 0, (out, err)
        assert "completed, 4 of 4 step(s) applied" in out
        assert {"accounts", "invoices"} <= table_names(url)
        assert rows(url) != agents_before
        assert docs(root) != original_docs
        code, out, err = cli(capsys, "decisions", *args)
        assert " D    pending" in out, out  # the documents' stamps went back (4.1.6 -> 4.1.0)
        run_id = out.split()[0]

        code, out, err = cli(capsys, "rollback", run_id, "--scope", "D", *args)
        assert code == 0, (out, err)
        assert "1 step(s) of the run undone" in out
        assert docs(root) == original_docs
        assert {"accounts", "invoices"} <= table_names(url)  # the rest stays
        assert rows(url) != agents_before

        code, out, err = cli(capsys, "rollback", run_id, *args)
        assert code == 0, (out, err)
        assert "3 step(s) of the run undone" in out
        _same(_state(url), start)
        assert rows(url) == agents_before
        assert docs(root) == original_docs
        if kind == "mariadb":
            engine = sa.create_engine(url.rpartition("/")[0])
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{sa.make_url(url).database}_orch`")
            engine.dispose()
