"""Manifests: the order and dependencies of files without headers (functional core: no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core.model import Finding
from lupo_migrate.core.names import normalise
from lupo_migrate.files.header_schema import error_finding, validate_header

if TYPE_CHECKING:
    import yaml

__all__ = ["Manifest", "ManifestEntry", "parse_manifest"]


@attrs.frozen(kw_only=True)
class ManifestEntry:
    """One file of a manifest.

    Attributes:
        file: POSIX path relative to the migrations root.
        line: the entry's line in the manifest.
        depends_on: explicit dependencies (ids or manifest file paths), None if not given.
        fields: other header fields the manifest supplies (``id``, ``version``, ``type``...).
    """

    file: str
    line: int | None = None
    depends_on: tuple[str, ...] | None = None
    fields: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Manifest:
    """Order and dependencies of files, mostly those without a header.

    Attributes:
        entries: the files in manifest order.
        chain: whether an entry without ``depends_on`` depends on the entry before it.
    """

    entries: tuple[ManifestEntry, ...] = ()
    chain: bool = True


def _unsafe_path(file: str) -> str | None:
    """Why a manifest path is refused, or None when it is a plain relative path."""
    if not file or "\x00" in file:
        return "is empty"
    parts = file.replace("\\", "/").split("/")
    if file.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", file):
        return "is absolute"
    if ".." in parts:
        return "climbs out of the migrations root with '..'"
    return None


def parse_manifest(text: str, *, path: str | None = None) -> tuple[Manifest, tuple[Finding, ...]]:
    """Read a manifest (YAML or JSON).

    Format: either a list of file paths (each depends on the one before), or a mapping::

        chain: true            # default; false: only explicit depends_on
        steps:
          - 4.0.113_add_seven_love_agents.sql
          - file: 4.1.2_clarify.sql
            depends_on: [4.0.113_add_seven_love_agents]   # ids or manifest file paths
            version: "4.1.2"                              # any header field

    File paths are relative to the migrations root (not to the manifest), so a manifest may live
    anywhere; absolute paths and ``..`` are refused.

    Returns:
        ``(manifest, findings)``; entries with problems are left out and reported.
    """
    import yaml

    from lupo_migrate.files.yaml import load_document

    loaded = load_document(normalise(text), path=path, first_line=1, lenient=False)
    if loaded.error is not None:
        return Manifest(), (loaded.error,)
    value, node = loaded.value, loaded.node
    chain = True
    items_node: yaml.Node | None = node
    problems: list[Finding] = []
    hint = "write 'steps:' followed by a list of files (see examples/corpus-manifest.yaml)"
    if isinstance(value, dict):
        chain_value = value.get("chain", True)
        if not isinstance(chain_value, bool):
            problems.append(
                error_finding(
                    "manifest.format", "'chain' must be true or false", hint, path=path, line=1
                )
            )
        chain = chain_value is not False
        items_node = None
        if isinstance(node, yaml.MappingNode):
            for key, sub in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == "steps":
                    items_node = sub
        value = value.get("steps")
    if not isinstance(value, list):
        problems.append(
            error_finding(
                "manifest.format", "manifest has no list of steps", hint, path=path, line=1
            )
        )
        return Manifest(chain=chain), tuple(problems)
    item_nodes = items_node.value if isinstance(items_node, yaml.SequenceNode) else []
    entries = []
    for index, item in enumerate(value):
        line = item_nodes[index].start_mark.line + 1 if index < len(item_nodes) else None
        entry, problem = _manifest_entry(item, path=path, line=line)
        if problem is not None:
            problems.append(problem)
        elif entry is not None:
            entries.append(entry)
    return Manifest(entries=tuple(entries), chain=chain), tuple(problems)


def _manifest_entry(
    item: Any, *, path: str | None, line: int | None
) -> tuple[ManifestEntry | None, Finding | None]:
    if isinstance(item, str):
        item = {"file": item}
    if not isinstance(item, dict) or not isinstance(item.get("file"), str):
        return None, error_finding(
            "manifest.format",
            "manifest entry is neither a file path nor a mapping with 'file'",
            "write '- a.sql' or '- {file: a.sql, depends_on: [...]}'",
            path=path,
            line=line,
        )
    file = item["file"]
    why = _unsafe_path(file)
    if why is not None:
        return None, error_finding(
            "manifest.path",
            f"manifest entry {file!r} {why}",
            "name files relative to the migrations root, without '..'",
            path=path,
            line=line,
        )
    fields = {str(k): v for k, v in item.items() if k not in ("file", "depends_on")}
    problems = validate_header(fields, path=path, line=line)
    depends = item.get("depends_on")
    deps: tuple[str, ...] | None = None
    if depends is not None:
        if isinstance(depends, str):
            depends = [depends]
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            return None, error_finding(
                "manifest.format",
                f"depends_on of {file!r} is not an id or a list of ids",
                "write depends_on: [a, b]",
                path=path,
                line=line,
            )
        deps = tuple(depends)
    if problems:
        return None, problems[0]
    entry = ManifestEntry(
        file=file.replace("\\", "/").removeprefix("./"), line=line, depends_on=deps, fields=fields
    )
    return entry, None
