"""The module handler: Python migration modules, namespaced ids, up/down through the journal."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import table_names
from lupo_migrate import plan_directory
from lupo_migrate.cli import _settings
from lupo_migrate.session import session
from test_apply import cli

ACCOUNTS = "CREATE TABLE accounts (id INT PRIMARY KEY);\n"

INVOICES = '''"""Invoices, once accounts exist."""

MIGRATION = {"depends_on": ["V1__accounts"], "description": "invoices"}


def up(ctx):
    ctx.log.info("creating invoices on %s", ctx.dialect)
    ctx.execute("CREATE TABLE invoices (id INT PRIMARY KEY, account INT)")
    ctx.execute("INSERT INTO invoices VALUES (1, 1)")


def down(ctx):
    ctx.execute("DROP TABLE invoices")
'''

SHIPPING = """MIGRATION = {"module": "shipping", "depends_on": ["billing.0001_init"]}


def up(ctx):
    ctx.execute("CREATE TABLE parcels (id INT PRIMARY KEY)")


def down(ctx):
    ctx.execute("DROP TABLE parcels")
"""


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_module_ids_are_namespaced_and_depend_across_modules_and_types(tmp_path: Path) -> None:
    """Two modules may both have a 0001_init; dependencies name steps of any module or type."""
    root = _tree(
        tmp_path / "m",
        {
            "V1__accounts.sql": ACCOUNTS,
            "billing/0001_init.py": INVOICES,
            "shipping/0001_init.py": SHIPPING,
        },
    )
    report = plan_directory(root)
    assert not [f for f in report.findings if f.severity.fails], report.findings
    steps = {s.id: s for s in report.plan.steps}
    assert list(steps) == ["V1__accounts", "billing.0001_init", "shipping.0001_init"]
    assert (steps["billing.0001_init"].file_type, steps["billing.0001_init"].module) == (
        "module",
        "billing",
    )
    assert steps["shipping.0001_init"].depends_on == ("billing.0001_init",)


def test_a_module_applies_through_the_journal_and_rolls_back_by_its_down(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tree(
        tmp_path / "m",
        {"V1__accounts.sql": ACCOUNTS, "billing/0001_init.py": INVOICES},
    )
    args = [str(root), "--db", database_url]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    assert "2 of 2 step(s) applied" in out
    assert {"accounts", "invoices"} <= table_names(database_url)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM invoices").scalar() == 1
    finally:
        engine.dispose()
    settings = _settings(
        directory=root, db=database_url, target_name=None, manifest=None, config=None, renames=()
    )
    with session.session(settings) as opened:
        run = opened.history()[-1]
        journal = [
            e.statement
            for e in opened.orchestrator.storage.journal(run.id)
            if e.step_id == "billing.0001_init"
        ]
    assert journal == [
        "CREATE TABLE invoices (id INT PRIMARY KEY, account INT)",
        "INSERT INTO invoices VALUES (1, 1)",
    ]
    code, out, err = cli(capsys, "history", *args)
    run_id = out.split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code == 0, (out, err)
    assert "invoices" not in table_names(database_url)
    assert "accounts" not in table_names(database_url)


def test_a_module_without_down_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_down = INVOICES.split("\n\ndef down")[0] + "\n"
    root = _tree(tmp_path / "m", {"V1__accounts.sql": ACCOUNTS, "billing/0001_init.py": no_down})
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root), "--db", url)
    assert code != 0, (out, err)
    assert "billing/0001_init.py" in err
    assert "defines no down(ctx)" in err
    assert "accounts" not in table_names(url)  # nothing ran


def test_an_up_that_raises_rolls_the_run_back_naming_the_file_and_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = INVOICES.replace(
        'ctx.execute("INSERT INTO invoices VALUES (1, 1)")', 'raise RuntimeError("no currency")'
    )
    root = _tree(tmp_path / "m", {"V1__accounts.sql": ACCOUNTS, "billing/0001_init.py": failing})
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root), "--db", url)
    assert code == 11, (out, err)
    assert (
        "billing/0001_init.py: step billing.0001_init: up(ctx) raised RuntimeError: no currency"
        in (err)
    )
    assert not {"accounts", "invoices"} & table_names(url)
