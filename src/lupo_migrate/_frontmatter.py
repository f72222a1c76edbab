"""Header edits of text files that keep every other byte (functional core: no I/O).

Documentation steps set, rename, add or remove fields of a file's header and must leave the
rest of the file exactly as it was: the prose, the other fields, their quoting, comments, line
ends (LF or CRLF) and a BOM. The header is parsed with the safe, lenient YAML reader of
:mod:`lupo_migrate._yaml`, whose node marks say where each key and value sits; an edit
replaces those characters only, then the header is parsed again and must read as before except
for the edited field (else the edit is refused, nothing written).

Header formats
--------------

``markdown``
    YAML front matter between a first line ``---`` and a line ``---`` or ``...`` (also the
    lenient form without the opening line, as :func:`lupo_migrate._headers.read_front_matter`).
``php``
    A docblock (``/** ... */``, on the first lines, after ``<?php``) whose lines, without their
    leading `` * ``, are YAML; ``---`` lines inside it are fences.
``json``
    The whole file: a JSON object (read as YAML flow, which JSON is, so marks work too).

Field paths
-----------

``file.last_modified_system_version`` names a literal top-level key with dots in it where
there is one (the WOLFIE headers have such keys), else the key ``last_modified_system_version``
inside the mapping ``file``: at each level the longest literal key wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import yaml

from lupo_migrate._names import version_key
from lupo_migrate._yaml import load_document

__all__ = [
    "FORMATS",
    "Change",
    "HeaderEditError",
    "Operations",
    "edit_header",
    "format_of",
    "header_mapping",
    "is_stamp",
    "read_header_value",
    "regressed",
]

#: Header formats, picked from the file name by :func:`format_of`.
FORMATS: Final = ("markdown", "php", "json")
_BOM: Final = "\ufeff"
_KEY_LINE: Final = re.compile(r"^[A-Za-z_][\w.\-]*:(?:[ \t]|$)")
_PHP_PREFIX: Final = re.compile(r"^[ \t]*\*(?:[ \t]|$)")
_FENCE_LIMIT: Final = 500
#: Header fields whose values are modification stamps (or versions) that must not go back.
_STAMP: Final = re.compile(r"(last_modified|modified|updated|timestamp|_ymdhis)", re.IGNORECASE)


class HeaderEditError(ValueError):
    """An edit that cannot be made byte-preservingly; nothing is changed.

    Attributes:
        line: the 1-based file line concerned, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@attrs.frozen(kw_only=True)
class Operations:
    """What a documentation step does to each file's header.

    Attributes:
        set: field path -> value, where the field exists.
        add: field path -> value, set where it exists and added where it does not.
        rename: field path -> new key (same place).
        remove: field paths to drop.
    """

    set: Mapping[str, Any] = attrs.field(factory=dict)
    add: Mapping[str, Any] = attrs.field(factory=dict)
    rename: Mapping[str, str] = attrs.field(factory=dict)
    remove: Sequence[str] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field path these operations name."""
        return (*self.rename, *self.remove, *self.set, *self.add)


@attrs.frozen(kw_only=True)
class Change:
    """One field changed in one file.

    Attributes:
        field: the field path as the operation named it.
        action: ``set``, ``add``, ``rename`` or ``remove``.
        old: the value before (None when added).
        new: the value after (None when removed; the new key for a rename).
        line: the 1-based file line of the field.
    """

    field: str
    action: str
    old: Any
    new: Any
    line: int


def format_of(path: str) -> str:
    """The header format of a file by its name: ``.php`` -> php, ``.json`` -> json, else
    markdown (front matter)."""
    lower = path.lower()
    if lower.endswith((".php", ".phtml", ".inc")):
        return "php"
    if lower.endswith(".json"):
        return "json"
    return "markdown"


def is_stamp(field: str) -> bool:
    """Whether *field* holds a modification stamp or version that must only move forward."""
    return bool(_STAMP.search(field.rpartition(".")[2] or field))


def regressed(old: Any, new: Any) -> bool:
    """Whether the stamp *new* comes before *old* (versions and numbers compare naturally)."""
    if old is None or new is None:
        return False
    return version_key(str(new)) < version_key(str(old))


# ------------------------------------------------------------------------- locating headers


@attrs.frozen
class _Block:
    """The header's lines as parsed: content line i is file line ``first + i``."""

    first: int
    content: tuple[str, ...]
    offsets: tuple[int, ...]
    prefixes: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.content)


