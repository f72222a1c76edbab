"""Tests of the header core: reading (_headers), safe YAML (yaml), schema (header_schema), names and
versions (_names), manifests (_manifest)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.core import names as _names
from lupo_migrate.core.model import Severity
from lupo_migrate.files import header_schema, yaml
from lupo_migrate.files import headers as h
from lupo_migrate.files import manifest as _manifest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "lupopedia"
DOCS = CORPUS / "docs"

#: Corpus docs whose front matter strict YAML accepts, and those without front matter.
STRICT_DOCS = {"AGENT_CLASSIFICATION.md", "CURSOR_CONTEXT_METADATA.md"}
NO_HEADER_DOCS = {"4.1.20_doctrine_audit.md", "DOCTRINE_IDE_ACCESS.md"}

needs_corpus = pytest.mark.skipif(not DOCS.is_dir(), reason="shared corpus not checked out")


class TestCorpusDocs:
    @needs_corpus
    def test_every_corpus_doc_header_is_read_leniently(self) -> None:
        """All 40 corpus docs are read without error; all but two have a header mapping."""
        docs = sorted(DOCS.glob("*.md"))
        assert len(docs) == 40
        for doc in docs:
            header = h.read_front_matter(doc.read_text(encoding="utf-8"), path=doc.name)
            assert header.findings == (), doc.name
            assert header.found is (doc.name not in NO_HEADER_DOCS), doc.name
            if header.found:
                assert isinstance(header.mapping.get("file", {}), dict)

    @needs_corpus
    def test_not_strict_docs_are_exactly_known_and_have_lines(self) -> None:
        """The docs reported as not strict YAML are all headered docs but two, each with a line."""
        not_strict = {}
        for doc in sorted(DOCS.glob("*.md")):
            header = h.read_front_matter(doc.read_text(encoding="utf-8"), path=doc.name)
            if header.strict_problem is not None:
                not_strict[doc.name] = header.strict_problem
        expected = {d.name for d in DOCS.glob("*.md")} - STRICT_DOCS - NO_HEADER_DOCS
        assert set(not_strict) == expected
        assert len(not_strict) == 36
        for name, problem in not_strict.items():
            assert problem.severity is Severity.WARNING
            assert problem.path == name
            assert isinstance(problem.line, int)
            assert problem.line >= 1
            assert problem.hint

    @needs_corpus
    def test_at_value_is_kept_as_text_and_reported_on_its_line(self) -> None:
        """`target: @everyone` reads as the text '@everyone'; the warning names its file line."""
        text = (DOCS / "AGENT_AWARENESS_DOCTRINE.md").read_text(encoding="utf-8")
        header = h.read_front_matter(text, path="a.md")
        assert header.mapping["dialog"]["target"] == "@everyone"
        assert header.strict_problem is not None
        line = header.strict_problem.line
        assert line is not None
        assert text.split("\n")[line - 1].strip() == "target: @everyone"

    @needs_corpus
    def test_missing_opening_fence_is_read_and_reported(self) -> None:
        """Front matter without its first '---' line is read, reported on line 1."""
        text = (DOCS / "CRITIQUE_INTEGRATION_PROTOCOL.md").read_text(encoding="utf-8")
        header = h.read_front_matter(text, path="c.md")
        assert header.mapping["file"]["title"] == "Critique Integration Protocol"
        assert header.strict_problem is not None
        assert header.strict_problem.line == 1


class TestFrontMatter:
    def test_strict_header_has_no_strict_problem(self) -> None:
        """A clean header is read, strict, with key lines."""
        header = h.read_front_matter("---\nid: a\ndepends_on: [b]\n---\nbody\n")
        assert header.mapping == {"id": "a", "depends_on": ["b"]}
        assert header.strict
        assert header.key_lines == {"id": 2, "depends_on": 3}

    def test_dates_stay_text(self) -> None:
        """Dates are not turned into date objects (headers round-trip as text)."""
        header = h.read_front_matter("---\nupdated: 2026-01-08\n---\n")
        assert header.mapping == {"updated": "2026-01-08"}

    def test_unclosed_front_matter_is_an_error_on_line_1(self) -> None:
        """A '---' never closed is an ERROR finding naming line 1."""
        header = h.read_front_matter("---\nid: a\n", path="x.md")
        (problem,) = header.findings
        assert (problem.severity, problem.path, problem.line) == (Severity.ERROR, "x.md", 1)

    def test_no_front_matter_is_fine(self) -> None:
        """A file without front matter has an empty header and no finding."""
        header = h.read_front_matter("# Title\n\ntext: with colon\n")
        assert (header.found, header.mapping, header.findings) == (False, {}, ())

    def test_value_with_colon_space_is_quoted_leniently(self) -> None:
        """An unquoted value containing ': ' is read whole, not strict, line named."""
        header = h.read_front_matter("---\na: 1\nmessage: note: more\n---\n")
        assert header.mapping["message"] == "note: more"
        assert header.strict_problem is not None
        assert header.strict_problem.line == 3

    def test_prose_line_inside_header_is_ignored_leniently(self) -> None:
        """A stray prose line in the header is skipped, with a warning naming it."""
        header = h.read_front_matter("---\na: 1\nJUST SOME WORDS\n---\n")
        assert header.mapping == {"a": 1}
        assert header.strict_problem is not None
        assert header.strict_problem.line == 3

    def test_broken_yaml_is_an_error_with_line(self) -> None:
        """YAML that no leniency explains is an ERROR naming the file line."""
        header = h.read_front_matter("---\na:\n   b: 1\n  c: 2\n---\n", path="x.md")
        (problem,) = header.findings
        assert problem.severity is Severity.ERROR
        assert problem.line == 4

    def test_header_must_be_a_mapping(self) -> None:
        """A list as header is an ERROR."""
        header = h.read_front_matter("---\n- a\n---\n")
        assert [f.code for f in header.findings] == ["header.not_mapping"]


class TestSafeYaml:
    def test_alias_and_anchor_are_rejected_with_line(self) -> None:
        """An anchor is refused, the finding naming its file line."""
        value, problems = yaml.load_yaml("a: 1\nb: &x 2\nc: *x\n", path="f", first_line=10)
        assert value is None
        (problem,) = problems
        assert problem.severity is Severity.ERROR
        assert problem.line == 11
        assert "anchor" in problem.message

    def test_alias_alone_is_rejected(self) -> None:
        """An alias to an undefined anchor is refused too."""
        value, problems = yaml.load_yaml("a: *x\n")
        assert value is None
        assert problems[0].severity is Severity.ERROR

    @pytest.mark.parametrize(
        "tag", ["!!python/object:os.system", "!!python/name:os.system", "!custom", "!!set"]
    )
    def test_custom_tags_are_rejected_with_line(self, tag: str) -> None:
        """Any tag beyond the core ones is refused, with its line, in strict and lenient mode."""
        for lenient in (True, False):
            value, problems = yaml.load_yaml(f"a: 1\nb: {tag} {{}}\n", lenient=lenient)
            assert value is None
            (problem,) = problems
            assert (problem.severity, problem.line) == (Severity.ERROR, 2)
            assert "tag" in problem.message

    def test_core_tags_are_allowed(self) -> None:
        """Explicit core tags such as !!str are fine."""
        value, problems = yaml.load_yaml("a: !!str 12\n")
        assert (value, problems) == ({"a": "12"}, ())

    def test_duplicate_keys_strict_error_lenient_warning(self) -> None:
        """Repeated keys: refused strictly; leniently the last wins with a warning."""
        _, strict = yaml.load_yaml("a: 1\na: 2\n", lenient=False)
        assert strict[0].severity is Severity.ERROR
        value, lenient = yaml.load_yaml("a: 1\na: 2\n")
        assert value == {"a": 2}
        assert lenient[0].severity is Severity.WARNING
        assert lenient[0].line == 2

    def test_at_values_are_only_accepted_leniently(self) -> None:
        """`@x` values fail strictly and are quoted leniently, also in lists and with comments."""
        text = "a: @x\nb:\n  - @y # note\n  - `z`\n"
        _, strict = yaml.load_yaml(text, lenient=False)
        assert strict[0].severity is Severity.ERROR
        value, problems = yaml.load_yaml(text)
        assert value == {"a": "@x", "b": ["@y", "`z`"]}
        assert problems[0].line == 1
        assert "lines repaired: 1, 3, 4" in problems[0].message

    def test_bom_and_crlf_are_accepted(self) -> None:
        """A BOM and CRLF line ends do not disturb reading or line numbers."""
        value, problems = yaml.load_yaml("\ufeffa: 1\r\nb: @x\r\n")
        assert value == {"a": 1, "b": "@x"}
        assert problems[0].line == 2


class TestSchema:
    def test_schema_ships_in_the_package(self) -> None:
        """The header schema loads from package data and allows extra keys."""
        schema = header_schema.header_schema()
        assert schema["additionalProperties"] is True
        assert set(header_schema.KNOWN_KEYS) <= set(schema["properties"])

    def test_valid_header_with_extra_keys_passes(self) -> None:
        """Known keys of the right types plus unknown keys give no finding."""
        mapping = {"id": "a", "depends_on": "b", "version": 4.1, "dialog": {"x": 1}}
        assert header_schema.validate_header(mapping) == ()

    def test_each_violation_names_field_line_and_hint(self) -> None:
        """Every bad field is reported on its own line with a hint."""
        header = h.read_front_matter("---\nid: 12\ntype: [x]\ndepends_on: [a, 3]\n---\n", path="f")
        assert [(f.line, f.code) for f in header.findings] == [
            (4, "header.schema"),
            (2, "header.schema"),
            (3, "header.schema"),
        ]
        assert all(f.hint for f in header.findings)
        assert "'id'" in header.findings[1].message


class TestSqlHeader:
    def test_key_lines_are_read(self) -> None:
        """`-- id:` and `-- depends_on: [a, b]` lines form the header."""
        text = "-- id: add_users\n-- depends_on: [a, b]\n-- version: 4.1\nCREATE TABLE t (a int);\n"
        header = h.read_sql_header(text)
        assert header.mapping == {"id": "add_users", "depends_on": ["a", "b"], "version": "4.1"}
        assert header.key_lines == {"id": 1, "depends_on": 2, "version": 3}

    def test_fenced_block_is_yaml(self) -> None:
        """A `-- ---` fenced block is read as YAML, any keys, lines kept."""
        text = "\n-- ---\n-- id: x\n-- tags:\n--   - a\n-- ---\nSELECT 1;\n"
        header = h.read_sql_header(text)
        assert header.mapping == {"id": "x", "tags": ["a"]}
        assert header.key_lines == {"id": 3, "tags": 4}

    def test_unclosed_fence_is_an_error(self) -> None:
        """A fenced block that runs into SQL is an ERROR naming the line."""
        header = h.read_sql_header("-- ---\n-- id: x\nSELECT 1;\n", path="a.sql")
        assert [(f.code, f.line) for f in header.findings] == [("header.unclosed", 3)]

    def test_prose_comments_are_not_a_header(self) -> None:
        """Legacy comments like `-- Version: 4.1.2` are prose, not header keys."""
        header = h.read_sql_header("-- Version: 4.1.2\n-- Purpose: x\nSELECT 1;\n")
        assert not header.found

    def test_duplicate_key_line_is_reported(self) -> None:
        """A repeated key line is an ERROR naming both lines."""
        header = h.read_sql_header("-- id: a\n-- id: b\n", path="a.sql")
        (problem,) = header.findings
        assert problem.line == 2
        assert "line 1" in problem.message

    def test_plain_word_list_is_text(self) -> None:
        """A flow list of plain words is a list of text, quickly, without YAML typing."""
        header = h.read_sql_header("-- depends_on: [1, yes, a.b/c]\n")
        assert header.mapping["depends_on"] == ["1", "yes", "a.b/c"]

    def test_bad_flow_value_is_reported(self) -> None:
        """A broken YAML list in a key line is an ERROR on that line."""
        header = h.read_sql_header("-- id: a\n-- depends_on: [a, &x b]\n", path="a.sql")
        assert [f.line for f in header.findings] == [2]


class TestPythonHeader:
    def test_migration_dict_is_read_without_executing(self) -> None:
        """MIGRATION is read by literal_eval; code around it never runs."""
        text = (
            "import os\nos.remove('/nope')\n"
            "MIGRATION = {\n    'id': 'm1',\n    'depends_on': ['a'],\n}\n"
        )
        header = h.read_python_header(text)
        assert header.mapping == {"id": "m1", "depends_on": ["a"]}
        assert header.key_lines == {"id": 4, "depends_on": 5}
        ast.parse(text)  # the text is valid Python: reading it did not need to run it

    def test_non_literal_is_an_error(self) -> None:
        """A MIGRATION that is not a literal dict is an ERROR with its line."""
        header = h.read_python_header("x = 1\nMIGRATION: dict = dict(id='a')\n", path="m.py")
        assert [(f.code, f.line) for f in header.findings] == [("header.python_literal", 2)]

    def test_syntax_error_is_reported(self) -> None:
        """A module that does not parse is an ERROR with the line."""
        header = h.read_python_header("def f(:\n", path="m.py")
        assert header.findings[0].line == 1

    def test_module_without_migration_has_no_header(self) -> None:
        """No MIGRATION assignment means no header."""
        assert not h.read_python_header("def up(ctx):\n    pass\n").found


class TestYamlDocument:
    def test_migration_key_is_the_header(self) -> None:
        """A record file's top-level `migration` mapping is its header."""
        header = h.read_header("name: x\nmigration:\n  id: agent1\n", suffix=".yaml")
        assert header.mapping == {"id": "agent1"}
        assert header.line == 2

    def test_json_record_without_migration_has_no_header(self) -> None:
        """A JSON record without `migration` has no header and no finding."""
        header = h.read_header('{"name": "x"}', suffix=".json")
        assert (header.found, header.findings) == (False, ())


