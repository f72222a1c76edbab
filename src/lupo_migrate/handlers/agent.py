"""The ``agent`` handler: declarative configuration records, upserted by key, restored exactly.

An agent migration is a YAML or JSON file. Records go into a table::

    migration: {id: agents_love, depends_on: [V4__agents_table]}
    table: lupo_agents             # core; or ${core}.lupo_agents, other_schema.t
    key: agent_key                 # or [tenant, agent_key]
    records:
      - {agent_key: CAPTAIN, name: Captain, status: active}
    delete:
      - {agent_key: OLD_AGENT}

or into agent folders (like Lupopedia's ``agents/0001/metadata.json``) under the files
directory (setting ``files``)::

    migration: {id: agents_files}
    directory: agents
    key: id                        # the folder is named by this field (default: id)
    file: metadata.json            # the record's file in its folder (default)
    records:
      - {id: "0006", code: WOLFIE, status: active, version: 1.0.0}
    delete: [{id: "0005"}]

Upsert by key: a record whose key is absent is inserted (a new folder with its JSON file); one
that exists gets the fields given (the others keep their values; in a JSON file only those
values' characters change); ``delete`` removes records (folders) by key. Nothing changes for a
record that already has those values.

Before each change the previous record is kept as an undo record in the run's journal (the
whole row, deleted ones included; a file's bytes), committed at once, so a rollback, after a
failure, a crash or an operator's decision, restores the previous records exactly: updated
rows get every column back, inserted ones are deleted, deleted ones come back, and files get
their original bytes. Statements go through the journal like doctrine statements (visible in
``history``; skipped on resume when done).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, final

import attrs

from lupo_migrate._frontmatter import HeaderEditError, Operations, edit_header
from lupo_migrate._model import Step
from lupo_migrate._yaml import load_yaml
from lupo_migrate.errors import StepError
from lupo_migrate.handlers._federation import quote_identifier
from lupo_migrate.handlers._undo import FileUndo, file_undos, restore_files, sha256
from lupo_migrate.handlers._undo import write_atomically as _write

__all__ = ["ROLLBACK_OFFSET", "AgentHandler", "AgentSpec", "parse_spec"]

#: Journal indexes of the statements a rollback runs start here (forward ones use 0, 1...).
ROLLBACK_OFFSET: Final = 10_000
#: The first line of a row undo record in the journal.
ROW_MARK: Final = "-- lupo_migrate undo: row"
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen(kw_only=True)
class AgentSpec:
    """What an agent step does (see the module docstring).

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


def _bad(step: Step, message: str) -> StepError:
    return StepError(step.id, step.path, message)


