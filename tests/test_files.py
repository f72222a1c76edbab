"""Tests of lupo_migrate.files.discover: walking a migrations root into steps and findings."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from lupo_migrate.core import names as _names
from lupo_migrate.core.model import Severity, Step
from lupo_migrate.errors import (
    DiscoveryError,
    HeaderError,
    InvalidArgumentError,
    MigrationFileError,
)
from lupo_migrate.files.discover import RootNotUsableError, discover, load_steps

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "lupopedia"
MIGRATIONS = CORPUS / "migrations"
EXAMPLE_MANIFEST = Path(__file__).resolve().parents[1] / "examples" / "corpus-manifest.yaml"

needs_corpus = pytest.mark.skipif(not MIGRATIONS.is_dir(), reason="shared corpus not checked out")


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return root


class TestCorpus:
    @needs_corpus
    def test_sixteen_corpus_migrations_are_discovered_by_name(self) -> None:
        """The 16 header-less corpus SQL files become doctrine steps with ids from their names."""
        found = discover(MIGRATIONS)
        assert found.findings == ()
        assert len(found.steps) == 16
        assert {s.id for s in found.steps} == {p.name[:-4] for p in MIGRATIONS.glob("*.sql")}
        by_id = {s.id: s for s in found.steps}
        assert by_id["4_1_1_create_help_topics"].version == "4.1.1"
        assert all(s.file_type == "doctrine" and len(s.checksum) == 64 for s in found.steps)

    @needs_corpus
    def test_example_manifest_chains_the_corpus_in_version_order(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """examples/corpus-manifest.yaml, used from another directory, orders all 16 files."""
        monkeypatch.chdir(tmp_path)
        found = discover(MIGRATIONS, manifest=EXAMPLE_MANIFEST)
        assert found.findings == ()
        by_id = {s.id: s for s in found.steps}
        assert by_id["4.0.113_add_seven_love_agents"].depends_on == ()
        assert by_id["20260122_channel_system_migration"].depends_on == (
            "20260120_drop_legacy_tables_and_set_limit_4.1.17",
        )
        assert by_id["20260120_drop_legacy_tables_and_set_limit_4.1.17"].version == "4.1.17"
        assert by_id["4.2.0_add_genesis_doctrine_tables"].depends_on == (
            "20260122_channel_system_migration",
        )
        order = _chain_order(found.steps)
        assert len(order) == 16
        versions = [_names.version_key(by_id[i].version) for i in order if i[:4] != "2026"]
        assert versions == sorted(versions)

    @needs_corpus
    def test_corpus_docs_report_not_strict_as_warnings(self) -> None:
        """Discovering the docs gives 40 steps and 36 'not strict YAML' warnings with lines."""
        found = discover(CORPUS / "docs")
        assert len(found.steps) == 40
        assert found.errors == ()
        warnings = [f for f in found.findings if f.code == "header.not_strict"]
        assert len(warnings) == 36
        assert all(f.line for f in warnings)


def _chain_order(steps: Iterable[Step]) -> list[str]:
    """The step ids of a single dependency chain, first to last."""
    deps = {s.id: s.depends_on for s in steps}
    after = {d[0]: i for i, d in deps.items() if d}
    current = next(i for i, d in deps.items() if not d)
    order = [current]
    while current in after:
        current = after[current]
        order.append(current)
    return order


class TestTree:
    def test_walk_is_sorted_and_skips_hidden_and_pycache(self, tmp_path: Path) -> None:
        """Steps come sorted by path; hidden, __pycache__ and unknown endings are skipped."""
        _write(
            tmp_path,
            {
                "b.sql": "SELECT 1;",
                "a/z.md": "# doc",
                "a/y.py": "MIGRATION = {'id': 'mod_y', 'module': 'm'}\n",
                ".hidden.sql": "x",
                ".git/x.sql": "x",
                "__pycache__/c.sql": "x",
                "notes.txt": "x",
            },
        )
        found = discover(tmp_path)
        assert [s.path for s in found.steps] == ["a/y.py", "a/z.md", "b.sql"]
        # a module step's id is namespaced by its module
        assert [s.id for s in found.steps] == ["m.mod_y", "a/z", "b"]
        assert [s.file_type for s in found.steps] == ["module", "documentation", "doctrine"]
        assert found.steps[0].module == "m"

    def test_custom_suffixes(self, tmp_path: Path) -> None:
        """A suffix map picks the files and their types; the longest ending wins."""
        _write(tmp_path, {"a.up.sql": "x", "b.sql": "y", "c.txt": "z"})
        found = discover(tmp_path, suffixes={".sql": "doctrine", ".txt": "note"})
        assert [(s.id, s.file_type) for s in found.steps] == [
            ("a", "doctrine"),
            ("b", "doctrine"),
            ("c", "note"),
        ]

    def test_bad_suffixes_argument(self, tmp_path: Path) -> None:
        """A suffix map without leading dots is an InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError, match=r"starting with '\.'"):
            discover(tmp_path, suffixes={"sql": "doctrine"})

    def test_header_fields_become_step_fields(self, tmp_path: Path) -> None:
        """id, depends_on, type and version come from the header; meta keeps the rest."""
        text = "-- ---\n-- id: two\n-- depends_on: one\n-- type: custom\n-- owner: me\n-- ---\n"
        _write(tmp_path, {"V2__b.sql": text, "V1__a.sql": "-- id: one\n"})
        found = discover(tmp_path)
        two = next(s for s in found.steps if s.id == "two")
        assert (two.depends_on, two.file_type, two.version) == (("one",), "custom", "2")
        assert two.meta["owner"] == "me"

    def test_missing_root_is_a_one_line_discovery_error(self, tmp_path: Path) -> None:
        """A missing root raises DiscoveryError with a one-line message saying what to do."""
        with pytest.raises(DiscoveryError) as info:
            discover(tmp_path / "nope")
        assert isinstance(info.value, RootNotUsableError)
        message = str(info.value)
        assert "\n" not in message
        assert "does not exist" in message
        assert "pass the directory" in message
        # Only ways that exist: the command's argument, the configuration key, the variable.
        assert "--root" not in message
        assert all(way in message for way in ("DIRECTORY", "`migrations`", "LUPO_MIGRATE_DIR"))

    def test_root_that_is_a_file(self, tmp_path: Path) -> None:
        """A file given as root is refused the same way."""
        _write(tmp_path, {"f.sql": "x"})
        with pytest.raises(RootNotUsableError, match="not a directory"):
            load_steps(tmp_path / "f.sql")


