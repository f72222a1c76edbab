"""What a header is: the :class:`Header` value, its JSON Schema and validation (functional core).

The schema is package data (``lupo_migrate/schemas/header.schema.json``), read once.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from lupo_migrate.core.model import Finding, Severity

if TYPE_CHECKING:
    import jsonschema

__all__ = ["KNOWN_KEYS", "Header", "error_finding", "header_schema", "validate_header"]

#: Header keys lupo_migrate understands; every other key is kept in ``Step.meta`` as is.
KNOWN_KEYS: Final = (
    "id",
    "type",
    "depends_on",
    "version",
    "module",
    "description",
    "down",
    "irreversible",
    "transaction",
    "online",
)


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


def error_finding(
    code: str, message: str, hint: str, *, path: str | None, line: int | None
) -> Finding:
    """An ERROR :class:`~lupo_migrate.core.model.Finding` for a header or manifest problem."""
    return Finding(
        severity=Severity.ERROR, code=code, path=path, line=line, message=message, hint=hint
    )


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
    import jsonschema  # here, not at the top: 45 ms, and header-less files never need it

    schema = dict(header_schema())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


_TYPE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _plainly_valid(mapping: Mapping[str, Any]) -> bool:
    """Whether the schema surely accepts *mapping*: checked in a few lines so that the usual,
    valid header does not import jsonschema (45 ms). Anything doubtful goes to the schema,
    which stays the authority (and words the findings)."""
    for key, value in mapping.items():
        if key == "id":
            ok = _text(value) and not any(c.isspace() for c in value)
        elif key == "type":
            ok = isinstance(value, str) and _TYPE_NAME.fullmatch(value) is not None
        elif key == "depends_on":
            ok = _text(value) or (
                isinstance(value, list)
                and all(_text(item) for item in value)
                and len(set(value)) == len(value)
            )
        elif key == "version":
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        elif key == "module":
            ok = _text(value)
        elif key in ("description", "down"):
            ok = isinstance(value, str)
        elif key == "online":
            ok = value in ONLINE_MODES
        else:
            ok = True  # the schema allows any other field
        if not ok:
            return False
    return True


#: The ``online`` values (``sql.online.MODES``, a layer apart: a test keeps the two equal).
ONLINE_MODES: Final = ("auto", "instant", "inplace", "copy", "off")

_FIELD_HINTS: Final = {
    "id": "give id a text value without spaces, e.g. id: add_users (quote numbers)",
    "type": "use doctrine, module, agent, documentation or a plugin's type name",
    "depends_on": "use an id or a list of distinct ids, e.g. depends_on: [a, b]",
    "version": 'use a version like "4.1.2" (quoted)',
    "module": "give the module's name as text",
    "description": "write the description as text (quote it if it starts with a symbol)",
    "down": "give the down file's path or the down SQL as text",
    "online": "use auto, inplace (never block writes), instant, copy (an online copy) or off"
    " (send as written)",
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
    if _plainly_valid(mapping):
        return ()
    lines = key_lines or {}
    problems = []
    errors = sorted(_validator().iter_errors(dict(mapping)), key=lambda e: list(map(str, e.path)))
    for error in errors:
        field = str(error.path[0]) if error.path else None
        where = f"header field {field!r}" if field else "header"
        problems.append(
            error_finding(
                "header.schema",
                f"{where}: {error.message}",
                _FIELD_HINTS.get(field or "", "see lupo_migrate/schemas/header.schema.json"),
                path=path,
                line=lines.get(field or "", line),
            )
        )
    return tuple(problems)
