"""Pre-images and backups: restore and verify what a run's committed steps changed.

On MySQL/MariaDB DDL commits at once, so even the step that fails may leave changes; on SQLite
a step is one transaction, but the steps before the failing one (or every step of a run rolled
back later) committed. Both keep pre-images; the SQLite parts are noted below.

Before a run the target's fingerprint is read once (:meth:`PreImages.start`). Before a
statement first touches a table that existed before the run, that table's pre-image is taken
(:meth:`PreImages.before`): its ``SHOW CREATE TABLE``, the ``SHOW CREATE TRIGGER`` of its
triggers, its row count and checksum and, when it has rows, a copy of them in a backup table
(``lupo_bk_<run>_<n>``, in the backup schema). Views, triggers and routines a statement touches
keep their ``SHOW CREATE`` text. Objects the run creates need no pre-image: undoing the run
drops them.

After a rollback (:meth:`PreImages.restore`), every touched object is compared with its
pre-image; what still differs is put back from it (tables recreated and refilled from their
backup, with foreign key checks off; created objects dropped), and the comparison is made
again: the differences that remain, if any, are the rollback's failure.

MySQL: snapshots use their own connection (autocommit), never the step's: the step's pending
writes are neither committed nor seen by them. SQLite has one writer at a time, so snapshots
are taken on the step's own connection, inside its transaction: a step that fails takes its
snapshots (and backup tables) back with it, and its tables are as they were anyway. There
the ``CREATE`` texts come from ``sqlite_master`` (a table's with its indexes and triggers).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final

import attrs
import sqlalchemy as sa

from lupo_migrate._fingerprint import Difference, Fingerprint, TableData, diff, restrict
from lupo_migrate._validation import referring
from lupo_migrate.errors import StorageError
from lupo_migrate.ext.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.handlers._touch import Touch, touches

__all__ = ["BACKUP_PREFIX", "BackupLimitError", "PreImages", "RestoreReport", "drop_backups"]

#: Backup tables are named ``lupo_bk_<first 12 characters of the run id>_<n>``.
BACKUP_PREFIX: Final = "lupo_bk_"
_SHOW: Final = {"view": "VIEW", "trigger": "TRIGGER"}


class BackupLimitError(StorageError):
    """A table to back up has more rows than the backup limit."""


@attrs.frozen
class TableImage:
    """A table as it was before the run."""

    ddl: str
    triggers: tuple[str, ...]
    data: TableData
    backup: str | None
    columns: tuple[str, ...]


@attrs.frozen
class RestoreReport:
    """What a restore did and what still differs.

    Attributes:
        restored: objects put back from their pre-image (``table:t``...).
        dropped: objects the run had created, dropped.
        differences: what still differs from the pre-image afterwards (empty: verified).
        data: tables whose rows still differ, with (before, after).
        checked: how many objects were compared.
    """

    restored: tuple[str, ...]
    dropped: tuple[str, ...]
    differences: tuple[Difference, ...]
    data: Mapping[str, tuple[TableData, TableData]]
    checked: int

    @property
    def verified(self) -> bool:
        """Whether every touched object equals its pre-image, rows included."""
        return not self.differences and not self.data


@attrs.define
class PreImages:
    """The pre-images of one run on one MySQL/MariaDB database.

    Args:
        engine: the target engine (connections with the core schema as default database).
        run_id: the run's id (names its backup tables).
        backup_schema: where backup tables go (None: the core schema itself; SQLite: the name
            of an attached database).
        limit: the most rows a table may have to be backed up; beyond, ``BackupLimitError``.
        exclude: tables never snapshotted nor compared (lupo_migrate's own).
    """

    engine: sa.Engine
    run_id: str
    backup_schema: str | None = None
    limit: int = 100_000
    exclude: Callable[[str], bool] = lambda name: False
    fingerprint: Fingerprint | None = None
    touched: set[str] = attrs.field(factory=set)
    tables: dict[str, TableImage] = attrs.field(factory=dict)
    definitions: dict[str, str] = attrs.field(factory=dict)
    unknown: list[str] = attrs.field(factory=list)
    #: The step whose statements run now, and the objects each step touched (for partial
    #: rollbacks: an object another step touched too cannot be put back from its pre-image).
    step: str | None = None
    #: The current step has a down of its own: a table over the limit is not copied.
    trust_down: bool = False
    by_step: dict[str, set[str]] = attrs.field(factory=dict)
    _numbers: Any = attrs.field(factory=lambda: itertools.count(1))
    _schema: str = ""

    @property
    def _sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def _postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def restores(self) -> bool:
        """Whether objects are put back from these pre-images (MySQL, SQLite), or only compared
        with them (PostgreSQL, where a table's definition cannot be read back as DDL)."""
        return not self._postgresql

    def _connect(self) -> AbstractContextManager[sa.Connection]:
        """A connection of its own: autocommit on MySQL; on SQLite (whose engine issues its own
        BEGIN) a transaction committed when the block ends."""
        return _own_connection(self.engine)

    def start(self) -> None:
        """Read the fingerprint the pre-images are taken from, and keep the (empty) material:
        a run that dies before it snapshots anything can still be resumed from it."""
        with self._connect() as conn:
            if not self._sqlite:
                here = "current_schema()" if self._postgresql else "DATABASE()"
                self._schema = str(conn.exec_driver_sql(f"SELECT {here}").scalar())
            self.fingerprint = read_fingerprint(conn, exclude=self._skip)
        self.save()

    def resume(self) -> None:
        """Go on recording after :meth:`load`, for a run that goes on after its process died:
        what the run has not touched yet is as it was before the run, so its pre-run state is
        read from the live schema; backup tables go on being numbered after the kept ones."""
        assert self.fingerprint is not None, "load() the material first"
        with self._connect() as conn:
            live = read_fingerprint(conn, exclude=self._skip)
        objects = {k: v for k, v in live.objects.items() if k not in self.touched}
        objects.update(self.fingerprint.objects)
        self.fingerprint = Fingerprint(dialect=live.dialect, objects=objects)
        taken = [
            int(found.group(1))
            for image in self.tables.values()
            if image.backup and (found := re.search(r"_(\d+)\W*$", image.backup))
        ]
        self._numbers = itertools.count(max(taken, default=0) + 1)

    def _skip(self, name: str) -> bool:
        return name.startswith(BACKUP_PREFIX) or self.exclude(name)

    def before(self, statement: str, connection: sa.Connection | None = None) -> None:
        """Take the pre-images of what *statement* touches for the first time in this run,
        and keep the material saved (so a run that dies can still be rolled back).

        Args:
            statement: the statement about to run.
            connection: the step's connection (SQLite and PostgreSQL snapshot on it).
        """
        if self.fingerprint is None:
            return
        todo = self._touches(statement)
        if todo:
            self._take(todo, connection)
            self.save(connection if self._sqlite else None)

    def note(self, statement: str) -> None:
        """Count what *statement* touches, without snapshots: for a run that died, whose
        journal tells what ran (what existed before was snapshotted and saved then)."""
        if self.fingerprint is not None:
            self._touches(statement)

    def _touches(self, statement: str) -> list[Touch]:
        """Record what *statement* touches; returns the objects it is the first to touch that
        existed before the run (those need a snapshot)."""
        assert self.fingerprint is not None
        found = [t for t in map(self._resolve, touches(statement, dialect=self._family)) if t]
        # What refers to a renamed table is rewritten with it (InnoDB's foreign keys; SQLite's
        # foreign keys, views and triggers): it changes too.
        renamed = {t.name for t in found if t.action == "rename" and t.kind == "table"}
        if renamed:
            for key in sorted(referring(self.fingerprint, renamed)):
                kind, _, name = key.partition(":")
                found.append(Touch(kind, name, "alter"))
        mine = self.by_step.setdefault(self.step or "", set())
        for touch in found:  # a renamed table's new name is touched too (it must go again)
            mine.add(_key(touch))
            if touch.new_name is not None:
                self.touched.add(f"{touch.kind}:{touch.new_name}")
                mine.add(f"{touch.kind}:{touch.new_name}")
        new = [t for t in found if _key(t) not in self.touched]
        for touch in new:
            self.touched.add(_key(touch))
            if touch.kind == "unknown":
                self.unknown.append(touch.name)
            elif touch.kind == "routine":  # the statement may name a procedure or a function
                self.touched.add(f"routine:procedure:{touch.name}")
                self.touched.add(f"routine:function:{touch.name}")
        return [t for t in new if self._existed(t)]

    def _take(self, todo: list[Touch], connection: sa.Connection | None) -> None:
        if todo and not self.restores and connection is not None:
            for touch in todo:  # PostgreSQL: rows only, read in the step's transaction
                if touch.kind == "table" and not self._skip(touch.name):
                    data = table_data(connection, [touch.name])[touch.name]
                    self.tables[touch.name] = TableImage("", (), data, None, ())
        elif todo and self._sqlite and connection is not None:
            for touch in todo:
                self._snapshot(connection, touch)
        elif todo:
            with self._connect() as conn:
                for touch in todo:
                    self._snapshot(conn, touch)

    @property
    def _family(self) -> str:
        return {"sqlite": "sqlite", "postgresql": "postgresql"}.get(
            self.engine.dialect.name, "mysql"
        )

    def _resolve(self, touch: Touch) -> Touch | None:
        """SQLite's ``DROP INDEX i`` names no table: the index's table is what it touches (an
        index the fingerprint does not know was made by this run, on a table touched then)."""
        if touch.kind != "unknown" or not touch.name.lower().startswith("index "):
            return touch
        assert self.fingerprint is not None
        index = touch.name.split(None, 1)[1].strip('`"[]')
        for key, value in self.fingerprint.objects.items():
            if key.startswith("table:") and any(
                i.get("name") == index for i in value.get("indexes", ())
            ):
                return Touch("table", key[6:], "alter")
        return None

    def _existed(self, touch: Touch) -> bool:
        assert self.fingerprint is not None
        if touch.schema not in (None, self._schema or "main"):
            self.unknown.append(f"{touch.schema}.{touch.name}")
            return False
        if touch.kind == "routine":
            return any(
                f"routine:{kind}:{touch.name}" in self.fingerprint.objects
                for kind in ("procedure", "function")
            )
        return _key(touch) in self.fingerprint.objects

    def _snapshot(self, conn: sa.Connection, touch: Touch) -> None:
        assert self.fingerprint is not None
        name = touch.name
        if touch.kind == "table":
            if self._skip(name):
                return
            self.tables[name] = self._table(conn, name)
        elif touch.kind in _SHOW and self._sqlite:
            self.definitions[_key(touch)] = _master_sql(conn, touch.kind, name)
        elif touch.kind in _SHOW:
            row = conn.exec_driver_sql(f"SHOW CREATE {_SHOW[touch.kind]} {_q(name)}").one()
            self.definitions[_key(touch)] = str(row[1] if touch.kind == "view" else row[2])
        elif touch.kind == "routine":
            for kind in ("procedure", "function"):
                key = f"routine:{kind}:{name}"
                if key in self.fingerprint.objects:
                    row = conn.exec_driver_sql(f"SHOW CREATE {kind.upper()} {_q(name)}").one()
                    self.definitions[key] = str(row[2])

    def _table(self, conn: sa.Connection, name: str) -> TableImage:
        assert self.fingerprint is not None
        mine = [
            key[8:]
            for key, value in self.fingerprint.objects.items()
            if key.startswith("trigger:") and value.get("table") == name
        ]
        if self._sqlite:
            ddl = _master_sql(conn, "table", name)
            # Indexes are recreated with the triggers, after the rows are back.
            triggers = tuple(
                str(sql)
                for (sql,) in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN"
                    " ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name",
                    (name,),
                )
            )
        else:
            ddl = str(conn.exec_driver_sql(f"SHOW CREATE TABLE {_q(name)}").one()[1])
            triggers = tuple(
                str(conn.exec_driver_sql(f"SHOW CREATE TRIGGER {_q(t)}").one()[2]) for t in mine
            )
        data = table_data(conn, [name])[name]
        columns = tuple(
            c["name"]
            for c in self.fingerprint.objects[f"table:{name}"]["columns"]
            if not c.get("generated") and not c.get("hidden")
        )
        backup = None
        if data.rows > self.limit and self.trust_down:
            pass  # its down section undoes it; the comparison afterwards checks the rows
        elif data.rows:
            if data.rows > self.limit:
                raise BackupLimitError(
                    f"table {name} has {data.rows} rows, more than the backup limit"
                    f" ({self.limit}): give the migration that changes it a down section"
                    " (-- lupo:down), or raise the limit (--backup-limit)"
                )
            backup = self._backup_name()
            cols = ", ".join(_q(c) for c in columns)
            if self._sqlite:  # the rows are what matters; the definition is in ddl
                conn.exec_driver_sql(f"CREATE TABLE {backup} AS SELECT {cols} FROM {_q(name)}")
            else:
                conn.exec_driver_sql(f"CREATE TABLE {backup} LIKE {_q(name)}")
                conn.exec_driver_sql(f"INSERT INTO {backup} ({cols}) SELECT {cols} FROM {_q(name)}")
        return TableImage(ddl=ddl, triggers=triggers, data=data, backup=backup, columns=columns)

    def _backup_name(self) -> str:
        return self._qualified(f"{BACKUP_PREFIX}{self.run_id[:12]}_{next(self._numbers)}")

    def _qualified(self, name: str) -> str:
        quote = self.engine.dialect.identifier_preparer.quote_identifier
        table = quote(name)
        return table if self.backup_schema is None else f"{quote(self.backup_schema)}.{table}"

    # ------------------------------------------------------------------ after a rollback

    def keys_of(self, steps: Collection[str]) -> set[str]:
        """The objects *steps* touched (with the routine aliases the pre-images use)."""
        keys: set[str] = set()
        for step in steps:
            for key in self.by_step.get(step, ()):
                keys.add(key)
                if key.startswith("routine:?:"):
                    keys.update(f"routine:{k}:{key[10:]}" for k in ("procedure", "function"))
        return keys

    def compare(self, conn: sa.Connection, only: Collection[str] | None = None) -> RestoreReport:
        """The touched objects (or those of *only*) compared with their pre-images."""
        assert self.fingerprint is not None
        now = read_fingerprint(conn, exclude=self._skip)
        keys = self.touched if only is None else self.touched & set(only)
        differences = diff(restrict(self.fingerprint, keys), restrict(now, keys))
        mine = [n for n in self.tables if f"table:{n}" in keys]
        after = table_data(conn, [n for n in mine if f"table:{n}" in now.objects])
        data = {
            name: (self.tables[name].data, after[name])
            for name in mine
            if name in after and after[name] != self.tables[name].data
        }
        return RestoreReport((), (), differences, data, len(keys))

    def restore(self, only: Collection[str] | None = None) -> RestoreReport:
        """Put back every touched object (of *only*) that differs from its pre-image; compare
        again."""
        if self.fingerprint is None:
            return RestoreReport((), (), (), {}, 0)
        restored: list[str] = []
        dropped: list[str] = []
        with self._connect() as conn:
            first = self.compare(conn, only)
            if first.verified or not self.restores:
                return first
            wrong = {d.key for d in first.differences} | {f"table:{n}" for n in first.data}
            checks = "PRAGMA foreign_keys = " if self._sqlite else "SET FOREIGN_KEY_CHECKS = "
            conn.exec_driver_sql(checks + "0")
            try:
                # What the run created goes first (triggers and views before tables); then
                # tables come back, then what is defined on them (routines, views, triggers).
                for key in sorted(wrong - self.fingerprint.objects.keys(), key=_order):
                    _drop(conn, *key.split(":", 1))
                    dropped.append(key)
                for key in sorted(
                    wrong & self.fingerprint.objects.keys(), key=_order, reverse=True
                ):
                    kind, _, name = key.partition(":")
                    if kind == "table":
                        self._refill(conn, name)
                    elif key in self.definitions:
                        _drop(conn, kind, name)
                        conn.exec_driver_sql(self.definitions[key])
                    else:
                        continue
                    restored.append(key)
            finally:
                if not self._sqlite:  # SQLite's default is off; a pragma is per connection
                    conn.exec_driver_sql(checks + "1")
            final = self.compare(conn, only)
        return attrs.evolve(final, restored=tuple(restored), dropped=tuple(dropped))

    def _refill(self, conn: sa.Connection, name: str) -> None:
        image = self.tables.get(name)
        if image is None:
            raise StorageError(f"no pre-image of table {name}: it cannot be restored")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(name)}")
        conn.exec_driver_sql(image.ddl)
        if image.backup is not None:
            cols = ", ".join(_q(c) for c in image.columns)
            conn.exec_driver_sql(
                f"INSERT INTO {_q(name)} ({cols}) SELECT {cols} FROM {image.backup}"
            )
        for trigger in image.triggers:
            conn.exec_driver_sql(trigger)

    @property
    def backups(self) -> tuple[str, ...]:
        """This run's backup tables (qualified, quoted)."""
        return tuple(image.backup for image in self.tables.values() if image.backup)

    def drop_backups(self) -> None:
        """Drop this run's backup tables and saved material (no longer needed)."""
        drop_backups(self.engine, self.run_id, self.backup_schema)

    # ------------------------------------------------------------------ kept after a run

    def to_json(self) -> str:
        """What a rollback of the completed run needs, as JSON (the pre-run fingerprint of the
        touched objects only)."""
        assert self.fingerprint is not None
        data = {
            "format": 1,
            "schema": self._schema,
            "fingerprint": restrict(self.fingerprint, self.touched).to_json(),
            "touched": sorted(self.touched),
            "tables": {
                name: {
                    "ddl": image.ddl,
                    "triggers": list(image.triggers),
                    "rows": image.data.rows,
                    "checksum": image.data.checksum,
                    "backup": image.backup,
                    "columns": list(image.columns),
                }
                for name, image in self.tables.items()
            },
            "definitions": self.definitions,
            "unknown": self.unknown,
            "by_step": {step: sorted(keys) for step, keys in self.by_step.items()},
        }
        return json.dumps(data, sort_keys=True, ensure_ascii=True)

    def save(self, connection: sa.Connection | None = None) -> str | None:
        """Keep the material in the backup schema (``lupo_bk_<run>_0``, replaced each time);
        returns its name. Taken again after each new snapshot during a run, so a run that
        dies can still be rolled back from it (``recover``).

        Args:
            connection: SQLite: the step's connection (the one writer), written with the step.
        """
        if self.fingerprint is None:
            return None
        table = self._material_name()
        kind, mark = {"sqlite": ("TEXT", "?"), "postgresql": ("TEXT", "%s")}.get(
            self.engine.dialect.name, ("LONGTEXT", "%s")
        )
        with contextlib.ExitStack() as stack:
            conn = connection if connection is not None else stack.enter_context(self._connect())
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {table} (material {kind} NOT NULL)")
            conn.exec_driver_sql(f"DELETE FROM {table}")
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({mark})", (self.to_json(),))
        return table

    def _material_name(self) -> str:
        return self._qualified(f"{BACKUP_PREFIX}{self.run_id[:12]}_0")

    def load(self) -> bool:
        """Read the material :meth:`save` kept; False when there is none (purged)."""
        try:
            with self._connect() as conn:
                text = conn.exec_driver_sql(
                    f"SELECT material FROM {self._material_name()}"
                ).scalar()
        except (sa.exc.ProgrammingError, sa.exc.OperationalError):
            return False  # no such table: purged
        if text is None:
            return False
        data = json.loads(str(text))
        self._schema = data["schema"]
        self.fingerprint = Fingerprint.from_json(data["fingerprint"])
        self.touched = set(data["touched"])
        self.tables = {
            name: TableImage(
                ddl=t["ddl"],
                triggers=tuple(t["triggers"]),
                data=TableData(rows=t["rows"], checksum=t["checksum"]),
                backup=t["backup"],
                columns=tuple(t["columns"]),
            )
            for name, t in data["tables"].items()
        }
        self.definitions = dict(data["definitions"])
        self.unknown = list(data["unknown"])
        self.by_step = {step: set(keys) for step, keys in data["by_step"].items()}
        return True


