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

Two parts live apart to keep this module readable in one sitting. ``_snapshot`` reads the
pre-images (a table's, with its backup table; the ``CREATE`` texts of views, triggers and
routines), numbers and drops backup tables, and gives table images their JSON form;
``_restore`` compares with the pre-images and puts objects back. :class:`PreImages` decides
what to snapshot and when, and keeps the material; the public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any

import attrs
import sqlalchemy as sa

from lupo_migrate._fingerprint import Fingerprint, restrict
from lupo_migrate._validation import referring
from lupo_migrate.ext.sqlalchemy._restore import RestoreReport, compare_images, put_back, refill
from lupo_migrate.ext.sqlalchemy._snapshot import (
    BACKUP_PREFIX,
    BackupLimitError,
    TableImage,
    _key,
    _own_connection,
    drop_backups,
    images_from_json,
    images_to_json,
    next_backup_number,
    show_create,
    table_image,
)
from lupo_migrate.ext.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.handlers._touch import Touch, touches

__all__ = ["BACKUP_PREFIX", "BackupLimitError", "PreImages", "RestoreReport", "drop_backups"]


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
        self._numbers = itertools.count(next_backup_number(self.tables.values()))

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
            return
        for key, sql in show_create(conn, touch, self.fingerprint, sqlite=self._sqlite):
            self.definitions[key] = sql

    def _table(self, conn: sa.Connection, name: str) -> TableImage:
        assert self.fingerprint is not None
        return table_image(
            conn,
            name,
            self.fingerprint,
            sqlite=self._sqlite,
            limit=self.limit,
            trust_down=self.trust_down,
            backup_name=self._backup_name,
        )

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
        return compare_images(conn, self.fingerprint, self.touched, self.tables, only, self._skip)

    def restore(self, only: Collection[str] | None = None) -> RestoreReport:
        """Put back every touched object (of *only*) that differs from its pre-image; compare
        again."""
        if self.fingerprint is None:
            return RestoreReport((), (), (), {}, 0)
        with self._connect() as conn:
            first = self.compare(conn, only)
            if first.verified or not self.restores:
                return first
            wrong = {d.key for d in first.differences} | {f"table:{n}" for n in first.data}
            restored, dropped = put_back(
                conn,
                wrong,
                self.fingerprint,
                self.definitions,
                sqlite=self._sqlite,
                refill_table=self._refill,
            )
            final = self.compare(conn, only)
        return attrs.evolve(final, restored=tuple(restored), dropped=tuple(dropped))

    def _refill(self, conn: sa.Connection, name: str) -> None:
        refill(conn, name, self.tables.get(name))

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
            "tables": images_to_json(self.tables),
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
        self.tables = images_from_json(data["tables"])
        self.definitions = dict(data["definitions"])
        self.unknown = list(data["unknown"])
        self.by_step = {step: set(keys) for step, keys in data["by_step"].items()}
        return True