def parse_spec(step: Step, text: str, names: Mapping[str, str]) -> AgentSpec:
    """The spec of an agent step from its file's text (*names*: federation placeholders).

    Raises:
        StepError: the spec is missing or malformed; the message names the key and value.
    """
    value, problems = load_yaml(text, path=step.path)
    if not isinstance(value, dict):
        raise _bad(step, "; ".join(str(p) for p in problems) or "not a mapping of fields")
    table, directory = value.get("table"), value.get("directory")
    if (table is None) == (directory is None):
        raise _bad(step, "give either 'table' (records in a table) or 'directory' (agent folders)")
    key = value.get("key", "id" if directory is not None else None)
    keys = (key,) if isinstance(key, str) else tuple(key) if isinstance(key, list) else ()
    if not keys or not all(isinstance(k, str) and _NAME.match(k) for k in keys):
        raise _bad(step, f"'key' must name the key field(s), e.g. key: agent_key; got {key!r}")

    def rows(name: str) -> tuple[dict[str, Any], ...]:
        listed = value.get(name) or []
        if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
            raise _bad(step, f"'{name}' must be a list of records (mappings), got {listed!r}")
        for index, row in enumerate(listed, 1):
            missing = [k for k in keys if row.get(k) in (None, "")]
            if missing:
                raise _bad(step, f"{name} #{index} has no {', '.join(missing)} (the key): {row!r}")
            bad = [str(c) for c in row if not isinstance(c, str) or not _NAME.match(c)]
            if table is not None and bad:
                raise _bad(step, f"{name} #{index}: {', '.join(bad)} is not a column name")
        return tuple({str(k): v for k, v in row.items()} for row in listed)

    records, delete = rows("records"), rows("delete")
    if not records and not delete:
        raise _bad(step, "nothing to do: give records or delete")
    seen: set[tuple[Any, ...]] = set()
    for row in records + delete:
        ident = tuple(json.dumps(row[k], default=str) for k in keys)
        if ident in seen:
            raise _bad(step, f"the key {dict(zip(keys, ident, strict=True))} appears twice")
        seen.add(ident)
    located: tuple[str | None, str] | None = None
    if table is not None:
        if not isinstance(table, str) or not table:
            raise _bad(step, f"'table' must name a table, got {table!r}")
        rendered = _PLACEHOLDER.sub(lambda m: names.get(m[1], m[0]), table)
        schema, _, name = rendered.rpartition(".")
        if "${" in rendered or not _NAME.match(name) or (schema and not _NAME.match(schema)):
            raise _bad(step, f"'table': {table!r} is not a table name (schema.table)")
        located = (schema or None, name)
    else:
        if (
            not isinstance(directory, str)
            or Path(directory).is_absolute()
            or ".." in Path(directory).parts
        ):
            raise _bad(
                step, f"'directory': {directory!r} must be a path inside the files directory"
            )
        if len(keys) != 1:
            raise _bad(step, "agent folders are named by one key field")
        for row in records + delete:
            name = str(row[keys[0]])
            if "/" in name or "\\" in name or name in (".", ".."):
                raise _bad(step, f"{keys[0]} {name!r} cannot name a folder")
    file = value.get("file", "metadata.json")
    if not isinstance(file, str) or "/" in file or not file:
        raise _bad(step, f"'file' must be a file name, got {file!r}")
    return AgentSpec(
        table=located,
        directory=directory,
        key=keys,
        file=file,
        records=records,
        delete=delete,
    )


# ---------------------------------------------------------------------------------- values


def _encode(value: Any) -> Any:
    """A column value as JSON (types JSON lacks are tagged)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {
            "$time": value.isoformat(sep=" ")
            if isinstance(value, datetime.datetime)
            else value.isoformat()
        }
    if isinstance(value, datetime.timedelta):
        return {"$interval": value.total_seconds()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$bytes":
            return base64.b64decode(inner)
        if tag == "$decimal":
            return decimal.Decimal(inner)
        if tag == "$time":
            return _Text(inner)
        if tag == "$interval":
            return datetime.timedelta(seconds=inner)
    return value


class _Text(str):
    """A date or time kept as the text the database gave (written back as such)."""


def _literal(value: Any, *, family: str, backslashes: bool) -> str:
    """*value* as an SQL literal of *family* (``mysql``, ``postgresql``, ``sqlite``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return ("1" if value else "0") if family == "sqlite" else ("TRUE" if value else "FALSE")
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, _Text):
        return str(value)
    if isinstance(value, bytes):
        if family == "postgresql":
            return f"'\\x{value.hex()}'::bytea"
        return f"X'{value.hex()}'"
    if isinstance(value, datetime.timedelta):
        seconds = int(value.total_seconds())
        sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
        value = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    if backslashes:
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def _same(old: Any, new: Any) -> bool:
    if isinstance(new, dict | list) and isinstance(old, str):
        try:
            return bool(json.loads(old) == new)
        except ValueError:
            return False
    if isinstance(new, bool) and isinstance(old, int):
        return old == int(new)
    if isinstance(old, decimal.Decimal) and isinstance(new, int | float):
        return old == decimal.Decimal(str(new))
    if isinstance(old, datetime.datetime | datetime.date):
        return _encode(old) == {"$time": str(new)} or str(old) == str(new)
    return bool(old == new)