def drop_backups(engine: sa.Engine, run_id: str, backup_schema: str | None) -> tuple[str, ...]:
    """Drop every backup table of *run_id* (material included); returns their names."""
    if engine.dialect.name == "sqlite":
        prefix = f"{BACKUP_PREFIX}{run_id[:12]}_"
        schema = "" if backup_schema is None else f"{_q(backup_schema)}."  # an attached file
        with _own_connection(engine) as conn:
            names = [
                str(n)
                for (n,) in conn.exec_driver_sql(
                    f"SELECT name FROM {schema}sqlite_master"
                    " WHERE type = 'table' AND substr(name, 1, ?) = ?",
                    (len(prefix), prefix),
                )
            ]
            for n in names:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}{_q(n)}")
        return tuple(names)
    pattern = f"{BACKUP_PREFIX}{run_id[:12]}_".replace("_", "\\_") + "%"
    here = "current_schema()" if engine.dialect.name == "postgresql" else "DATABASE()"
    where = here if backup_schema is None else "%s"
    params = (pattern,) if backup_schema is None else (backup_schema, pattern)
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        names = [
            str(row[0])
            for row in conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables"
                f" WHERE table_schema = {where} AND table_name LIKE %s",
                params,
            )
        ]
        quote = engine.dialect.identifier_preparer.quote_identifier
        qualified = [
            quote(n) if backup_schema is None else f"{quote(backup_schema)}.{quote(n)}"
            for n in names
        ]
        if qualified:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(qualified)}")
    return tuple(names)


