"""Reading migration file headers, names, versions and checksums (functional core: no I/O).

Every function takes text and returns values. Problems are :class:`~lupo_migrate._model.Finding`
values (path, 1-based line, message, hint), never exceptions, so a caller can collect all of them.

Header formats
--------------

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
    (``id``, ``type``, ``depends_on``, ``version``, ``module``, ``description``, ``down``;
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

YAML is read with a :class:`yaml.SafeLoader` subclass that rejects anchors, aliases and explicit
tags other than the core ones (``!!str``, ``!!int``...) with the line, and keeps dates as text.
The strict reader also refuses repeated keys. The lenient reader (used for real files) accepts a
BOM and CRLF line ends, and repairs, one failing line at a time so line numbers stay right, the
sloppy patterns met in the field: an unquoted value starting with ``@`` or a backtick
(``target: @everyone``) or containing ``': '`` is quoted; a line of prose without any ``key:``
inside the header is commented out; of repeated keys the last wins. Anything else is an error.
:attr:`Header.strict_problem` then says, with the line, where strict YAML fails, so ``check`` can
report "not strict YAML" per file.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.resources
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import jsonschema
import yaml

from lupo_migrate._model import Finding, Severity, Step

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
    "load_yaml",
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

#: Header keys lupo_migrate understands; every other key is kept in ``Step.meta`` as is.
KNOWN_KEYS: Final = ("id", "type", "depends_on", "version", "module", "description", "down")

_BOM: Final = "\ufeff"
_CORE_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"


# --------------------------------------------------------------------------- text and checksums


def normalise(text: str) -> str:
    """*text* without a leading BOM and with CRLF and CR line ends turned into LF."""
    if text.startswith(_BOM):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum(content: str | bytes) -> str:
    """Hex SHA-256 of *content* with the BOM stripped and line ends normalised to LF.

    Args:
        content: the file's text, or its bytes (UTF-8 assumed for the BOM).

    Returns:
        64 lowercase hex digits; equal for the LF, CRLF and BOM variants of one text.
    """
    if isinstance(content, str):
        data = normalise(content).encode("utf-8")
    else:
        data = content.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, *, path: str | None = None) -> tuple[str | None, Finding | None]:
    """Decode UTF-8 *data* (BOM allowed) into normalised text.

    Returns:
        ``(text, None)``, or ``(None, finding)`` naming the byte offset and line of the first
        byte that is not UTF-8.
    """
    try:
        return normalise(data.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, Finding(
            severity=Severity.ERROR,
            code="header.encoding",
            path=path,
            line=line,
            message=f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            hint="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )


# --------------------------------------------------------------------------------- safe YAML


class _UnsafeYAMLError(yaml.MarkedYAMLError):
    """A construct the header loader refuses (alias, anchor, custom tag, duplicate key)."""

    duplicate = False


class _DuplicateKeyError(_UnsafeYAMLError):
    """A mapping repeats a key: refused by the strict reader, last one wins when lenient."""

    duplicate = True


class _SafeHeaderLoader(yaml.SafeLoader):
    """SafeLoader without anchors, aliases, custom tags, duplicate keys or date conversion."""

    allow_duplicates = False

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _UnsafeYAMLError(
                problem=f"YAML alias '*{event.anchor}' is not allowed in a header",
                problem_mark=event.start_mark,  # type: ignore[arg-type]
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _UnsafeYAMLError(
                problem=f"YAML anchor '&{anchor}' is not allowed in a header",
                problem_mark=event.start_mark,
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _CORE_TAGS:
            raise _UnsafeYAMLError(
                problem=f"YAML tag {tag!r} is not allowed in a header",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not self.allow_duplicates:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise _DuplicateKeyError(
                            problem=f"duplicate key {key_node.value!r}",
                            problem_mark=key_node.start_mark,
                        )
                    seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_SafeHeaderLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _LenientHeaderLoader(_SafeHeaderLoader):
    """The safe loader, letting the last of repeated keys win."""

    allow_duplicates = True


#: A block line ``[- ]key: value`` or ``- value`` with a plain (unquoted) value.
_PLAIN_VALUE: Final = re.compile(
    r"^(?P<lead>[ \t]*(?:-[ \t]+)*(?P<key>[^\s#'\"\[{@`-][^:#]*?:[ \t]+)?)"
    r"(?P<value>[^\s'\"\[{|>&*!#].*?)(?P<tail>[ \t]+#.*)?[ \t]*$"
)
#: How many lines the lenient reader may repair in one header.
_MAX_REPAIRS: Final = 50


def _error_line(exc: yaml.YAMLError) -> int | None:
    """0-based line of a YAML error in the text parsed (the key's line for a bad simple key)."""
    context = getattr(exc, "context", None) or ""
    mark = getattr(exc, "context_mark", None) if "simple key" in context else None
    mark = mark or getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return None if mark is None else int(mark.line)


def _repair(line: str, exc: yaml.YAMLError) -> str | None:
    """*line* made readable for one of the known sloppy patterns, or None.

    The patterns: a value starting with ``@`` or a backtick, a plain value containing ``': '``
    (both get quoted), and a line of prose without any ``key:`` (commented out).
    """
    problem = str(getattr(exc, "problem", "") or "")
    match = _PLAIN_VALUE.match(line)
    reserved = "cannot start any token" in problem and ("'@'" in problem or "'`'" in problem)
    if match is not None and (reserved or "mapping values are not allowed" in problem):
        if match["key"] is None and not match["lead"].strip():
            return None
        return (
            match["lead"] + json.dumps(match["value"], ensure_ascii=False) + (match["tail"] or "")
        )
    if "could not find expected ':'" in problem and line.strip():
        stripped = line.lstrip()
        if ": " not in line and not stripped.startswith(("#", "-", "'", '"', "[", "{")):
            return "# " + line
    return None


def _compose_and_construct(
    text: str, loader_class: type[_SafeHeaderLoader] = _SafeHeaderLoader
) -> tuple[Any, yaml.Node | None]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        value = None if node is None else loader.construct_document(node)
        return value, node
    finally:
        loader.dispose()


def _yaml_finding(
    exc: yaml.YAMLError, *, path: str | None, first_line: int, severity: Severity, what: str
) -> Finding:
    index = _error_line(exc)
    line = first_line + index if index is not None else first_line
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else str(problem)
    if isinstance(exc, _DuplicateKeyError):
        hint = "keep one of the repeated keys (the last one wins when read leniently)"
    elif isinstance(exc, _UnsafeYAMLError):
        hint = "write plain values: no anchors, aliases or tags"
    elif "'@'" in detail or "'`'" in detail:
        hint = "quote values that start with '@' or '`', e.g. target: \"@everyone\""
    elif "mapping values" in detail:
        hint = "quote a value that contains ': '"
    else:
        hint = "fix the YAML syntax on that line (indentation, quotes, ':' followed by a space)"
    return Finding(
        severity=severity,
        code="header.yaml" if severity.fails else "header.not_strict",
        path=path,
        line=line,
        message=f"{what}: {detail}",
        hint=hint,
    )


@attrs.frozen(kw_only=True)
class _Loaded:
    value: Any = None
    node: yaml.Node | None = None
    error: Finding | None = None
    strict_problem: Finding | None = None


def _load(text: str, *, path: str | None, first_line: int, lenient: bool) -> _Loaded:
    def failed(exc: yaml.YAMLError, what: str) -> _Loaded:
        return _Loaded(
            error=_yaml_finding(
                exc, path=path, first_line=first_line, severity=Severity.ERROR, what=what
            )
        )

    try:
        value, node = _compose_and_construct(text)
        return _Loaded(value=value, node=node)
    except _UnsafeYAMLError as exc:
        if not (lenient and exc.duplicate):
            return failed(exc, "unsafe YAML")
        strict_error: yaml.YAMLError = exc
    except yaml.YAMLError as exc:
        if not lenient:
            return failed(exc, "header is not valid YAML")
        strict_error = exc
    lines = text.split("\n")
    repaired: list[int] = []
    for _ in range(_MAX_REPAIRS):
        try:
            value, node = _compose_and_construct("\n".join(lines), _LenientHeaderLoader)
        except _UnsafeYAMLError as exc:
            return failed(exc, "unsafe YAML")
        except yaml.YAMLError as exc:
            index = _error_line(exc)
            fixed = None if index is None or index >= len(lines) else _repair(lines[index], exc)
            if fixed is None or index is None:
                return failed(exc, "header is not valid YAML")
            lines[index] = fixed
            repaired.append(first_line + index)
            continue
        problem = _yaml_finding(
            strict_error,
            path=path,
            first_line=first_line,
            severity=Severity.WARNING,
            what="header is not strict YAML (read leniently)",
        )
        if repaired:
            listed = ", ".join(map(str, sorted(set(repaired))))
            problem = attrs.evolve(problem, message=f"{problem.message} (lines repaired: {listed})")
        return _Loaded(value=value, node=node, strict_problem=problem)
    return failed(strict_error, "header is not valid YAML (too many lines to repair)")


def load_yaml(
    text: str, *, path: str | None = None, first_line: int = 1, lenient: bool = True
) -> tuple[Any, tuple[Finding, ...]]:
    """Read YAML *text* safely.

    Args:
        text: the YAML (already normalised, or with BOM/CRLF: both are accepted).
        path: the file, for findings.
        first_line: the file line of the text's first line, so findings name file lines.
        lenient: also accept unquoted values starting with ``@`` or a backtick.

    Returns:
        ``(value, findings)``: *value* is None when an ERROR finding is present; a WARNING
        finding (code ``header.not_strict``) says where strict YAML failed but leniency helped.
    """
    loaded = _load(normalise(text), path=path, first_line=first_line, lenient=lenient)
    problems = tuple(f for f in (loaded.error, loaded.strict_problem) if f is not None)
    return (None if loaded.error else loaded.value), problems


# ------------------------------------------------------------------------------------ headers


@attrs.frozen(kw_only=True)
class Header:
    """A file's header as read.

    Attributes:
        mapping: the header fields (empty when the file has none or it could not be read).
        found: whether the file has a header at all.
        line: file line of the header's first line (None without a header).
        key_lines: the file line of each top-level key.
        findings: ERROR findings: the header is unusable or breaks the schema.
        strict_problem: a WARNING when the header is only readable leniently, with its line.
    """

    mapping: Mapping[str, Any] = attrs.field(factory=dict)
    found: bool = False
    line: int | None = None
    key_lines: Mapping[str, int] = attrs.field(factory=dict)
    findings: tuple[Finding, ...] = ()
    strict_problem: Finding | None = None

    @property
    def strict(self) -> bool:
        """Whether the header is strict YAML (true also for files without a YAML header)."""
        return self.strict_problem is None


def _error(code: str, message: str, hint: str, *, path: str | None, line: int | None) -> Finding:
    return Finding(
        severity=Severity.ERROR, code=code, path=path, line=line, message=message, hint=hint
    )


def _key_lines(node: yaml.Node | None, first_line: int) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(k.value): first_line + k.start_mark.line
        for k, _ in node.value
        if isinstance(k, yaml.ScalarNode)
    }