class TestProblems:
    def test_several_bad_files_are_reported_at_once(self, tmp_path: Path) -> None:
        """Bad YAML, a schema violation, a non-UTF-8 file and a duplicate id all show together."""
        _write(
            tmp_path,
            {
                "a.md": "---\ntitle: ok\nlist:\n   - a\n  - b\n---\n",
                "b.md": "---\nid: 5\n---\n",
                "c.sql": b"SELECT 1;\n-- caf\xe9\n",
                "d/x.sql": "-- id: dup\n",
                "e.sql": "-- id: dup\n",
                "f.py": "MIGRATION = {'id': f'x'}\n",
                "g.md": "---\na: &x 1\n---\n",
                "fine.sql": "SELECT 1;",
            },
        )
        found = discover(tmp_path)
        where = {(f.path, f.line) for f in found.errors}
        assert where == {
            ("a.md", 5),
            ("b.md", 2),
            ("c.sql", 2),
            ("e.sql", None),
            ("f.py", 1),
            ("g.md", 2),
        }
        duplicate = next(f for f in found.errors if f.path == "e.sql")
        assert "d/x.sql" in duplicate.message
        assert "e.sql" in duplicate.message
        assert all(f.hint for f in found.errors)
        with pytest.raises(MigrationFileError) as info:
            load_steps(tmp_path)
        assert len(info.value.problems) == 6
        assert "6 migration file problems" in str(info.value)

    def test_ids_and_paths_longer_than_the_tables_keep_are_refused(self, tmp_path: Path) -> None:
        """Ids over 191 characters (from the name or the header) and paths over 1024 are
        errors naming the length and the limit; 191 and 1024 themselves are fine."""
        deep = "/".join(["d" * 200] * 5)  # 1004 characters of directories
        _write(
            tmp_path,
            {
                "V1__" + "a" * 187 + ".sql": "SELECT 1;",  # id of 191
                "V2__" + "b" * 188 + ".sql": "SELECT 1;",  # id of 192
                "h.sql": f"-- id: {'c' * 192}\nSELECT 1;",
                f"{deep}/{'e' * 15}.sql": "-- id: at_the_limit\nSELECT 1;",  # path of 1024
                f"{deep}/{'f' * 16}.sql": "-- id: deep\nSELECT 1;",  # path of 1025
            },
        )
        found = discover(tmp_path)
        problems = {(f.code, f.path): f for f in found.errors}
        assert set(problems) == {
            ("discovery.long_id", "V2__" + "b" * 188 + ".sql"),
            ("discovery.long_id", "h.sql"),
            ("discovery.long_path", f"{deep}/{'f' * 16}.sql"),
        }
        assert "step id of 192 characters" in problems["discovery.long_id", "h.sql"].message
        assert "at most 191" in problems["discovery.long_id", "h.sql"].message
        assert (
            "path of 1025 characters"
            in problems["discovery.long_path", f"{deep}/{'f' * 16}.sql"].message
        )
        with pytest.raises(DiscoveryError, match="at most 191"):
            load_steps(tmp_path)

    def test_header_only_problems_raise_header_error(self, tmp_path: Path) -> None:
        """When every problem is a header problem, HeaderError is raised."""
        _write(tmp_path, {"a.md": "---\nx: !!python/object:os.system {}\n---\n"})
        with pytest.raises(HeaderError, match="tag") as info:
            load_steps(tmp_path)
        assert info.value.problems[0].line == 2

    def test_warnings_do_not_stop_load_steps(self, tmp_path: Path) -> None:
        """A not-strict header is a WARNING: load_steps still returns the step."""
        _write(tmp_path, {"a.md": "---\ntarget: @everyone\n---\n"})
        (step,) = load_steps(tmp_path)
        assert step.meta["target"] == "@everyone"
        (warning,) = discover(tmp_path).findings
        assert (warning.severity, warning.line) == (Severity.WARNING, 2)


