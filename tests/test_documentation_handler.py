"""The documentation handler on the 40 corpus documents: byte-preserving header edits, class D
findings, byte-exact rollback (also after a write failure and after kill -9)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS, needs_corpus
from databases import database_params, fresh_database
from lupo_migrate.cli import _settings
from lupo_migrate.handlers import documentation
from lupo_migrate.session import session
from test_apply import cli
from test_frontmatter import VERSION, changed_lines
from test_recover import _wait_gone
from trees import snapshot

pytestmark = needs_corpus

SET_VERSION = f"""---
id: docs_4_1_0
files: "docs/*.md"
set:
  {VERSION}: 4.1.0
---
Every doctrine document was last modified by 4.1.0.
"""
KILLER = Path(__file__).parent / "_killer.py"


def project(tmp_path: Path, **migrations: str) -> Path:
    """tmp_path/p with migrations/ (the given files) and docs/ (the 40 corpus documents)."""
    root = tmp_path / "p"
    (root / "migrations").mkdir(parents=True)
    shutil.copytree(CORPUS / "docs", root / "docs")
    for name, text in (migrations or {"V1__docs.md": SET_VERSION}).items():
        (root / "migrations" / name).write_text(text)
    return root


def digests(root: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "docs").iterdir())
    }


def originals() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((CORPUS / "docs").iterdir())
    }


def findings(url: str, root: Path) -> list[str]:
    settings = _settings(
        directory=root / "migrations",
        db=url,
        target_name=None,
        manifest=None,
        config=None,
        renames=(),
    )
    with session.session(settings) as opened:
        run = opened.history()[-1]
        return [f"{f.code} {f}" for f in opened.orchestrator.storage.findings(run.id)]


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with fresh_database(request.param, tmp_path) as made:
        yield made


def test_the_corpus_gets_the_new_version_and_a_d_rollback_restores_every_byte(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    args = [str(root / "migrations"), "--db", url]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    assert "completed, 1 of 1 step(s) applied" in out
    changed = 0
    for original in sorted((CORPUS / "docs").glob("*.md")):
        before = original.read_text(encoding="utf-8")
        after = (root / "docs" / original.name).read_text(encoding="utf-8")
        if after != before:
            changed += 1
            diff = changed_lines(before, after)
            assert len(diff) == 2, (original.name, diff)
            assert diff[1] == f"+{VERSION}: 4.1.0", (original.name, diff)
            assert diff[0].startswith(f"-{VERSION}: ")
    assert changed == 38
    assert not list((root / "docs").glob(".*"))  # no temporary file left
    # 4.1.6 -> 4.1.0 is a stamp going back: class D findings, a 30-day decision.
    found = findings(url, root)
    regressions = [f for f in found if f.startswith("documentation.stamp_regression")]
    assert any(
        "AGENT_RUNTIME.md:3: file.last_modified_system_version went back from 4.1.6 to 4.1.0" in f
        for f in regressions
    ), regressions
    code, out, err = cli(capsys, "decisions", *args)
    assert " D    pending" in out, out
    run_id = out.split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code == 0, (out, err)
    assert digests(root) == originals()


def test_a_file_that_cannot_be_written_rolls_the_whole_batch_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 20th write fails: every file written before it is put back, none is left at 4.1.0."""
    root = project(tmp_path)
    write = documentation.write_atomically
    written: list[Path] = []

    def failing(path: Path, data: bytes) -> None:
        if path in refused or (not refused and len(written) == 19):
            refused.add(path)  # this one file cannot be written, the others can
            raise PermissionError(13, "Permission denied", str(path))
        written.append(path)
        write(path, data)

    refused: set[Path] = set()

    monkeypatch.setattr(documentation, "write_atomically", failing)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code == 11, (out, err)
    assert "Permission denied" in err, err
    monkeypatch.undo()
    assert digests(root) == originals()
    versions = {
        (root / "docs" / p.name).read_text(encoding="utf-8").count(f"{VERSION}: 4.1.0")
        for p in written
    }
    assert versions == {0}


