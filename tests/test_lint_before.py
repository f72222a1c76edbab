"""Lint findings arrive before the run: ``check`` and ``apply --dry-run`` show the warnings
``apply`` gives (``DROP``, ``UPDATE`` / ``DELETE`` without ``WHERE``), each with its rule id,
which the settings can refuse (``forbid``) or silence (``lint_ignore``), as Atlas and squawk
do (issue 19, point 5). On 1e1146b neither showed any."""

from __future__ import annotations

from pathlib import Path

import pytest

from lupo_migrate import errors
from lupo_migrate.cli import main


@pytest.fixture(name="risky")
def _risky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # lupo.toml is read from here
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INT, v INT);\n")
    (migrations / "V2__x.sql").write_text(
        "UPDATE t SET v = 1;\nDELETE FROM t;\nALTER TABLE t DROP COLUMN v;\nDROP TABLE t;\n"
    )
    return migrations


WARNINGS = [
    "warning: V2__x.sql:1: updates every row of t (no WHERE) [update-without-where]",
    "warning: V2__x.sql:2: deletes every row of t (no WHERE) [delete-without-where]",
    "warning: V2__x.sql:3: drops column t.v and its values [drop-column]",
    "warning: V2__x.sql:4: drops table t and its rows [drop-table]",
]


def test_check_shows_the_warnings_apply_would_give_with_their_rule_ids(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", str(risky)])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert [line for line in (out + err).splitlines() if line.startswith("warning")] == WARNINGS


def test_the_dry_run_shows_them_before_the_statements(
    risky: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["apply", str(risky), "--dry-run", "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert err.splitlines() == WARNINGS
    assert "DROP TABLE t;" in out


def test_forbidden_rules_fail_check_and_the_dry_run_and_ignored_ones_are_silent(
    risky: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lupo.toml").write_text(
        'forbid = ["drop-table"]\nlint_ignore = ["update-without-where", "delete-without-where"]\n'
    )
    code = main(["check", str(risky)])
    out, err = capsys.readouterr()
    assert code == errors.MigrationFileError.exit_code
    said = (out + err).splitlines()
    assert "error: V2__x.sql:4: drops table t and its rows [drop-table] (the project forbids" in (
        " ".join(said)
    )
    assert not any("without-where" in line for line in said)
    code = main(["apply", str(risky), "--dry-run", "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    out, err = capsys.readouterr()
    assert code == errors.MigrationFileError.exit_code
    assert "[drop-table]" in err
    assert "without-where" not in err
    code = main(["apply", str(risky), "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    assert code == errors.StepError.exit_code  # the run refuses it too, before anything runs
    assert "0 of 2 step(s) applied" in capsys.readouterr().out