class TestEncoding:
    def test_bom_crlf_file_is_accepted_with_lf_checksum(self, tmp_path: Path) -> None:
        """A BOM + CRLF file is read and its checksum equals the LF version's."""
        lf = "---\nid: doc\ntarget: @everyone\n---\nbody\n"
        _write(tmp_path / "crlf", {"a.md": b"\xef\xbb\xbf" + lf.replace("\n", "\r\n").encode()})
        _write(tmp_path / "lf", {"a.md": lf})
        (crlf_step,) = load_steps(tmp_path / "crlf")
        (lf_step,) = load_steps(tmp_path / "lf")
        assert crlf_step.id == lf_step.id == "doc"
        assert crlf_step.checksum == lf_step.checksum == _names.checksum(lf)
        assert crlf_step.meta == lf_step.meta


class TestSymlinks:
    def test_symlink_escaping_root_is_reported(self, tmp_path: Path) -> None:
        """A file or directory symlink pointing outside the root is reported, not followed."""
        outside = _write(tmp_path / "outside", {"secret.sql": "x", "d/y.sql": "y"})
        root = _write(tmp_path / "root", {"a.sql": "SELECT 1;"})
        (root / "link.sql").symlink_to(outside / "secret.sql")
        (root / "dir").symlink_to(outside / "d")
        found = discover(root)
        assert [s.id for s in found.steps] == ["a"]
        escapes = [f for f in found.errors if f.code == "discovery.symlink_escape"]
        assert {f.path for f in escapes} == {"link.sql", "dir"}
        with pytest.raises(DiscoveryError):
            load_steps(root)

    def test_symlink_inside_root_is_followed_and_loops_are_cut(self, tmp_path: Path) -> None:
        """A symlinked directory inside the root is walked once; a loop back is skipped."""
        root = _write(tmp_path, {"sub/a.sql": "x"})
        (root / "sub" / "again").symlink_to(root / "sub")
        (root / "broken.sql").symlink_to(root / "missing.sql")
        found = discover(root)
        assert [s.id for s in found.steps] == ["sub/a"]
        assert {f.code for f in found.findings} == {"discovery.loop", "discovery.broken_symlink"}


class TestDownFiles:
    def test_down_twins_attach_to_their_up_step(self, tmp_path: Path) -> None:
        """`x.down.sql` and Flyway `U1__x.sql` attach to the up step as meta['down_path']."""
        _write(
            tmp_path,
            {
                "1_x.up.sql": "a",
                "1_x.down.sql": "b",
                "2_y.sql": "c",
                "2_y.down.sql": "d",
                "V3__z.sql": "e",
                "U3__z.sql": "f",
            },
        )
        found = discover(tmp_path)
        assert found.findings == ()
        assert [s.id for s in found.steps] == ["1_x", "2_y", "V3__z"]
        assert dict(found.down_files) == {
            "1_x": "1_x.down.sql",
            "2_y": "2_y.down.sql",
            "V3__z": "U3__z.sql",
        }
        assert [s.meta["down_path"] for s in found.steps] == list(found.down_files.values())

    def test_down_twin_pairs_by_file_name_when_the_header_sets_another_id(
        self, tmp_path: Path
    ) -> None:
        """`V4__x.down.sql` belongs to `V4__x.sql` even when that file's header says `id: x`."""
        _write(tmp_path, {"V4__x.sql": "-- id: x\nSELECT 1;\n", "V4__x.down.sql": "SELECT 2;\n"})
        found = discover(tmp_path)
        assert found.errors == ()
        assert dict(found.down_files) == {"x": "V4__x.down.sql"}
        assert found.steps[0].meta["down_path"] == "V4__x.down.sql"

    def test_orphan_down_file_is_reported(self, tmp_path: Path) -> None:
        """A down file without an up twin is an error."""
        _write(tmp_path, {"9_gone.down.sql": "x"})
        (problem,) = discover(tmp_path).errors
        assert (problem.code, problem.path) == ("discovery.orphan_down", "9_gone.down.sql")


