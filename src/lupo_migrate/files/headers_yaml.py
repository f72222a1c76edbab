"""The YAML header readers: front matter of text files and YAML/JSON records (functional core).

Apart from :mod:`lupo_migrate.files.headers`, which holds the SQL and Python readers, the choice of
reader by suffix and the step built from a header: every reader here hands its text to the safe,
lenient YAML reader of :mod:`lupo_migrate.files.yaml`, and the SQL reader's fenced form reuses
:func:`_yaml_header`. The formats are described in :mod:`lupo_migrate.files.headers`. The header
editor (:mod:`lupo_migrate.files.frontmatter.blocks`) locates front matter with the same
:data:`_KEY_LINE` and :data:`_FENCE_LIMIT`, so it edits the header this module reads.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

from lupo_migrate.core.model import Finding, Severity
from lupo_migrate.core.names import normalise
from lupo_migrate.files.header_schema import Header, error_finding, validate_header

if TYPE_CHECKING:
    import yaml

# PyYAML (about 10 ms to import) is loaded when a file has a YAML header: most SQL files have
# none, and the "nothing to do?" answer reads every file's header.

__all__ = ["read_front_matter", "read_yaml_document"]


def _yaml_header(text: str, *, path: str | None, first_line: int, extra: Finding | None) -> Header:
    """Read *text* as a YAML header mapping starting on file line *first_line*."""
    from lupo_migrate.files.yaml import load_document, mapping_key_lines

    loaded = load_document(text, path=path, first_line=first_line, lenient=True)
    strict_problem = loaded.strict_problem or extra
    if loaded.error is not None:
        return Header(found=True, line=first_line, findings=(loaded.error,))
    value = {} if loaded.value is None else loaded.value
    if not isinstance(value, dict):
        problem = error_finding(
            "header.not_mapping",
            f"header is a {type(value).__name__}, not a mapping of fields",
            "write the header as 'key: value' lines",
            path=path,
            line=first_line,
        )
        return Header(found=True, line=first_line, findings=(problem,))
    lines = mapping_key_lines(loaded.node, first_line)
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


#: A first line like ``key: value``: front matter that lacks its opening ``---`` line.
_KEY_LINE: Final = re.compile(r"^[A-Za-z_][\w.\-]*:(?:[ \t]|$)")
#: How many lines from the top a header may take; a fence further down is not looked for.
_FENCE_LIMIT: Final = 500


def read_front_matter(text: str, *, path: str | None = None) -> Header:
    """Read the YAML front matter of a Markdown or text file (see
    :mod:`lupo_migrate.files.headers`)."""
    text = normalise(text)
    lines = text.split("\n", _FENCE_LIMIT + 1)[:_FENCE_LIMIT]
    if lines[0].rstrip() == "---":
        for index in range(1, len(lines)):
            if lines[index].rstrip() in ("---", "..."):
                return _yaml_header("\n".join(lines[1:index]), path=path, first_line=2, extra=None)
        problem = error_finding(
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


def read_yaml_document(text: str, *, path: str | None = None) -> Header:
    """Read a YAML or JSON record file; its top-level ``migration`` mapping is the header."""
    import yaml

    from lupo_migrate.files.yaml import load_document, mapping_key_lines

    loaded = load_document(normalise(text), path=path, first_line=1, lenient=True)
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
        problem = error_finding(
            "header.not_mapping",
            "'migration' is not a mapping of fields",
            "write migration: {id: ..., depends_on: [...]}",
            path=path,
            line=line,
        )
        return Header(found=True, line=line, findings=(problem,))
    mapping = {str(k): v for k, v in header.items()}
    lines = mapping_key_lines(inner, 1)
    problems = validate_header(mapping, path=path, key_lines=lines, line=line)
    return Header(
        mapping=mapping,
        found=True,
        line=line,
        key_lines=lines,
        findings=problems,
        strict_problem=loaded.strict_problem,
    )