def _lines(text: str) -> tuple[list[str], list[str]]:
    """The file's lines without their ends, and the ends (``\\n``, ``\\r\\n`` or ``""``)."""
    raw = text.split("\n")
    lines: list[str] = []
    ends: list[str] = []
    for index, line in enumerate(raw):
        last = index == len(raw) - 1
        if line.endswith("\r"):
            lines.append(line[:-1])
            ends.append("\r" if last else "\r\n")
        else:
            lines.append(line)
            ends.append("" if last else "\n")
    return lines, ends


def _locate(lines: Sequence[str], fmt: str) -> _Block | None:
    if fmt == "json":
        return _Block(0, tuple(lines), (0,) * len(lines), ("",) * len(lines))
    if fmt == "php":
        return _locate_php(lines)
    head = lines[:_FENCE_LIMIT]
    if head and head[0].rstrip() == "---":
        for index in range(1, len(head)):
            if head[index].rstrip() in ("---", "..."):
                body = tuple(head[1:index])
                return _Block(1, body, (0,) * len(body), ("",) * len(body))
        raise HeaderEditError("front matter opened by '---' on line 1 is never closed", 1)
    if head and _KEY_LINE.match(head[0]):
        for index in range(1, len(head)):
            if head[index].rstrip() == "---":
                body = tuple(head[:index])
                return _Block(0, body, (0,) * len(body), ("",) * len(body))
    return None


def _locate_php(lines: Sequence[str]) -> _Block | None:
    start = None
    for index, line in enumerate(lines[:6]):
        if line.lstrip().startswith("/*"):
            start = index
            break
    if start is None:
        return None
    content: list[str] = []
    offsets: list[int] = []
    prefixes: list[str] = []
    for line in lines[start + 1 : start + _FENCE_LIMIT]:
        if "*/" in line:
            return _Block(start + 1, tuple(content), tuple(offsets), tuple(prefixes))
        match = _PHP_PREFIX.match(line)
        prefix = match.group(0) if match else ""
        rest = line[len(prefix) :]
        content.append("" if rest.strip() == "---" else rest)
        offsets.append(len(prefix))
        prefixes.append(prefix or " * ")
    raise HeaderEditError(f"the docblock opened on line {start + 1} is never closed", start + 1)


def _parse(block: _Block, path: str) -> tuple[dict[str, Any], yaml.MappingNode]:
    loaded = load_document(block.text, path=path, first_line=block.first + 1, lenient=True)
    if loaded.error is not None:
        raise HeaderEditError(loaded.error.message, loaded.error.line)
    if not isinstance(loaded.value, dict) or not isinstance(loaded.node, yaml.MappingNode):
        raise HeaderEditError("the header is not a mapping of fields", block.first + 1)
    return loaded.value, loaded.node


# ----------------------------------------------------------------------------- field paths


@attrs.frozen
class _Found:
    keys: tuple[str, ...]  # the literal keys walked, outermost first
    key: yaml.ScalarNode
    value: yaml.Node
    parent: yaml.MappingNode


def _resolve(node: yaml.MappingNode, parts: Sequence[str]) -> _Found | None:
    """The key/value nodes at *parts*: at each level the longest literal key wins."""
    for size in range(len(parts), 0, -1):
        wanted = ".".join(parts[:size])
        for key, value in reversed(node.value):  # the last of repeated keys wins
            if isinstance(key, yaml.ScalarNode) and key.value == wanted:
                if size == len(parts):
                    return _Found((wanted,), key, value, node)
                if isinstance(value, yaml.MappingNode):
                    inner = _resolve(value, parts[size:])
                    if inner is not None:
                        return attrs.evolve(inner, keys=(wanted, *inner.keys))
                break
    return None