def _yaml_header(text: str, *, path: str | None, first_line: int, extra: Finding | None) -> Header:
    """Read *text* as a YAML header mapping starting on file line *first_line*."""
    loaded = _load(text, path=path, first_line=first_line, lenient=True)
    strict_problem = loaded.strict_problem or extra
    if loaded.error is not None:
        return Header(found=True, line=first_line, findings=(loaded.error,))
    value = {} if loaded.value is None else loaded.value
    if not isinstance(value, dict):
        problem = _error(
            "header.not_mapping",
            f"header is a {type(value).__name__}, not a mapping of fields",
            "write the header as 'key: value' lines",
            path=path,
            line=first_line,
        )
        return Header(found=True, line=first_line, findings=(problem,))
    lines = _key_lines(loaded.node, first_line)
    mapping = {str(k): v for k, v in value.items()}
    problems = validate_header(mapping, path=path, key_lines=lines, line=first_line)
    return Header(
        mapping=mapping,
        found=True,
        line=first_line,
        key_lines=lines,
        findings=problems,
        strict_problem=strict_problem,
    )


_KEY_LINE: Final = re.compile(r"^[A-Za-z_][\w.\-]*:(?:[ \t]|$)")
_FENCE_LIMIT: Final = 500


def read_front_matter(text: str, *, path: str | None = None) -> Header:
    """Read the YAML front matter of a Markdown or text file (see the module docstring)."""
    text = normalise(text)
    lines = text.split("\n", _FENCE_LIMIT + 1)[:_FENCE_LIMIT]
    if lines[0].rstrip() == "---":
        for index in range(1, len(lines)):
            if lines[index].rstrip() in ("---", "..."):
                return _yaml_header("\n".join(lines[1:index]), path=path, first_line=2, extra=None)
        problem = _error(
            "header.unclosed",
            "front matter opened by '---' on line 1 is never closed",
            "add a line '---' after the last header field",
            path=path,
            line=1,
        )
        return Header(found=True, line=1, findings=(problem,))
    if not _KEY_LINE.match(lines[0]):
        return Header()
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            missing = Finding(
                severity=Severity.WARNING,
                code="header.not_strict",
                path=path,
                line=1,
                message="front matter has no opening '---' line (read leniently)",
                hint="add a line '---' before the first header field",
            )
            header = _yaml_header("\n".join(lines[:index]), path=path, first_line=1, extra=missing)
            if header.findings and not header.mapping:
                return Header()  # not a header after all: prose that happens to contain ':'
            if header.strict_problem is not missing:
                header = attrs.evolve(header, strict_problem=missing)
            return header
    return Header()


