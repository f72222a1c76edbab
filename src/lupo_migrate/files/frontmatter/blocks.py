"""Finding a text file's header and reading it (functional core: no I/O).

Apart from the edits of :mod:`lupo_migrate.files.frontmatter.edit` because reading needs none of
them:
:func:`read_header_value` and :func:`header_mapping` answer from here, and the editor locates,
parses and walks the header with the same functions, so an edit touches the header they read.
The header is parsed with the safe, lenient YAML reader of :mod:`lupo_migrate.files.yaml`, whose
node marks say where each key and value sits.

Header formats
--------------

``markdown``
    YAML front matter between a first line ``---`` and a line ``---`` or ``...`` (also the
    lenient form without the opening line, as :func:`lupo_migrate.files.headers.read_front_matter`,
    whose :data:`~lupo_migrate.files.headers_yaml._KEY_LINE` and line limit are used here).
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

import re
from collections.abc import Sequence
from typing import Any, Final

import attrs
import yaml

from lupo_migrate.files.headers_yaml import _FENCE_LIMIT, _KEY_LINE
from lupo_migrate.files.yaml import load_document

__all__ = ["FORMATS", "HeaderEditError", "format_of", "header_mapping", "read_header_value"]

#: Header formats, picked from the file name by :func:`format_of`.
FORMATS: Final = ("markdown", "php", "json")
_BOM: Final = "\ufeff"
_PHP_PREFIX: Final = re.compile(r"^[ \t]*\*(?:[ \t]|$)")


class HeaderEditError(ValueError):
    """An edit that cannot be made byte-preservingly; nothing is changed.

    Attributes:
        line: the 1-based file line concerned, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def format_of(path: str) -> str:
    """The header format of a file by its name: ``.php`` -> php, ``.json`` -> json, else
    markdown (front matter)."""
    lower = path.lower()
    if lower.endswith((".php", ".phtml", ".inc")):
        return "php"
    if lower.endswith(".json"):
        return "json"
    return "markdown"


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