def _parent(
    node: yaml.MappingNode, parts: Sequence[str]
) -> tuple[yaml.MappingNode, str, tuple[str, ...]]:
    """Where an absent field *parts* would be added: the deepest existing mapping along it,
    the key to add there, and the keys walked."""
    for size in range(len(parts) - 1, 0, -1):
        found = _resolve(node, parts[:size])
        if found is not None and isinstance(found.value, yaml.MappingNode):
            return found.value, ".".join(parts[size:]), found.keys
    return node, ".".join(parts), ()


def read_header_value(text: str, path: str, field: str) -> tuple[bool, Any]:
    """``(present, value)`` of *field* in the header of *text* (no header: absent).

    Raises:
        HeaderEditError: the header cannot be read.
    """
    lines, _ = _lines(text[1:] if text.startswith(_BOM) else text)
    block = _locate(lines, format_of(path))
    if block is None:
        return False, None
    value, node = _parse(block, path)
    found = _resolve(node, field.split("."))
    if found is None:
        return False, None
    return True, _get(value, found.keys)


def header_mapping(text: str, path: str, fmt: str | None = None) -> dict[str, Any]:
    """The header of *text* as read (empty when there is none or it does not read)."""
    lines, _ = _lines(text[1:] if text.startswith(_BOM) else text)
    try:
        block = _locate(lines, fmt or format_of(path))
        return {} if block is None else _parse(block, path)[0]
    except HeaderEditError:
        return {}