class TestChecksum:
    def test_bom_crlf_and_cr_variants_have_the_lf_checksum(self) -> None:
        """Text, bytes, BOM, CRLF and CR variants of one content share one checksum."""
        lf = _names.checksum("a\nb\n")
        assert _names.checksum("\ufeffa\r\nb\r\n") == lf
        assert _names.checksum(b"\xef\xbb\xbfa\r\nb\r\n") == lf
        assert _names.checksum(b"a\rb\r") == lf
        assert _names.checksum("a\nb") != lf
        assert len(lf) == 64

    def test_decode_reports_offset_and_line(self) -> None:
        """Non-UTF-8 bytes give a finding with the byte offset and line."""
        text, problem = _names.decode(b"ok\nbad \xff here\n", path="x.sql")
        assert text is None
        assert problem is not None
        assert (problem.path, problem.line) == ("x.sql", 2)
        assert "offset 7" in problem.message


class TestNames:
    @pytest.mark.parametrize(
        ("relpath", "suffix", "expected"),
        [
            ("V1__add_users.sql", ".sql", ("V1__add_users", "1", "up")),
            ("V1_2__x.sql", ".sql", ("V1_2__x", "1.2", "up")),
            ("U1__add_users.sql", ".sql", ("V1__add_users", "1", "down")),
            ("1_x.up.sql", ".sql", ("1_x", "1", "up")),
            ("1_x.down.sql", ".sql", ("1_x", "1", "down")),
            ("4.1.2_clarify.sql", ".sql", ("4.1.2_clarify", "4.1.2", "up")),
            ("4_1_1_create_help.sql", ".sql", ("4_1_1_create_help", "4.1.1", "up")),
            ("20260120_drop.sql", ".sql", ("20260120_drop", "20260120", "up")),
            ("sub/dir/notes.md", ".md", ("sub/dir/notes", "", "up")),
            ("plain", None, ("plain", "", "up")),
        ],
    )
    def test_names_give_id_version_kind(
        self, relpath: str, suffix: str | None, expected: tuple[str, str, str]
    ) -> None:
        """Flyway, up/down pairs, dotted, underscored and dated names are understood."""
        info = _names.parse_name(relpath, suffix)
        assert (info.id, info.version, info.kind) == expected


