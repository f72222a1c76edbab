"""Safe and lenient YAML reading for headers and manifests (functional core: no I/O).

YAML is read with a :class:`yaml.SafeLoader` subclass that rejects anchors, aliases and explicit
tags other than the core ones (``!!str``, ``!!int``...) with the line, and keeps dates as text.
The strict reader also refuses repeated keys. The lenient reader (used for real files) accepts a
BOM and CRLF line ends, and repairs, one failing line at a time so line numbers stay right, the
sloppy patterns met in the field: an unquoted value starting with ``@`` or a backtick
(``target: @everyone``) or containing ``': '`` is quoted; a line of prose without any ``key:``
inside the header is commented out; of repeated keys the last wins. Anything else is an error.
A WARNING finding (code ``header.not_strict``) then says, with the line, where strict YAML fails,
so ``check`` can report "not strict YAML" per file.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import attrs
import yaml

from lupo_migrate.core.model import Finding, Severity
from lupo_migrate.core.names import normalise

__all__ = ["LoadedYAML", "load_document", "load_yaml", "mapping_key_lines"]

_CORE_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"

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
class LoadedYAML:
    """YAML text as read: its value and node, or the error; and where strict YAML fails."""

    value: Any = None
    node: yaml.Node | None = None
    error: Finding | None = None
    strict_problem: Finding | None = None


def load_document(text: str, *, path: str | None, first_line: int, lenient: bool) -> LoadedYAML:
    """Read normalised YAML *text*, keeping the node tree so callers can find key lines."""

    def failed(exc: yaml.YAMLError, what: str) -> LoadedYAML:
        return LoadedYAML(
            error=_yaml_finding(
                exc, path=path, first_line=first_line, severity=Severity.ERROR, what=what
            )
        )

    try:
        value, node = _compose_and_construct(text)
        return LoadedYAML(value=value, node=node)
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
        return LoadedYAML(value=value, node=node, strict_problem=problem)
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
    loaded = load_document(normalise(text), path=path, first_line=first_line, lenient=lenient)
    problems = tuple(f for f in (loaded.error, loaded.strict_problem) if f is not None)
    return (None if loaded.error else loaded.value), problems


def mapping_key_lines(node: yaml.Node | None, first_line: int) -> dict[str, int]:
    """The file line of each top-level key of a mapping *node* read from file line *first_line*."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(k.value): first_line + k.start_mark.line
        for k, _ in node.value
        if isinstance(k, yaml.ScalarNode)
    }
