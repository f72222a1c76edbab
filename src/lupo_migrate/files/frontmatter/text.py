"""The file being edited and values rendered as header text (functional core: no I/O).

Apart from :mod:`lupo_migrate.files.frontmatter.edit`, which decides what each operation changes,
this
module holds how a change is made without touching other bytes: :class:`_Doc` keeps the file
as lines, their ends (LF or CRLF) and a BOM, finds the characters of a one-line key or value,
replaces or inserts lines, and keeps an edit only if the header then reads as expected;
:func:`_render` and :func:`_render_key` write a value or key the way YAML (or JSON) reads back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import yaml

from lupo_migrate.files.frontmatter.blocks import (
    _BOM,
    HeaderEditError,
    _Block,
    _lines,
    _locate,
    _parse,
)

# ------------------------------------------------------------------------------- rendering


def _reads_back(text: str, value: Any) -> bool:
    try:
        return bool(yaml.safe_load(f"k: {text}") == {"k": value})
    except yaml.YAMLError:
        return False


def _render(value: Any, *, fmt: str, style: str | None) -> str:
    if fmt == "json" or isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and value == value.strip() and "\n" not in value and _reads_back(value, value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _render_key(key: str, fmt: str) -> str:
    if fmt != "json" and re.fullmatch(r"[A-Za-z_][\w.\-]*", key) and _reads_back(key, key):
        return key
    return json.dumps(key, ensure_ascii=False)


# -------------------------------------------------------------------------- the edited file


@attrs.define
class _Doc:
    """A file being edited: its lines and line ends, and whether it had a BOM."""

    lines: list[str]
    ends: list[str]
    bom: bool
    fmt: str
    path: str

    @classmethod
    def of(cls, text: str, fmt: str, path: str) -> _Doc:
        bom = text.startswith(_BOM)
        lines, ends = _lines(text[1:] if bom else text)
        return cls(lines, ends, bom, fmt, path)

    @property
    def text(self) -> str:
        body = "".join(line + end for line, end in zip(self.lines, self.ends, strict=True))
        return (_BOM if self.bom else "") + body

    def parsed(self) -> tuple[_Block, dict[str, Any], yaml.MappingNode]:
        block = _locate(self.lines, self.fmt)
        if block is None:
            raise HeaderEditError("the file has no header")
        value, node = _parse(block, self.path)
        return block, value, node

    def span(self, block: _Block, node: yaml.Node) -> tuple[int, int, int]:
        """File line index and columns of a one-line *node*, checked against the file."""
        start, end = node.start_mark, node.end_mark
        line = block.first + start.line
        if end.line != start.line:
            raise HeaderEditError(
                "the value spans several lines; only one-line values are edited", line + 1
            )
        first = block.offsets[start.line] + start.column
        last = block.offsets[start.line] + end.column
        shown = self.lines[line][first:last]
        if isinstance(node, yaml.ScalarNode):
            style = node.style
            ok = shown == node.value if style is None else shown[:1] == shown[-1:] == style
        else:
            ok = shown[:1] in "[{"
        if not ok:
            raise HeaderEditError(
                f"the field's text {shown!r} is not where the header says (a line the lenient"
                " reader repaired); quote its value in the file first",
                line + 1,
            )
        return line, first, last

    def snapshot(self) -> tuple[list[str], list[str]]:
        """The lines and ends as they are (see :meth:`settle`)."""
        return list(self.lines), list(self.ends)

    def settle(
        self, saved: tuple[list[str], list[str]], expected: dict[str, Any], line: int
    ) -> None:
        """Keep the edit if the header now reads as *expected*; else put *saved* back and
        raise :class:`HeaderEditError` naming *line*."""
        try:
            _checked(self, expected, line)
        except HeaderEditError:
            self.lines, self.ends = saved
            raise

    def replace(self, line: int, first: int, last: int, text: str) -> None:
        self.lines[line] = self.lines[line][:first] + text + self.lines[line][last:]

    def insert(self, at: int, text: str) -> None:
        """A new line *text* before line *at*, ended like the file's other lines."""
        newline = next((end for end in self.ends if end), "\n")
        if at > 0 and not self.ends[at - 1]:  # after a last line without an end
            self.ends[at - 1] = newline
            newline = ""
        self.lines.insert(at, text)
        self.ends.insert(at, newline)


def _checked(doc: _Doc, expected: dict[str, Any], line: int) -> None:
    """The header, parsed again, must be *expected*; else the edit is refused."""
    try:
        _, after, _ = doc.parsed()
    except HeaderEditError as error:
        raise HeaderEditError(f"the edited header no longer reads: {error}", line) from None
    if after != expected:
        raise HeaderEditError(
            "the edited header would read differently beyond the field changed;"
            " the file is left as it was",
            line,
        )