# ---------------------------------------------------------------------------------- handler


@final
@attrs.frozen
class AgentHandler:
    """Upserts configuration records by key and restores them exactly (type ``agent``)."""

    file_type: str = "agent"
    suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")
    #: Undo records are committed before the change they undo (records may be files).
    transactional: bool = False

    def apply(self, step: Step, context: Any) -> None:
        """Upsert and delete the step's records, keeping the previous ones first.

        Raises:
            StepError: the spec is malformed, the table or a column does not exist, or a
                record file is not a JSON object (names the file and what to do).
            StatementError: the database refused a statement.
        """
        spec = parse_spec(step, context.read_text(step.path), context.names)
        if spec.table is not None:
            _Rows(step, spec, context).apply()
        else:
            _Folders(step, spec, context).apply()

    def rollback(self, step: Step, context: Any) -> None:
        """Put the previous records back (newest change first)."""
        spec = parse_spec(step, context.read_text(step.path), context.names)
        if spec.table is not None:
            _Rows(step, spec, context).rollback()
        else:
            restore_files(step, _root(step, context), file_undos(context))

    def can_rollback(self, step: Step) -> bool:
        """True: every previous record is kept before it changes."""
        del step
        return True

    def effects(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        names: Mapping[str, str],
        renames: Mapping[str, str],
    ) -> list[tuple[str, str, str, str | None]]:
        """What the step touches, for the run's validators: ``(kind, name, action, new)``."""
        del dialect, renames
        spec = parse_spec(step, text, names)
        if spec.table is None:
            return []
        schema, table = spec.table
        return [] if schema not in (None, names.get("core")) else [("table", table, "write", None)]


def _root(step: Step, context: Any) -> Path:
    root = getattr(context, "files_root", None)
    if root is None:
        raise _bad(step, "no files directory: set `files` (the directory agent folders are in)")
    return Path(root)