@pytest.mark.parametrize("kind", database_params()[:2])
def test_a_run_killed_in_the_middle_of_the_batch_is_recovered_byte_for_byte(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after its 20th file: recover, at once, writes the 20 back (on SQLite the dead
    run's lease is free as soon as its process is gone, on the machine it ran on)."""
    root = project(tmp_path)
    with fresh_database(kind, tmp_path) as url:
        args = [str(root / "migrations"), "--db", url]
        killed = subprocess.run(
            [sys.executable, str(KILLER), "file", "19", *args], capture_output=True, text=True
        )
        assert killed.returncode == -9, killed.stderr
        assert digests(root) != originals()  # 20 files changed when it died
        if kind == "mariadb":  # the server drops the dead process's connections
            _wait_gone(url, url.rpartition("/")[2])
        code, out, err = cli(capsys, "recover", *args)
        assert code == 0, (out, err)
        assert digests(root) == originals()
        assert not list((root / "docs").glob(".*"))


def test_mixed_epochs_and_unresolved_atoms_are_class_d_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second step moves part of the batch on: the batch ends at two versions."""
    later = f"""---
id: docs_agents_4_2_0
depends_on: docs_4_1_0
files: "docs/AGENT_*.md"
set:
  {VERSION}: 4.2.0
atoms:
  GLOBAL_CURRENT_LUPOPEDIA_VERSION: 4.2.0
---
"""
    root = project(tmp_path, **{"V1__docs.md": SET_VERSION, "V2__agents.md": later})
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code == 0, (out, err)
    found = findings(url, root)
    mixed = [f for f in found if f.startswith("documentation.mixed_epochs")]
    assert mixed, found
    assert all("is 4.2.0 here but 4.1.0 in" in f for f in mixed), mixed
    assert any("docs/AGENT_RUNTIME.md" in f for f in mixed)
    atoms = [f for f in found if f.startswith("documentation.atoms")]
    assert any(
        "AGENT_RUNTIME.md: header atom GLOBAL_CURRENT_AUTHORS has no value" in f for f in atoms
    ), atoms
    assert not any("GLOBAL_CURRENT_LUPOPEDIA_VERSION" in f for f in atoms)


def test_a_bad_spec_is_refused_naming_the_file_and_nothing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "---\nid: d\nfiles: ../outside/*.md\nset: {v: 1}\n---\n"
    root = project(tmp_path, **{"V1__docs.md": bad})
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, _out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code != 0
    assert "V1__docs.md" in err, err
    assert "must stay inside the files directory" in err, err
    assert digests(root) == originals()


# ------------------------------------------------------------------------------ containment

DOC = "---\nfile:\n  version: 1.0.0\n---\nBody.\n"
SET_2 = '---\nid: docs_2\nfiles: ["docs/*.md", "docs/**/*.md"]\nset: {file.version: 2.0.0}\n---\n'


def small_project(tmp_path: Path, spec: str = SET_2) -> tuple[Path, Path]:
    """tmp_path/p (migrations/, docs/a.md, docs/sub/b.md) and tmp_path/outside (files of the
    same names, other bodies)."""
    root, outside = tmp_path / "p", tmp_path / "outside"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / "V1__docs.md").write_text(spec)
    for base, text in ((root / "docs", DOC), (outside, DOC.replace("Body", "Outside"))):
        (base / "sub").mkdir(parents=True)
        (base / "a.md").write_text(text)
        (base / "sub" / "b.md").write_text(text)
    return root, outside


def _swap(path: Path, target: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


DOC_LINKS_OUT = {
    "file": (lambda root, out: _swap(root / "docs/a.md", out / "a.md"), "docs/a.md is a"),
    "folder": (lambda root, out: _swap(root / "docs/sub", out / "sub"), "docs/sub is a"),
    "directory": (lambda root, out: _swap(root / "docs", out), "docs is a"),
}


@pytest.mark.parametrize("layout", sorted(DOC_LINKS_OUT))
def test_documents_behind_a_link_out_are_refused_by_check_and_apply(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A document the patterns match through a link out (the file, its folder, the docs
    directory) is named by ``check`` and refuses the run: nothing outside, nor inside, is
    written."""
    root, outside = small_project(tmp_path)
    link, named = DOC_LINKS_OUT[layout]
    link(root, outside)
    before_out, before_in = snapshot(outside), snapshot(root)
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 5, out
    assert "V1__docs.md: step docs_2: docs/" in out, out
    assert f"{named} symbolic link to {outside}" in out, out
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code != 0, (out, err)
    assert f"{named} symbolic link to {outside}" in err, err
    assert snapshot(outside) == before_out
    assert snapshot(root) == before_in


@pytest.mark.parametrize(
    ("pattern", "why"), [("../outside/*.md", "goes up with '..'"), ("/abs/*.md", "is an absolute")]
)
def test_a_pattern_going_up_or_absolute_is_found_by_check(
    pattern: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = small_project(tmp_path, SET_2.replace('"docs/*.md"', f'"{pattern}"'))
    code, out, _ = cli(capsys, "check", str(root / "migrations"))
    assert code == 5, out
    assert f"V1__docs.md: step docs_2: files: {pattern!r} {why}" in out, out


def test_a_document_linked_out_after_the_checks_is_refused_by_the_step(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the checks before the run seeing nothing, the step itself refuses the link out
    before it changes any file (docs/a.md, in the tree, is not edited either)."""
    from lupo_migrate.run import checks as _checking

    monkeypatch.setattr(_checking, "file_findings", lambda orch, plan: ())
    root, outside = small_project(tmp_path)
    _swap(root / "docs/sub", outside / "sub")
    before_out, before_in = snapshot(outside), snapshot(root)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = cli(capsys, "apply", str(root / "migrations"), "--db", url)
    assert code == 11, (out, err)
    assert "rollback from migrating" in caplog.text  # past the checks: the step refused
    assert f"docs/sub/b.md leads outside the files directory {root}" in err, err
    assert f"docs/sub is a symbolic link to {outside / 'sub'}" in err, err
    assert snapshot(outside) == before_out
    assert snapshot(root) == before_in


def test_a_rollback_never_writes_through_a_folder_swapped_for_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/sub is replaced by a link out after the run: the rollback puts docs/a.md back,
    names docs/sub/b.md and the link, and writes nothing behind it."""
    root, outside = small_project(tmp_path)
    original = snapshot(root / "docs")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = [str(root / "migrations"), "--db", url]
    code, out, err = cli(capsys, "apply", *args)
    assert code == 0, (out, err)
    assert "version: 2.0.0" in (root / "docs/sub/b.md").read_text()
    _swap(root / "docs/sub", outside / "sub")
    before = snapshot(outside)
    run_id = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "rollback", run_id, *args)
    assert code != 0, (out, err)
    assert f"docs/sub/b.md leads outside the files directory {root}" in err, err
    assert f"docs/sub is a symbolic link to {outside / 'sub'}" in err, err
    assert snapshot(outside) == before
    assert snapshot(root / "docs")["a.md"] == original["a.md"]  # the other is put back