class TestVersionKey:
    @pytest.mark.parametrize(
        ("low", "high"),
        [
            ("V2", "V10"),
            ("4.1.2", "4.1.10"),
            ("4.1", "4.1.0"),
            ("4.1.17", "20260120"),
            ("1.0", "1.0a"),
            ("", "0"),
            ("4_1_1", "4.1.2"),
        ],
    )
    def test_order_is_natural(self, low: str, high: str) -> None:
        """Versions compare numerically part by part."""
        assert _names.version_key(low) < _names.version_key(high)

    def test_separators_do_not_matter(self) -> None:
        """4_1_1, 4.1.1, v4.1.1 and 4-1-1 are the same version."""
        keys = {_names.version_key(v) for v in ("4_1_1", "4.1.1", "v4.1.1", "4-1-1")}
        assert len(keys) == 1


class TestManifest:
    def test_plain_list_chains(self) -> None:
        """A plain list is a chain of files in order."""
        manifest, problems = _manifest.parse_manifest("- a.sql\n- b.sql\n")
        assert problems == ()
        assert manifest.chain
        assert [e.file for e in manifest.entries] == ["a.sql", "b.sql"]
        assert [e.line for e in manifest.entries] == [1, 2]

    def test_mapping_with_fields_and_depends(self) -> None:
        """Entries may carry depends_on and header fields; chain may be turned off."""
        text = (
            "chain: false\nsteps:\n  - file: a.sql\n    version: '1'\n"
            "  - {file: b.sql, depends_on: a}\n"
        )
        manifest, problems = _manifest.parse_manifest(text)
        assert problems == ()
        assert not manifest.chain
        first, second = manifest.entries
        assert (first.fields, first.depends_on) == ({"version": "1"}, None)
        assert second.depends_on == ("a",)
        assert second.line == 5

    @pytest.mark.parametrize("bad", ["../x.sql", "a/../../x.sql", "/etc/passwd", "C:/x.sql"])
    def test_traversal_is_rejected_with_line(self, bad: str) -> None:
        """Absolute paths and '..' are refused, naming the manifest line."""
        manifest, problems = _manifest.parse_manifest(
            f"steps:\n  - ok.sql\n  - {bad!r}\n", path="m.yaml"
        )
        assert [e.file for e in manifest.entries] == ["ok.sql"]
        (problem,) = problems
        assert (problem.code, problem.path, problem.line) == ("manifest.path", "m.yaml", 3)

    def test_bad_shapes_are_reported(self) -> None:
        """A manifest without a list, or with odd entries, gives findings."""
        _, problems = _manifest.parse_manifest("steps: 3\n")
        assert problems[0].code == "manifest.format"
        _, problems = _manifest.parse_manifest(
            "- 3\n- {file: a.sql, depends_on: 4}\n- {file: b, id: 5}\n"
        )
        assert [p.line for p in problems] == [1, 2, 3]


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "type", "depends_on", "version", "module", "description", "down", "other"]
        ),
        _VALUES,
    )
)
def test_the_quick_header_check_never_accepts_what_the_schema_refuses(
    mapping: dict[str, object],
) -> None:
    """validate_header skips jsonschema for plainly valid headers: those must be valid."""
    from lupo_migrate.files.header_schema import _plainly_valid, _validator

    if _plainly_valid(mapping):
        assert list(_validator().iter_errors(mapping)) == []