_SQL_FENCE: Final = re.compile(r"^--[ \t]*---[ \t]*$")
_SQL_KEY: Final = re.compile(
    r"^--[ \t]*(?P<key>id|type|depends_on|version|module|description|down)[ \t]*:[ \t]*"
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
                _error(
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
            problem = _error(
                "header.unclosed",
                f"SQL header opened by '-- ---' on line {start + 1} is not closed before"
                f" line {index + 1}, which is not a '--' comment",
                "end the header with a line '-- ---'",
                path=path,
                line=index + 1,
            )
            return Header(found=True, line=start + 1, findings=(problem,))
        body.append(line[3:] if line.startswith("-- ") else line[2:])
    problem = _error(
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
        problem = _error(
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
        problem = _error(
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


def read_yaml_document(text: str, *, path: str | None = None) -> Header:
    """Read a YAML or JSON record file; its top-level ``migration`` mapping is the header."""
    loaded = _load(normalise(text), path=path, first_line=1, lenient=True)
    if loaded.error is not None:
        return Header(findings=(loaded.error,))
    value = loaded.value
    if not isinstance(value, dict) or "migration" not in value:
        return Header(strict_problem=loaded.strict_problem)
    header = value["migration"]
    node = loaded.node
    line = 1
    inner: yaml.Node | None = None
    if isinstance(node, yaml.MappingNode):
        for key, sub in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "migration":
                line, inner = key.start_mark.line + 1, sub
    if not isinstance(header, dict):
        problem = _error(
            "header.not_mapping",
            "'migration' is not a mapping of fields",
            "write migration: {id: ..., depends_on: [...]}",
            path=path,
            line=line,
        )
        return Header(found=True, line=line, findings=(problem,))
    mapping = {str(k): v for k, v in header.items()}
    lines = _key_lines(inner, 1)
    problems = validate_header(mapping, path=path, key_lines=lines, line=line)
    return Header(
        mapping=mapping,
        found=True,
        line=line,
        key_lines=lines,
        findings=problems,
        strict_problem=loaded.strict_problem,
    )


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


# ----------------------------------------------------------------------------------- schema


@functools.cache
def header_schema() -> Mapping[str, Any]:
    """The JSON Schema headers are validated with (``lupo_migrate/schemas/header.schema.json``)."""
    # Package data read once: deterministic, so allowed in the core (see test_core_purity).
    schema: dict[str, Any] = json.loads(
        importlib.resources.files("lupo_migrate")
        .joinpath("schemas/header.schema.json")
        .read_text(encoding="utf-8")
    )
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = dict(header_schema())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


_FIELD_HINTS: Final = {
    "id": "give id a text value without spaces, e.g. id: add_users (quote numbers)",
    "type": "use doctrine, module, agent, documentation or a plugin's type name",
    "depends_on": "use an id or a list of distinct ids, e.g. depends_on: [a, b]",
    "version": 'use a version like "4.1.2" (quoted)',
    "module": "give the module's name as text",
    "description": "write the description as text (quote it if it starts with a symbol)",
    "down": "give the down file's path or the down SQL as text",
}


def validate_header(
    mapping: Mapping[str, Any],
    *,
    path: str | None = None,
    key_lines: Mapping[str, int] | None = None,
    line: int | None = None,
) -> tuple[Finding, ...]:
    """Check a header mapping against :func:`header_schema`.

    Args:
        mapping: the header fields.
        path: the file, for findings.
        key_lines: the file line of each top-level key, so a finding names the field's line.
        line: the line used when a field's line is unknown.

    Returns:
        One ERROR finding per schema violation, ordered by field.
    """
    lines = key_lines or {}
    problems = []
    errors = sorted(_validator().iter_errors(dict(mapping)), key=lambda e: list(map(str, e.path)))
    for error in errors:
        field = str(error.path[0]) if error.path else None
        where = f"header field {field!r}" if field else "header"
        problems.append(
            _error(
                "header.schema",
                f"{where}: {error.message}",
                _FIELD_HINTS.get(field or "", "see lupo_migrate/schemas/header.schema.json"),
                path=path,
                line=lines.get(field or "", line),
            )
        )
    return tuple(problems)


# ------------------------------------------------------------------------- names and versions


@attrs.frozen(kw_only=True)
class NameInfo:
    """What a file's name says.

    Attributes:
        id: the step id derived from the name: the path without suffix (and without ``.up`` /
            ``.down``; a Flyway undo ``U1__x`` names its ``V1__x``).
        version: the version the name starts with, dots for separators (``4_1_1_x`` -> 4.1.1).
        kind: ``up``, or ``down`` for ``x.down.sql`` and Flyway ``U1__x.sql``.
    """

    id: str
    version: str = ""
    kind: str = "up"


_FLYWAY: Final = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<rest>.+)$")
_LEADING_VERSION: Final = re.compile(r"^(?P<version>\d+(?:[._]\d+)*)(?:[_\-.]|$)", re.ASCII)


def parse_name(relpath: str, suffix: str | None = None) -> NameInfo:
    """Derive id, version and kind from a file's path relative to the migrations root.

    Args:
        relpath: POSIX path relative to the root (``sub/V1__add_users.sql``).
        suffix: the file-type suffix to strip; default: from the last dot of the name.

    Returns:
        The :class:`NameInfo`, e.g. ``V1__add_users.sql`` -> id ``V1__add_users``, version
        ``1``; ``1_x.down.sql`` -> id ``1_x``, version ``1``, kind ``down``.
    """
    directory, _, name = relpath.rpartition("/")
    if suffix and name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
        stem = name[: -len(suffix)]
    else:
        stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    kind = "up"
    for marker in (".down", ".up"):
        if stem.lower().endswith(marker) and len(stem) > len(marker):
            stem, kind = stem[: -len(marker)], marker[1:]
            break
    version = ""
    flyway = _FLYWAY.match(stem)
    if flyway:
        version = flyway["version"].replace("_", ".")
        if flyway["prefix"] == "U":
            stem, kind = "V" + stem[1:], "down"
    else:
        leading = _LEADING_VERSION.match(stem)
        if leading:
            version = leading["version"].replace("_", ".")
    step_id = f"{directory}/{stem}" if directory else stem
    return NameInfo(id=step_id, version=version, kind=kind)


_VERSION_PART: Final = re.compile(r"\d+|[^\W\d_]+", re.ASCII)


def version_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """A natural sort key for version text: ``V2 < V10``, ``4.1.2 < 4.1.10``.

    Digit runs compare as numbers and come before letter runs; separators (``.``, ``_``, ``-``)
    are ignored; a leading ``v``/``V`` before a digit is dropped; a shorter version that is a
    prefix of a longer one comes first (``4.1 < 4.1.0``). Empty text gives ``()``.
    """
    text = text.strip()
    if text[:1] in ("v", "V") and text[1:2].isdigit():
        text = text[1:]
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in _VERSION_PART.findall(text)
    )


# ---------------------------------------------------------------------------------- manifest


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
    loaded = _load(normalise(text), path=path, first_line=1, lenient=False)
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
                _error("manifest.format", "'chain' must be true or false", hint, path=path, line=1)
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
            _error("manifest.format", "manifest has no list of steps", hint, path=path, line=1)
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
        return None, _error(
            "manifest.format",
            "manifest entry is neither a file path nor a mapping with 'file'",
            "write '- a.sql' or '- {file: a.sql, depends_on: [...]}'",
            path=path,
            line=line,
        )
    file = item["file"]
    why = _unsafe_path(file)
    if why is not None:
        return None, _error(
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
            return None, _error(
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
        The :class:`~lupo_migrate._model.Step`; ``meta`` is the merged header mapping.
    """
    fields: dict[str, Any] = dict(extra or {})
    fields.update(header.mapping)
    depends = fields.get("depends_on", ())
    if isinstance(depends, str):
        depends = (depends,)
    version = fields.get("version")
    module = fields.get("module")
    return Step(
        id=str(fields.get("id") or name.id),
        path=path,
        file_type=str(fields.get("type") or file_type),
        checksum=content_checksum,
        depends_on=tuple(str(d) for d in depends) if isinstance(depends, (list, tuple)) else (),
        version=str(version) if version is not None and version != "" else name.version,
        module=str(module) if module is not None else None,
        meta=fields,
    )