def _key(touch: Touch) -> str:
    if touch.kind == "routine":
        return f"routine:?:{touch.name}"
    return f"{touch.kind}:{touch.name}"


def _own_connection(engine: sa.Engine) -> AbstractContextManager[sa.Connection]:
    if engine.dialect.name == "sqlite":
        return engine.begin()
    return engine.execution_options(isolation_level="AUTOCOMMIT").connect()


def _master_sql(conn: sa.Connection, kind: str, name: str) -> str:
    """SQLite: the ``CREATE`` text of an object, from ``sqlite_master``."""
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)
    ).scalar()
    if sql is None:
        raise StorageError(f"no definition of {kind} {name} in sqlite_master")
    return str(sql)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _order(key: str) -> tuple[int, str]:
    """Triggers, views, routines, then tables: the order to drop in (reversed: to create)."""
    return ({"trigger": 0, "view": 1, "routine": 2}.get(key.partition(":")[0], 3), key)


def _drop(conn: sa.Connection, kind: str, name: str) -> None:
    if kind == "routine":
        rtype, _, rname = name.partition(":")
        conn.exec_driver_sql(f"DROP {rtype.upper()} IF EXISTS {_q(rname)}")
    elif kind in ("table", "view", "trigger"):
        conn.exec_driver_sql(f"DROP {kind.upper()} IF EXISTS {_q(name)}")
