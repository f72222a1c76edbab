"""Header edits of text files that keep every other byte (functional core: no I/O).

Documentation steps set, rename, add or remove fields of a file's header and must leave the
rest of the file exactly as it was: the prose, the other fields, their quoting, comments, line
ends (LF or CRLF) and a BOM. The header is parsed with the safe, lenient YAML reader of
:mod:`lupo_migrate.files.yaml`, whose node marks say where each key and value sits; an edit
replaces those characters only, then the header is parsed again and must read as before except
for the edited field (else the edit is refused, nothing written).

Layout
------

This module holds the edit operations (:class:`Operations`, :func:`edit_header`, what each of
``set``, ``add``, ``rename`` and ``remove`` changes) and the stamp rules (:func:`is_stamp`,
:func:`regressed`). Finding and reading the header, with the header formats (``markdown``
front matter, ``php`` docblock, ``json``) and the field paths (``file.version``: at each
level the longest literal key wins), is :mod:`lupo_migrate.files.frontmatter.blocks`; the file
being edited and the rendering of values as header text is
:mod:`lupo_migrate.files.frontmatter.text`. The reading names (:data:`FORMATS`,
:class:`HeaderEditError`, :func:`format_of`, :func:`header_mapping`,
:func:`read_header_value`) are re-exported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import yaml

from lupo_migrate.core.names import version_key
from lupo_migrate.files.frontmatter.blocks import (
    FORMATS,
    HeaderEditError,
    _Block,
    _get,
    _locate,
    _parent,
    _resolve,
    format_of,
    header_mapping,
    read_header_value,
)
from lupo_migrate.files.frontmatter.text import _Doc, _render, _render_key

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

#: Header fields whose values are modification stamps (or versions) that must not go back.
_STAMP: Final = re.compile(r"(last_modified|modified|updated|timestamp|_ymdhis)", re.IGNORECASE)


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


def is_stamp(field: str) -> bool:
    """Whether *field* holds a modification stamp or version that must only move forward."""
    return bool(_STAMP.search(field.rpartition(".")[2] or field))


def regressed(old: Any, new: Any) -> bool:
    """Whether the stamp *new* comes before *old* (versions and numbers compare naturally)."""
    if old is None or new is None:
        return False
    return version_key(str(new)) < version_key(str(old))


# ---------------------------------------------------------------------------------- editing


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