def _get(mapping: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        mapping = mapping[key]
    return mapping


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


# ---------------------------------------------------------------------------------- editing


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


def edit_header(
    text: str, *, path: str, operations: Operations, fmt: str | None = None
) -> tuple[str, tuple[Change, ...]]:
    """*text* with *operations* applied to its header, every other character kept.

    A file without the fields named (or without a header) comes back unchanged with no
    changes; ``add`` needs a header.

    Raises:
        HeaderEditError: an edit cannot be made without touching other bytes, or the header
            would then read differently from what the operations say; the message names the
            line and what to do.
    """
    doc = _Doc.of(text, fmt or format_of(path), path)
    if _locate(doc.lines, doc.fmt) is None:
        if operations.add:
            raise HeaderEditError("the file has no header to add fields to; give it one")
        return text, ()
    changes: list[Change] = []
    for field, new_key in operations.rename.items():
        changes += _rename(doc, field, new_key)
    for field in operations.remove:
        changes += _remove(doc, field)
    for field, value in operations.set.items():
        changes += _set(doc, field, value, add=False)
    for field, value in operations.add.items():
        changes += _set(doc, field, value, add=True)
    return doc.text, tuple(changes)


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


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _set(doc: _Doc, field: str, value: Any, *, add: bool) -> list[Change]:
    block, before, node = doc.parsed()
    parts = field.split(".")
    found = _resolve(node, parts)
    if found is None:
        return _add(doc, block, before, node, field, value) if add else []
    old = _get(before, found.keys)
    if old == value and type(old) is type(value):
        return []
    line, first, last = doc.span(block, found.value)
    style = found.value.style if isinstance(found.value, yaml.ScalarNode) else None
    saved = doc.snapshot()
    doc.replace(line, first, last, _render(value, fmt=doc.fmt, style=style))
    expected = _copy(before)
    _get(expected, found.keys[:-1])[found.keys[-1]] = value
    doc.settle(saved, expected, line + 1)
    return [Change(field=field, action="add" if add else "set", old=old, new=value, line=line + 1)]


def _add(
    doc: _Doc,
    block: _Block,
    before: dict[str, Any],
    node: yaml.MappingNode,
    field: str,
    value: Any,
) -> list[Change]:
    parent, key, keys = _parent(node, field.split("."))
    if doc.fmt == "json":
        if keys or not parent.value:
            raise HeaderEditError(f"cannot add {field!r}: only top-level fields are added to JSON")
        last_key, last_value = parent.value[-1]
        line = block.first + last_value.end_mark.line
        column = block.offsets[last_value.end_mark.line] + last_value.end_mark.column
        indent = " " * (block.offsets[last_key.start_mark.line] + last_key.start_mark.column)
        rendered = (
            f"{json.dumps(key, ensure_ascii=False)}: {_render(value, fmt='json', style=None)}"
        )
        saved = doc.snapshot()
        rest, ended = doc.lines[line][column:], doc.ends[line]
        doc.lines[line] = doc.lines[line][:column] + ","
        doc.insert(line + 1, indent + rendered + rest)
        doc.ends[line] = next((end for end in doc.ends if end), "\n")
        doc.ends[line + 1] = ended
    else:
        if parent.flow_style:
            raise HeaderEditError(f"cannot add {field!r} inside a flow mapping {{...}}")
        if parent is node:
            at = block.first + len(block.content)
            while at > block.first and not doc.lines[at - 1].strip():
                at -= 1
            indent = ""
        else:
            end = parent.end_mark
            at = block.first + end.line + (1 if end.column else 0)
            first_key = parent.value[0][0]
            indent = " " * first_key.start_mark.column
        prefix = (
            block.prefixes[min(max(at - block.first - 1, 0), len(block.prefixes) - 1)]
            if doc.fmt == "php"
            else ""
        )
        saved = doc.snapshot()
        rendered = _render(value, fmt=doc.fmt, style=None)
        doc.insert(at, f"{prefix}{indent}{_render_key(key, doc.fmt)}: {rendered}")
        line = at
    expected = _copy(before)
    _get(expected, keys)[key] = value
    doc.settle(saved, expected, line + 1)
    return [Change(field=field, action="add", old=None, new=value, line=line + 1)]


def _rename(doc: _Doc, field: str, new_key: str) -> list[Change]:
    block, before, node = doc.parsed()
    found = _resolve(node, field.split("."))
    if found is None:
        return []
    line, first, last = doc.span(block, found.key)
    saved = doc.snapshot()
    doc.replace(line, first, last, _render_key(new_key, doc.fmt))
    expected = _copy(before)
    holder = _get(expected, found.keys[:-1])
    renamed = {(new_key if k == found.keys[-1] else k): v for k, v in holder.items()}
    holder.clear()
    holder.update(renamed)
    doc.settle(saved, expected, line + 1)
    return [Change(field=field, action="rename", old=found.keys[-1], new=new_key, line=line + 1)]


def _remove(doc: _Doc, field: str) -> list[Change]:
    block, before, node = doc.parsed()
    found = _resolve(node, field.split("."))
    if found is None:
        return []
    if doc.fmt == "json" or found.parent.flow_style:
        raise HeaderEditError(
            f"cannot remove {field!r} from a JSON or flow mapping byte-preservingly;"
            " set it to null instead"
        )
    first = block.first + found.key.start_mark.line
    end = found.value.end_mark
    last = block.first + (end.line if end.column else end.line - 1)
    if doc.lines[first][
        : block.offsets[found.key.start_mark.line] + found.key.start_mark.column
    ].strip():
        raise HeaderEditError(f"cannot remove {field!r}: other text shares its line", first + 1)
    old = _get(before, found.keys)
    saved = doc.snapshot()
    del doc.lines[first : last + 1]
    del doc.ends[first : last + 1]
    expected = _copy(before)
    del _get(expected, found.keys[:-1])[found.keys[-1]]
    doc.settle(saved, expected, first + 1)
    return [Change(field=field, action="remove", old=old, new=None, line=first + 1)]
