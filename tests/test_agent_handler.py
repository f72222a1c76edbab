"""The agent handler: records upserted by key into a table or agent folders, and restored
exactly by a rollback (updated, inserted and deleted ones)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import CORPUS, needs_corpus
from test_apply import cli
from trees import snapshot

CREATE = """CREATE TABLE lupo_agents (
    agent_key VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    status VARCHAR(20),
    config TEXT,
    weight DECIMAL(8, 3),
    created_ymdhis BIGINT,
    seen_at TIMESTAMP NULL
)"""
ROWS = [
    ("CAPTAIN", "Captain", "active", None, "1.250", 20260101000000, "2026-01-02 03:04:05"),
    ("OLD", "It's \\ old", "retired", '{"x": 1}', None, 20250101000000, None),
    ("KEPT", "Kept", "active", "", "0.000", None, "2025-12-31 23:59:59"),
]
UPSERT = """migration:
  id: agents_love
table: lupo_agents
key: agent_key
records:
  - {agent_key: CAPTAIN, status: paused, weight: 2.5}
  - {agent_key: WOLFIE, name: "Wolfie's \\\\ lane", status: active, config: {lanes: [a, b]}}
  - {agent_key: KEPT, status: active}
delete:
  - {agent_key: OLD}
"""


def rows(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql("SELECT * FROM lupo_agents ORDER BY agent_key")
            ]
    finally:
        engine.dispose()


def prepare(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(CREATE)
            for row in ROWS:
                conn.execute(
                    sa.text("INSERT INTO lupo_agents VALUES (:k, :n, :s, :c, :w, :y, :t)"),
                    dict(zip("knscwyt", row, strict=True)),
                )
    finally:
        engine.dispose()


def test_records_are_upserted_by_key_and_a_rollback_restores_them_exactly(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(database_url)
    before = rows(database_url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__agents.yaml").write_text(UPSERT)
    args = [str(migrations), "--db", database_url]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    after = {r[0]: r for r in rows(database_url)}
    assert set(after) == {"CAPTAIN", "KEPT", "WOLFIE"}  # OLD deleted, WOLFIE inserted
    assert after["CAPTAIN"][1:3] == ("Captain", "paused")  # name kept, status changed
    assert float(after["CAPTAIN"][4]) == 2.5
    assert after["WOLFIE"][1] == "Wolfie's \\ lane"
    assert after["WOLFIE"][3] == '{"lanes": ["a", "b"]}'
    assert after["KEPT"] == next(r for r in before if r[0] == "KEPT")  # nothing to change
    run_id = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code == 0, (out, err)
    assert rows(database_url) == before


def test_a_failing_record_undoes_the_ones_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    prepare(url)
    before = rows(url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__agents.yaml").write_text(
        UPSERT.replace(
            "  - {agent_key: KEPT, status: active}", "  - {agent_key: KEPT, colour: red}"
        )
    )
    code, out, err = cli(capsys, "apply", str(migrations), "--db", url)
    assert code == 11, (out, err)
    assert "V1__agents.yaml" in err
    assert "has no column colour" in err
    assert rows(url) == before


@needs_corpus
def test_agent_folders_are_upserted_and_restored_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the corpus agents: a field set in 0001's metadata.json (only that value changes),
    0006 created, 0005 deleted; the rollback gives every file back with the same sha256."""
    root = tmp_path / "p"
    (root / "migrations").mkdir(parents=True)
    shutil.copytree(CORPUS / "agents", root / "agents")
    (root / "migrations" / "V1__agents.yaml").write_text(
        "migration: {id: agent_files}\n"
        "directory: agents\n"
        "records:\n"
        '  - {id: "0001", status: active}\n'
        '  - {id: "0006", code: WOLFIE, status: uninitialized, version: 1.0.0}\n'
        'delete: [{id: "0005"}]\n'
    )

    def digests() -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "agents").rglob("*"))
            if p.is_file()
        }

    original = digests()
    metadata = (root / "agents/0001/metadata.json").read_text()
    args = [str(root / "migrations"), "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    assert (root / "agents/0001/metadata.json").read_text() == metadata.replace(
        '"status":  "uninitialized"', '"status":  "active"'
    )
    assert (root / "agents/0006/metadata.json").is_file()
    assert not (root / "agents/0005").exists()
    run_id = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code == 0, (out, err)
    assert digests() == original
    assert not (root / "agents/0006").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("migration: {id: a}\nkey: k\nrecords: [{k: 1}]\n", "give either 'table'"),
        ("migration: {id: a}\ntable: t\nrecords: [{k: 1}]\n", "'key' must name the key"),
        ("migration: {id: a}\ntable: t\nkey: k\nrecords: [{v: 1}]\n", "records #1 has no k"),
        ("migration: {id: a}\ntable: t\nkey: k\nrecords: [{k: 1}, {k: 1}]\n", "appears twice"),
        ("migration: {id: a}\ndirectory: ../x\nrecords: [{id: 1}]\n", "inside the files"),
        ("migration: {id: a}\ntable: t\nkey: k\n", "nothing to do"),
    ],
)
def test_a_bad_agent_file_is_refused_naming_it_and_the_problem(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__agents.yaml").write_text(text)
    code, out, err = cli(capsys, "apply", str(migrations), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code != 0, (out, err)
    assert "V1__agents.yaml" in err, err
    assert message in err, err


# ------------------------------------------------------------------------------ containment

FOLDERS = (
    "migration: {id: agent_files}\n"
    "directory: agents\n"
    "records:\n"
    '  - {id: "0001", status: active}\n'
    '  - {id: "0006", code: WOLFIE}\n'
    'delete: [{id: "0005"}]\n'
)


def agents_project(tmp_path: Path, spec: str = FOLDERS) -> tuple[Path, Path]:
    """tmp_path/p (migrations/, agents/ with 0001 and 0005) and tmp_path/outside, which
    holds folders and files of the same names."""
    root, outside = tmp_path / "p", tmp_path / "outside"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / "V1__agents.yaml").write_text(spec)
    for base in (root / "agents", outside):
        for key in ("0001", "0005"):
            (base / key).mkdir(parents=True)
            (base / key / "metadata.json").write_text(f'{{"id": "{key}", "status": "off"}}\n')
    (outside / "secret.json").write_text('{"id": "0001", "status": "outside"}\n')
    return root, outside


def _relink(path: Path, target: Path) -> None:
    shutil.rmtree(path)
    path.symlink_to(target)


LINKS_OUT = {
    # the agent folders' directory itself
    "directory": (lambda root, out: _relink(root / "agents", out), "agents is a symbolic link"),
    # a record's folder (upserted)
    "record folder": (
        lambda root, out: _relink(root / "agents/0001", out / "0001"),
        "agents/0001 is a symbolic link",
    ),
    # a folder to delete
    "deleted folder": (
        lambda root, out: _relink(root / "agents/0005", out / "0005"),
        "agents/0005 is a symbolic link",
    ),
    # a record's file, inside an in-tree folder
    "record file": (
        lambda root, out: (
            (root / "agents/0001/metadata.json").unlink(),
            (root / "agents/0001/metadata.json").symlink_to(out / "secret.json"),
        ),
        "agents/0001/metadata.json is a symbolic link",
    ),
    # a file inside a folder to delete
    "file in deleted folder": (
        lambda root, out: (root / "agents/0005/extra.json").symlink_to(out / "secret.json"),
        "agents/0005/extra.json is a symbolic link",
    ),
    # a new record's folder: a dangling link out
    "dangling": (
        lambda root, out: (root / "agents/0006").symlink_to(out / "0006"),
        "agents/0006 is a symbolic link",
    ),
}


@pytest.mark.parametrize("layout", sorted(LINKS_OUT))
def test_agent_files_behind_a_link_out_are_refused_by_check_and_apply(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whichever link leads out (directory, folder, file, dangling), ``check`` names it and
    ``apply`` refuses the run: nothing outside (nor inside) is read into a change, written or
    deleted."""
    root, outside = agents_project(tmp_path)
    link, named = LINKS_OUT[layout]
    link(root, outside)
    before_out, before_in = snapshot(outside), snapshot(root / "agents")
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 5, out
    assert "V1__agents.yaml: step agent_files:" in out, out
    assert named in out, out
    assert str(outside) in out, out
    assert "outside the files directory" in out, out
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code != 0, (out, err)
    assert named in err, err
    assert snapshot(outside) == before_out
    assert snapshot(root / "agents") == before_in


@pytest.mark.parametrize(
    ("directory", "why"),
    [("../outside", "goes up with '..'"), ("agents/../../outside", "goes up with '..'")],
)
def test_a_directory_going_up_is_found_by_check(
    directory: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = agents_project(tmp_path)
    spec = FOLDERS.replace("directory: agents", f"directory: {directory}")
    (root / "migrations" / "V1__agents.yaml").write_text(spec)
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 5, out
    assert f"V1__agents.yaml: step agent_files: directory: {directory!r} {why}" in out, out


def test_an_absolute_directory_is_found_by_check_and_nothing_is_written_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, outside = agents_project(tmp_path)
    spec = FOLDERS.replace("directory: agents", f"directory: {outside}")
    (root / "migrations" / "V1__agents.yaml").write_text(spec)
    before = snapshot(outside)
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 5, out
    assert f"directory: {str(outside)!r} is an absolute path" in out, out
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code != 0, (out, err)
    assert "is an absolute path" in err, err
    assert snapshot(outside) == before


def test_check_looks_under_the_files_directory_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--files names the files directory: there, ``agents`` leads outside; under the default
    (the migrations directory's parent) it does not."""
    root, _ = agents_project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "agents").symlink_to(root / "agents")
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 0, out
    code, out, _ = cli(capsys, "check", str(root / "migrations"), "--files", str(other))
    assert code == 5, out
    assert "agents is a symbolic link" in out, out


def test_the_step_checks_again_when_it_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A link made after the checks before the run (here: those checks see nothing) is
    refused by the step itself, before any change; the run is rolled back."""
    from lupo_migrate.run import checks as _checking

    monkeypatch.setattr(_checking, "file_findings", lambda orch, plan: ())
    root, outside = agents_project(tmp_path)
    _relink(root / "agents/0005", outside / "0005")
    before_out, before_in = snapshot(outside), snapshot(root / "agents")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code == 11, (out, err)
    assert "rollback from migrating" in caplog.text  # past the checks: the step refused
    assert "agents/0005 is a symbolic link to" in err, err
    assert str(outside / "0005") in err, err
    assert snapshot(outside) == before_out
    assert snapshot(root / "agents") == before_in


def test_a_rollback_never_writes_or_deletes_through_a_folder_swapped_for_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the run, 0006 (created) and 0005 (deleted, so recreated by the rollback) are
    replaced by links out: the rollback puts 0001 back, names both links and touches
    nothing behind them."""
    root, outside = agents_project(tmp_path)
    original = snapshot(root / "agents")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = [str(root / "migrations"), "--db", url]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    shutil.copytree(root / "agents/0006", outside / "0006")
    _relink(root / "agents/0006", outside / "0006")  # its file would be deleted
    (root / "agents/0005").symlink_to(outside / "0005")  # its file would be written
    before = snapshot(outside)
    run_id = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code != 0, (out, err)
    assert "agents/0006/metadata.json leads outside the files directory" in err, err
    assert "agents/0005/metadata.json leads outside the files directory" in err, err
    assert snapshot(outside) == before
    # the others are put back
    assert snapshot(root / "agents")["0001/metadata.json"] == original["0001/metadata.json"]


def test_links_inside_the_files_directory_are_followed_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record's folder linked to another folder inside the files directory is written
    through (the link stays a link), and the rollback puts its target back byte for byte."""
    root, _ = agents_project(tmp_path)
    (root / "shared").mkdir()
    (root / "shared" / "metadata.json").write_text('{"id": "0001", "status": "off"}\n')
    _relink(root / "agents/0001", root / "shared")
    before = snapshot(root)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = [str(root / "migrations"), "--db", url]
    code, out, err = cli(capsys, "check", str(root / "migrations"))
    assert code == 0, out
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    assert (root / "agents/0001").is_symlink()
    assert '"status": "active"' in (root / "shared" / "metadata.json").read_text()
    run_id = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code == 0, (out, err)
    assert {k: v for k, v in snapshot(root).items() if not k.endswith(".db")} == before