class TestManifest:
    def test_default_manifest_orders_and_is_not_a_step(self, tmp_path: Path) -> None:
        """lupo-manifest.yaml at the root chains its files and is not itself a step."""
        _write(
            tmp_path,
            {
                "c.sql": "x",
                "a.sql": "x",
                "b.sql": "-- depends_on: [c]\n",
                "lupo-manifest.yaml": "- c.sql\n- a.sql\n- b.sql\n",
            },
        )
        found = discover(tmp_path)
        assert found.findings == ()
        deps = {s.id: s.depends_on for s in found.steps}
        assert deps == {"a": ("c",), "b": ("c", "a"), "c": ()}

    def test_json_manifest_with_explicit_dependencies(self, tmp_path: Path) -> None:
        """manifest.json with chain off uses explicit depends_on (ids or file paths)."""
        _write(
            tmp_path,
            {
                "a.sql": "x",
                "b.sql": "x",
                "manifest.json": '{"chain": false, "steps": [{"file": "a.sql"},'
                ' {"file": "b.sql", "depends_on": ["a.sql"], "id": "bee"}]}',
            },
        )
        found = discover(tmp_path)
        assert found.findings == ()
        assert {s.id: s.depends_on for s in found.steps} == {"a": (), "bee": ("a",)}

    def test_manifest_traversal_is_rejected(self, tmp_path: Path) -> None:
        """A manifest entry with '..' is rejected with the manifest path and line."""
        _write(tmp_path / "outside", {"evil.sql": "x"})
        root = _write(
            tmp_path / "root",
            {"a.sql": "x", "lupo-manifest.yaml": "steps:\n  - a.sql\n  - ../outside/evil.sql\n"},
        )
        found = discover(root)
        (problem,) = found.errors
        assert (problem.code, problem.path, problem.line) == (
            "manifest.path",
            "lupo-manifest.yaml",
            3,
        )
        assert [s.id for s in found.steps] == ["a"]
        with pytest.raises(DiscoveryError, match=r"\.\./outside/evil\.sql"):
            load_steps(root)

    def test_manifest_outside_root_and_missing_entries(self, tmp_path: Path) -> None:
        """A manifest may live outside the root; entries naming no file are reported."""
        root = _write(tmp_path / "root", {"a.sql": "x"})
        manifest = _write(tmp_path, {"m.yaml": "- a.sql\n- nope.sql\n"}) / "m.yaml"
        found = discover(root, manifest=manifest)
        (problem,) = found.errors
        assert (problem.code, problem.line) == ("manifest.missing", 2)
        assert problem.path == str(manifest)

    def test_missing_manifest_argument(self, tmp_path: Path) -> None:
        """A manifest argument naming no file is a one-line DiscoveryError."""
        with pytest.raises(DiscoveryError, match="manifest file not found"):
            discover(tmp_path, manifest=tmp_path / "none.yaml")


class TestScale:
    @pytest.mark.slow
    def test_ten_thousand_files_with_one_malformed(self, tmp_path: Path) -> None:
        """10,000 generated files discover in seconds; the malformed one is named with its line."""
        for index in range(10_000):
            sub = tmp_path / f"d{index // 500:02d}"
            if index % 500 == 0:
                sub.mkdir()
            if index % 4 == 0:
                text = f"---\nid: doc{index}\ntarget: @everyone\ntags: [a, b]\n---\nbody\n"
                (sub / f"{index}_doc.md").write_text(text)
            else:
                text = f"-- id: s{index}\n-- depends_on: [s{index - 1}]\nSELECT {index};\n"
                (sub / f"{index}_step.sql").write_text(text)
        bad = tmp_path / "d07" / "3601_step.sql"
        bad.write_text("-- id: s3601\n-- depends_on: [s3600, &x s1]\nSELECT 1;\n")
        started = time.perf_counter()
        found = discover(tmp_path)
        elapsed = time.perf_counter() - started
        assert len(found.steps) == 9_999
        (problem,) = found.errors
        assert (problem.path, problem.line) == ("d07/3601_step.sql", 2)
        assert elapsed < 10, f"discovery took {elapsed:.1f}s"
