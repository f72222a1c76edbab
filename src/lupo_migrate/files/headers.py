"""Reading migration file headers, names, versions and checksums (functional core: no I/O).

Every function takes text and returns values. Problems are :class:`~lupo_migrate.core.model.Finding`
values (path, 1-based line, message, hint), never exceptions, so a caller can collect all of them.

The header formats:

Markdown and other text files
    YAML front matter: a first line ``---``, the YAML mapping, then a line ``---`` (or ``...``).
    Leniency: a file whose first line already looks like ``key: value`` and that has a ``---``
    line further down is read as front matter missing its opening line (reported as not strict).

SQL files
    Optional. Either a fenced YAML block at the top (blank lines may precede it)::

        -- ---
        -- id: add_users
        -- depends_on: [create_schema]
        -- description: adds the users table
        -- ---

    where each line loses its ``--`` and one following space before the block is read as YAML;
    or, in the first comment block, lines ``-- key: value`` whose key is one lupo_migrate knows
    (``id``, ``type``, ``depends_on``, ``version``, ``module``, ``description``, ``down``,
    ``irreversible``, ``transaction``, ``online``;
    lowercase exactly). Their values are text, except values starting with ``[``, ``{`` or a
    quote, which are read as YAML (``-- depends_on: [a, b]``; a list of plain words is a list
    of text, so ``[1, yes]`` gives ``["1", "yes"]``). Other comment lines, such as
    ``-- Version: 4.1.2`` or ``-- Purpose: ...`` in legacy files, are prose and are ignored. A
    file without a header takes its id and version from its name.

Python files
    A module-level ``MIGRATION = {...}`` read with :func:`ast.literal_eval`; the module is
    parsed, never imported or executed.

YAML and JSON files (agent records)
    The whole document is read safely; a top-level ``migration`` mapping, if any, is the header.

YAML is read safely and, for real files, leniently: see :mod:`lupo_migrate.files.yaml`.
:attr:`Header.strict_problem` then says, with the line, where strict YAML fails, so ``check`` can
report "not strict YAML" per file.

This module holds the SQL and Python readers, :func:`read_header` (the reader by suffix) and
:func:`build_step`; the YAML readers (front matter, YAML/JSON records, and the fenced SQL
block's YAML) live in :mod:`lupo_migrate.files.headers_yaml` and are re-exported here. Names and
checksums live in :mod:`lupo_migrate.core.names`, manifests in :mod:`lupo_migrate.files.manifest`;
the
:class:`Header` value and the schema in :mod:`lupo_migrate.files.header_schema`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from lupo_migrate.core.model import Finding, Step
from lupo_migrate.core.names import NameInfo, checksum, decode, normalise, parse_name, version_key
from lupo_migrate.files.header_schema import (
    KNOWN_KEYS,
    Header,
    error_finding,
    header_schema,
    validate_header,
)
from lupo_migrate.files.headers_yaml import _yaml_header, read_front_matter, read_yaml_document
from lupo_migrate.files.manifest import Manifest, ManifestEntry, parse_manifest

# PyYAML (about 10 ms to import) is loaded when a file has a YAML header: most SQL files have
# none, and the "nothing to do?" answer reads every file's header.

__all__ = [
    "KNOWN_KEYS",
    "Header",
    "Manifest",
    "ManifestEntry",
    "NameInfo",
    "build_step",
    "checksum",
    "decode",
    "header_schema",
    "normalise",
    "parse_manifest",
    "parse_name",
    "read_front_matter",
    "read_header",
    "read_python_header",
    "read_sql_header",
    "read_yaml_document",
    "validate_header",
    "version_key",
]

# ------------------------------------------------------------------------------------ headers


_SQL_FENCE: Final = re.compile(r"^--[ \t]*---[ \t]*$")
_SQL_KEY: Final = re.compile(
    r"^--[ \t]*(?P<key>id|type|depends_on|version|module|description|down|irreversible"
    r"|transaction|online)"
    r"[ \t]*:[ \t]*"
    r"(?P<value>.*?)[ \t]*$"
)

_SIMPLE_LIST: Final = re.compile(
    r"^\[(?P<items>[ \t]*(?:[\w./-]+[ \t]*(?:,[ \t]*[\w./-]+[ \t]*)*)?)\]$"
)


def read_sql_header(text: str, *, path: str | None = None) -> Header:
    """Read the optional comment header of a SQL file (see the module docstring)."""
    lines = normalise(text).split("\n")
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start < len(lines) and _SQL_FENCE.match(lines[start]):
        return _sql_fenced(lines, start, path=path)
    mapping: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    problems: list[Finding] = []
    strict_problem: Finding | None = None
    index = start
    while index < len(lines) and lines[index].startswith("--"):
        match = _SQL_KEY.match(lines[index])
        index += 1
        if match is None:
            continue
        key, raw = match["key"], match["value"]
        if key in mapping:
            problems.append(
                error_finding(
                    "header.duplicate_key",
                    f"header key {key!r} repeated (first on line {key_lines[key]})",
                    "keep one of the two lines",
                    path=path,
                    line=index,
                )
            )
            continue
        key_lines[key] = index
        simple = _SIMPLE_LIST.match(raw)
        if simple is not None:  # fast path for the common `[a, b]`: a list of plain words
            mapping[key] = [w.strip() for w in simple["items"].split(",") if w.strip()]
        elif raw[:1] in ("[", "{", '"', "'"):
            from lupo_migrate.files.yaml import load_yaml

            value, found = load_yaml(raw, path=path, first_line=index)
            errors = [f for f in found if f.severity.fails]
            if errors:
                problems.extend(errors)
                continue
            strict_problem = strict_problem or next(iter(found), None)
            mapping[key] = value
        else:
            mapping[key] = raw
    if not key_lines:
        return Header()
    first = min(key_lines.values())
    problems.extend(validate_header(mapping, path=path, key_lines=key_lines, line=first))
    return Header(
        mapping=mapping,
        found=True,
        line=first,
        key_lines=key_lines,
        findings=tuple(problems),
        strict_problem=strict_problem,
    )


def _sql_fenced(lines: Sequence[str], start: int, *, path: str | None) -> Header:
    body: list[str] = []
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if _SQL_FENCE.match(line):
            return _yaml_header("\n".join(body), path=path, first_line=start + 2, extra=None)
        if not line.startswith("--"):
            problem = error_finding(
                "header.unclosed",
                f"SQL header opened by '-- ---' on line {start + 1} is not closed before"
                f" line {index + 1}, which is not a '--' comment",
                "end the header with a line '-- ---'",
                path=path,
                line=index + 1,
            )
            return Header(found=True, line=start + 1, findings=(problem,))
        body.append(line[3:] if line.startswith("-- ") else line[2:])
    problem = error_finding(
        "header.unclosed",
        f"SQL header opened by '-- ---' on line {start + 1} is never closed",
        "end the header with a line '-- ---'",
        path=path,
        line=start + 1,
    )
    return Header(found=True, line=start + 1, findings=(problem,))


def read_python_header(text: str, *, path: str | None = None) -> Header:
    """Read a module-level ``MIGRATION = {...}`` literal; the module is never executed."""
    try:
        tree = ast.parse(normalise(text), filename=path or "<migration>")
    except SyntaxError as exc:
        problem = error_finding(
            "header.python_syntax",
            f"Python syntax error: {exc.msg}",
            "fix the module so that it parses (python -m py_compile FILE)",
            path=path,
            line=exc.lineno,
        )
        return Header(findings=(problem,))
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "MIGRATION":
            return _python_dict(value, path=path, line=stmt.lineno)
    return Header()


def _python_dict(node: ast.expr, *, path: str | None, line: int) -> Header:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        problem = error_finding(
            "header.python_literal",
            "MIGRATION is not a dict literal with text keys",
            "write MIGRATION = {'id': ..., 'depends_on': [...]} using literals only"
            " (no names, calls or f-strings)",
            path=path,
            line=line,
        )
        return Header(found=True, line=line, findings=(problem,))
    key_lines: dict[str, int] = {}
    if isinstance(node, ast.Dict):
        for key in node.keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                key_lines.setdefault(key.value, key.lineno)
    problems = validate_header(value, path=path, key_lines=key_lines, line=line)
    return Header(mapping=value, found=True, line=line, key_lines=key_lines, findings=problems)


def read_header(text: str, *, suffix: str, path: str | None = None) -> Header:
    """Read the header of a file by its suffix (``.sql``, ``.py``, ``.yaml``/``.yml``/``.json``;
    anything else is read for YAML front matter)."""
    suffix = suffix.lower()
    if suffix.endswith(".sql"):
        return read_sql_header(text, path=path)
    if suffix.endswith(".py"):
        return read_python_header(text, path=path)
    if suffix.endswith((".yaml", ".yml", ".json")):
        return read_yaml_document(text, path=path)
    return read_front_matter(text, path=path)


# -------------------------------------------------------------------------------------- steps


def build_step(
    *,
    path: str,
    file_type: str,
    content_checksum: str,
    header: Header,
    name: NameInfo,
    extra: Mapping[str, Any] | None = None,
) -> Step:
    """The step for one file: header fields first, then *extra* (manifest), then the name.

    Args:
        path: POSIX path relative to the root.
        file_type: the type from the suffix, unless the header or *extra* gives ``type``.
        content_checksum: :func:`checksum` of the content.
        header: the header as read (its findings are the caller's to report).
        name: what the name says.
        extra: fields from a manifest entry, used where the header has none.

    Returns:
        The :class:`~lupo_migrate.core.model.Step`; ``meta`` is the merged header mapping.
    """
    fields: dict[str, Any] = dict(extra or {})
    fields.update(header.mapping)
    depends = fields.get("depends_on", ())
    if isinstance(depends, str):
        depends = (depends,)
    version = fields.get("version")
    module = fields.get("module")
    kind = str(fields.get("type") or file_type)
    step_id = str(fields.get("id") or name.id)
    if kind == "module":
        # A module migration belongs to a module (its header's, else its directory's) and
        # its id is namespaced by it, so two modules may both have a 0001_init.
        if not fields.get("id"):
            step_id = step_id.rpartition("/")[2]  # the directory is the module, below
        where = path.rpartition("/")[0].replace("/", ".")
        module = module if module is not None else (where or None)
        if module is not None and not step_id.startswith(f"{module}."):
            step_id = f"{module}.{step_id}"
    return Step(
        id=step_id,
        path=path,
        file_type=kind,
        checksum=content_checksum,
        depends_on=tuple(str(d) for d in depends) if isinstance(depends, (list, tuple)) else (),
        version=str(version) if version is not None and version != "" else name.version,
        module=str(module) if module is not None else None,
        repeatable=name.repeatable,
        meta=fields,
    )
