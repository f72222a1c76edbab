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