@attrs.define
class _Rows:
    """Records in a table, through the step's connection and the journal."""

    step: Step
    spec: AgentSpec
    context: Any
    _next: int = 0

    @property
    def family(self) -> str:
        name = str(self.context.dialect)
        return "mysql" if name in ("mysql", "mariadb") else name

    def _name(self) -> str:
        assert self.spec.table is not None
        schema, table = self.spec.table
        quoted = quote_identifier(table, dialect=self.family)
        return (
            quoted
            if schema is None
            else f"{quote_identifier(schema, dialect=self.family)}.{quoted}"
        )

    def _q(self, column: str) -> str:
        return quote_identifier(column, dialect=self.family)

    def _lit(self, value: Any) -> str:
        backslashes = self.family == "mysql" and bool(
            getattr(self.context.connection.dialect, "_backslash_escapes", True)
        )
        return _literal(value, family=self.family, backslashes=backslashes)

    def _where(self, row: Mapping[str, Any]) -> str:
        return " AND ".join(f"{self._q(k)} = {self._lit(row[k])}" for k in self.spec.key)

    def _current(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        sql = f"SELECT * FROM {self._name()} WHERE {self._where(row)}"
        try:
            result = self.context.connection.exec_driver_sql(sql)
        except Exception as error:  # no such table or column: say which
            raise _bad(self.step, f"cannot read {self._name()}: {error}".split("\n")[0]) from error
        found = result.mappings().first()
        return None if found is None else dict(found)

    def _run(self, sql: str) -> None:
        """Run one statement, journalled. Upserts are worked out from the rows as they are,
        so a resumed step does again only what is left: indexes go on after the done ones."""
        self.context.execute(sql, index=self._next)
        self._next += 1

    def _start(self, offset: int) -> None:
        done = [i for i in self.context.done() if offset <= i < offset + ROLLBACK_OFFSET]
        self._next = max(done) + 1 if done else offset

    def _insert(self, row: Mapping[str, Any]) -> str:
        columns = ", ".join(self._q(c) for c in row)
        values = ", ".join(self._lit(v) for v in row.values())
        return f"INSERT INTO {self._name()} ({columns}) VALUES ({values})"

    def _update(self, key: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
        sets = ", ".join(f"{self._q(c)} = {self._lit(v)}" for c, v in fields.items())
        return f"UPDATE {self._name()} SET {sets} WHERE {self._where(key)}"

    def apply(self) -> None:
        self._start(0)
        for record in self.spec.records:
            old = self._current(record)
            if old is not None:
                unknown = sorted(set(record) - set(old))
                if unknown:
                    raise _bad(self.step, f"{self._name()} has no column {', '.join(unknown)}")
                fields = {
                    c: v
                    for c, v in record.items()
                    if c not in self.spec.key and not _same(old[c], v)
                }
                if not fields:
                    continue
                self._keep({"restore": {c: _encode(v) for c, v in old.items()}})
                self._run(self._update(record, fields))
            else:
                self._keep({"delete": {k: _encode(record[k]) for k in self.spec.key}})
                self._run(self._insert(record))
        for key in self.spec.delete:
            old = self._current(key)
            if old is None:
                continue
            self._keep({"restore": {c: _encode(v) for c, v in old.items()}})
            self._run(f"DELETE FROM {self._name()} WHERE {self._where(key)}")

    def _keep(self, undo: Mapping[str, Any]) -> None:
        """Record what puts this record back, before it changes."""
        self.context.record(f"{ROW_MARK}\n{json.dumps(undo, sort_keys=True)}")

    def rollback(self) -> None:
        undos = [
            json.loads(text[len(ROW_MARK) :])
            for _, text in self.context.records()
            if text.startswith(ROW_MARK)
        ]
        self._start(ROLLBACK_OFFSET)
        for undo in reversed(undos):
            if "delete" in undo:
                key = {k: _decode(v) for k, v in undo["delete"].items()}
                self._run(f"DELETE FROM {self._name()} WHERE {self._where(key)}")
                continue
            row = {c: _decode(v) for c, v in undo["restore"].items()}
            if self._current(row) is None:
                self._run(self._insert(row))
            else:
                fields = {c: v for c, v in row.items() if c not in self.spec.key}
                if fields:
                    self._run(self._update(row, fields))


@attrs.define
class _Folders:
    """Agent folders under the files directory: one JSON record file per folder."""

    step: Step
    spec: AgentSpec
    context: Any

    def apply(self) -> None:
        assert self.spec.directory is not None
        root = _root(self.step, self.context)
        base = root / self.spec.directory
        key = self.spec.key[0]
        for record in self.spec.records:
            relpath = f"{self.spec.directory}/{record[key]}/{self.spec.file}"
            path = root / relpath
            if path.exists():
                data = path.read_bytes()
                try:
                    new, changes = edit_header(
                        data.decode("utf-8"),
                        path=relpath,
                        operations=Operations(add=dict(record)),
                        fmt="json",
                    )
                except (HeaderEditError, UnicodeDecodeError) as error:
                    raise _bad(self.step, f"{relpath}: {error}; it must be a JSON object") from None
                if not changes:
                    continue
                encoded = new.encode("utf-8")
            else:
                data = None
                encoded = (json.dumps(record, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
            self.context.record(
                FileUndo(path=relpath, before=data, after_sha=sha256(encoded)).text()
            )
            _write(path, encoded)
        for keyed in self.spec.delete:
            folder = base / str(keyed[key])
            if not folder.is_dir():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                relpath = path.relative_to(root).as_posix()
                self.context.record(
                    FileUndo(path=relpath, before=path.read_bytes(), after_sha=None).text()
                )
                path.unlink()
            for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                directory.rmdir()
            folder.rmdir()
