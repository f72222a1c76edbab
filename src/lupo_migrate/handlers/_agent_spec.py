"""What an agent step says: :class:`AgentSpec`, read and checked by :func:`parse_spec`.

The spec of an agent migration file (its format is described in
:mod:`lupo_migrate.handlers.agent`): the table or the agent folders' directory, the key fields,
the records to upsert and the keys to delete, with every malformed value refused before anything
runs. It is apart from the handler because reading and checking the file is pure (text in, value
or :class:`StepError` out) and needs neither the database nor the files directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import Step
from lupo_migrate.files.yaml import load_yaml
from lupo_migrate.handlers._contain import unsafe

__all__ = ["AgentSpec", "parse_spec", "spec_error"]

_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen(kw_only=True)
class AgentSpec:
    """What an agent step does (see :mod:`lupo_migrate.handlers.agent`).

    Attributes:
        table: ``(schema or None, table)`` for records kept in a table, else None.
        directory: the agent folders' directory (relative to the files directory), else None.
        key: the key fields.
        file: the record's JSON file in its folder (folders only).
        records: the records to upsert.
        delete: the keys of the records to delete.
    """

    table: tuple[str | None, str] | None
    directory: str | None
    key: tuple[str, ...]
    file: str
    records: tuple[Mapping[str, Any], ...]
    delete: tuple[Mapping[str, Any], ...]


def spec_error(step: Step, message: str) -> StepError:
    """The error refusing *step*'s agent file, with *message* saying what is wrong."""
    return StepError(step.id, step.path, message)


def parse_spec(step: Step, text: str, names: Mapping[str, str]) -> AgentSpec:
    """The spec of an agent step from its file's text (*names*: federation placeholders).

    Raises:
        StepError: the spec is missing or malformed; the message names the key and value.
    """
    value, problems = load_yaml(text, path=step.path)
    if not isinstance(value, dict):
        raise spec_error(step, "; ".join(str(p) for p in problems) or "not a mapping of fields")
    table, directory = value.get("table"), value.get("directory")
    if (table is None) == (directory is None):
        raise spec_error(
            step, "give either 'table' (records in a table) or 'directory' (agent folders)"
        )
    key = value.get("key", "id" if directory is not None else None)
    keys = (key,) if isinstance(key, str) else tuple(key) if isinstance(key, list) else ()
    if not keys or not all(isinstance(k, str) and _NAME.match(k) for k in keys):
        raise spec_error(
            step, f"'key' must name the key field(s), e.g. key: agent_key; got {key!r}"
        )

    def rows(name: str) -> tuple[dict[str, Any], ...]:
        listed = value.get(name) or []
        if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
            raise spec_error(step, f"'{name}' must be a list of records (mappings), got {listed!r}")
        for index, row in enumerate(listed, 1):
            missing = [k for k in keys if row.get(k) in (None, "")]
            if missing:
                raise spec_error(
                    step, f"{name} #{index} has no {', '.join(missing)} (the key): {row!r}"
                )
            bad = [str(c) for c in row if not isinstance(c, str) or not _NAME.match(c)]
            if table is not None and bad:
                raise spec_error(step, f"{name} #{index}: {', '.join(bad)} is not a column name")
        return tuple({str(k): v for k, v in row.items()} for row in listed)

    records, delete = rows("records"), rows("delete")
    if not records and not delete:
        raise spec_error(step, "nothing to do: give records or delete")
    seen: set[tuple[Any, ...]] = set()
    for row in records + delete:
        ident = tuple(json.dumps(row[k], default=str) for k in keys)
        if ident in seen:
            raise spec_error(step, f"the key {dict(zip(keys, ident, strict=True))} appears twice")
        seen.add(ident)
    located: tuple[str | None, str] | None = None
    if table is not None:
        if not isinstance(table, str) or not table:
            raise spec_error(step, f"'table' must name a table, got {table!r}")
        rendered = _PLACEHOLDER.sub(lambda m: names.get(m[1], m[0]), table)
        schema, _, name = rendered.rpartition(".")
        if "${" in rendered or not _NAME.match(name) or (schema and not _NAME.match(schema)):
            raise spec_error(step, f"'table': {table!r} is not a table name (schema.table)")
        located = (schema or None, name)
    else:
        if not isinstance(directory, str) or unsafe(directory):
            raise spec_error(
                step, f"'directory': {directory!r} must be a path inside the files directory"
            )
        if len(keys) != 1:
            raise spec_error(step, "agent folders are named by one key field")
        for row in records + delete:
            name = str(row[keys[0]])
            if "/" in name or "\\" in name or name in (".", ".."):
                raise spec_error(step, f"{keys[0]} {name!r} cannot name a folder")
    file = value.get("file", "metadata.json")
    if not isinstance(file, str) or "/" in file or not file:
        raise spec_error(step, f"'file' must be a file name, got {file!r}")
    return AgentSpec(
        table=located,
        directory=directory,
        key=keys,
        file=file,
        records=records,
        delete=delete,
    )
