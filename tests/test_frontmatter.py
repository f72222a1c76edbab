"""Byte-preserving header edits (the functional core of the documentation handler)."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import CORPUS, needs_corpus
from lupo_migrate.files.frontmatter.edit import (
    HeaderEditError,
    Operations,
    edit_header,
    header_mapping,
    is_stamp,
    read_header_value,
    regressed,
)

VERSION = "file.last_modified_system_version"


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.split("\n"), after.split("\n"), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@needs_corpus
def test_setting_a_field_in_the_corpus_changes_only_its_value() -> None:
    """Every corpus document with the field differs from the original in that value only."""
    edited = 0
    for path in sorted((CORPUS / "docs").glob("*.md")):
        text = path.read_bytes().decode("utf-8")
        present, old = read_header_value(text, path.name, VERSION)
        new, changes = edit_header(
            text, path=path.name, operations=Operations(set={VERSION: "4.1.0"})
        )
        if not present:
            assert (new, changes) == (text, ())
            continue
        edited += 1
        diff = changed_lines(text, new)
        assert diff == [f"-{VERSION}: {old}", f"+{VERSION}: 4.1.0"], path.name
        assert len(new) == len(text) - len(str(old)) + len("4.1.0")
        before, after = header_mapping(text, path.name), header_mapping(new, path.name)
        assert after == {**before, VERSION: "4.1.0"}
    assert edited == 38


def test_crlf_and_a_bom_are_kept_and_values_keep_their_quotes() -> None:
    text = "\ufeff---\r\nid: x\r\nv: \"1.0\"\r\nw: 'a'\r\n---\r\nbody\r\n"
    new, _ = edit_header(text, path="a.md", operations=Operations(set={"v": "2.0", "w": "it's"}))
    assert new == "\ufeff---\r\nid: x\r\nv: \"2.0\"\r\nw: 'it''s'\r\n---\r\nbody\r\n"
    added, _ = edit_header(text, path="a.md", operations=Operations(add={"z": 3}))
    assert added == "\ufeff---\r\nid: x\r\nv: \"1.0\"\r\nw: 'a'\r\nz: 3\r\n---\r\nbody\r\n"


def test_a_plain_value_that_would_read_as_another_type_is_quoted() -> None:
    text = "---\nv: 4.1.6\n---\n"
    new, _ = edit_header(text, path="a.md", operations=Operations(set={"v": "4.1"}))
    assert new == '---\nv: "4.1"\n---\n'
    assert header_mapping(new, "a.md") == {"v": "4.1"}


def test_rename_remove_and_nested_add() -> None:
    text = "---\nfile:\n  title: T\n  version: 1\ntags:\n  - a\n  - b\nlast: x\n---\nprose\n"
    new, changes = edit_header(
        text,
        path="a.md",
        operations=Operations(
            rename={"file.title": "name"}, remove=["tags"], add={"file.by": "me"}
        ),
    )
    assert new == "---\nfile:\n  name: T\n  version: 1\n  by: me\nlast: x\n---\nprose\n"
    assert [c.action for c in changes] == ["rename", "remove", "add"]


def test_php_docblock_and_json_headers() -> None:
    php = "<?php\n/**\n * wolfie.headers: x\n * v: 4.0.1\n * tags:\n *   a: 1\n */\necho 1;\n"
    new, _ = edit_header(
        php, path="x.php", operations=Operations(set={"v": "4.1.0"}, add={"tags.b": 2})
    )
    assert new == php.replace("4.0.1", "4.1.0").replace(" *   a: 1\n", " *   a: 1\n *   b: 2\n")
    meta = '{\n    "status":  "uninitialized",\n    "version":  "1.0.0"\n}'
    new, _ = edit_header(
        meta, path="m.json", operations=Operations(set={"status": "ready"}, add={"owner": "ops"})
    )
    assert new == '{\n    "status":  "ready",\n    "version":  "1.0.0",\n    "owner": "ops"\n}'


def test_edits_that_would_touch_other_bytes_are_refused_with_the_line() -> None:
    text = "---\nid: x\ntarget: @everyone\nlong: >\n  folded\n  text\n---\n"
    with pytest.raises(HeaderEditError, match="quote its value") as caught:
        edit_header(text, path="a.md", operations=Operations(set={"target": "@all"}))
    assert caught.value.line == 3
    with pytest.raises(HeaderEditError, match="spans several lines") as caught:
        edit_header(text, path="a.md", operations=Operations(set={"long": "short"}))
    assert caught.value.line == 4
    with pytest.raises(HeaderEditError, match="no header to add"):
        edit_header("just prose\n", path="a.md", operations=Operations(add={"v": 1}))
    with pytest.raises(HeaderEditError, match="never closed"):
        edit_header("---\nv: 1\n", path="a.md", operations=Operations(set={"v": 2}))


def test_a_literal_dotted_key_wins_over_the_nested_path() -> None:
    text = f"---\n{VERSION}: 4.1.6\nfile:\n  last_modified_system_version: 9\n---\n"
    new, _ = edit_header(text, path="a.md", operations=Operations(set={VERSION: "5"}))
    assert new == f'---\n{VERSION}: "5"\nfile:\n  last_modified_system_version: 9\n---\n'


def test_stamps_and_regressions() -> None:
    assert is_stamp(VERSION)
    assert is_stamp("file.updated")
    assert not is_stamp("file.title")
    assert regressed("4.1.6", "4.1.0")
    assert not regressed("4.1.0", "4.1.10")
    assert regressed("20260120101010", "20250101000000")
    assert not regressed(None, "1")


_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    st.integers(-1000, 10**12),
    st.booleans(),
    st.none(),
    st.sampled_from(["4.1.0", "@all", "a: b", "# no", "'q'", '"dq"', "yes", "0x1F", "1e3"]),
)


@given(value=_VALUES, style=st.sampled_from(["plain", "'x'", '"x"']), crlf=st.booleans())
def test_any_value_set_reads_back_and_nothing_else_changes(
    value: object, style: str, crlf: bool
) -> None:
    """Whatever the value, the header reads back with it, and the other lines are intact."""
    old = {"plain": "x", "'x'": "'x'", '"x"': '"x"'}[style]
    end = "\r\n" if crlf else "\n"
    text = end.join(["---", "a: 1", f"v: {old}", "b: [1, 2]", "---", "body", ""])
    new, _ = edit_header(text, path="a.md", operations=Operations(set={"v": value}))
    assert header_mapping(new, "a.md") == {"a": 1, "v": value, "b": [1, 2]}
    kept = [line for line in new.split(end) if not line.startswith("v: ")]
    assert kept == [line for line in text.split(end) if not line.startswith("v: ")]
