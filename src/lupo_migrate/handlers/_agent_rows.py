"""Agent records kept in a table: :class:`_Rows`, and how their values are written down.

The table side of the ``agent`` handler (:mod:`lupo_migrate.handlers.agent`): each record is
upserted or deleted by key through the step's connection, the whole previous row kept first as
an undo record in the journal (``ROW_MARK``), and a rollback puts those rows back. Column values
are encoded as JSON for the undo records (types JSON lacks are tagged) and rendered as SQL
literals of the dialect. It is apart from the handler because all of it is SQL and value
encoding, which the agent folders (JSON files under the files directory) never need.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from lupo_migrate.core.model import Step
from lupo_migrate.handlers._agent_spec import AgentSpec, spec_error
from lupo_migrate.handlers._federation import quote_identifier

__all__ = ["ROLLBACK_OFFSET", "ROW_MARK"]

#: Journal indexes of the statements a rollback runs start here (forward ones use 0, 1...).
ROLLBACK_OFFSET: Final = 10_000
#: The first line of a row undo record in the journal.
ROW_MARK: Final = "-- lupo_migrate undo: row"


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


# ---------------------------------------------------------------------------------- rows


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
            raise spec_error(
                self.step, f"cannot read {self._name()}: {error}".split("\n")[0]
            ) from error
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
                    raise spec_error(
                        self.step, f"{self._name()} has no column {', '.join(unknown)}"
                    )
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
