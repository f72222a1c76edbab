"""Pre-images: what a run must keep to undo exactly its own changes, and nothing else.

On MySQL DDL commits at once, so even the step that fails may leave changes; on SQLite a step
is one transaction, but the steps before the failing one (or every step of a run rolled back
later) committed. Both keep pre-images; the SQLite parts are noted below.

**Before the run** (:meth:`PreImages.start`) the target's fingerprint is read and the keys of
every object that exists are saved at once, durably: whatever point the run dies at, recovery
tells the objects the run created (and may drop) from those that were there (and may not).

**Before a step** (:meth:`PreImages.before_step`) and before any statement a step runs that was
not known beforehand (:meth:`PreImages.before`), each table that existed and is touched for
the first time gets its pre-image: its ``CREATE`` text and triggers, its key, and what the
run's statements need kept of its rows (:mod:`lupo_migrate.sql.needs`):

* ``shape`` (``ADD COLUMN``, ``CREATE INDEX``, ``RENAME``...): nothing; its rows stay;
* ``columns`` (``DROP COLUMN``): the column's values by key, set aside (any size);
* ``drop`` (``DROP TABLE``): on MySQL/MariaDB the table itself is moved into the backup schema
  instead of dropped (a *soft drop*: the statement is replaced by a ``RENAME``), when no foreign
  key of another table refers to it; else, and on SQLite, its rows are copied;
* ``rows`` (DML, ``MODIFY``...): its rows are copied (``lupo_bk_<run>_<n>``), up to the backup
  limit (beyond, the run is refused before it starts, see ``core.validation.backup_limit``, unless
  the step has a down of its own).

Snapshots are taken before a step's first statement, so that nothing of lupo_migrate's runs
between two statements of a file (SQLite takes them on the step's own connection, inside its
transaction; MySQL on a connection of its own). Views, triggers, routines and events a
statement touches keep their ``CREATE`` text. Tables are followed through renames: the run's
own creations, renames and drops are recorded by name (:attr:`PreImages.names`).

**When the run completes** (:meth:`PreImages.seal`, writes still frozen) the rows it changed are
sealed (see ``_rows``), and the definitions and rows of what it created are recorded: a later
rollback compares them with what is there then (:meth:`PreImages.preview`), lists what the
application changed since, and undoes only the run's own rows. Both live in the mixin
``_sealing``.

**After a rollback's undo statements** (:meth:`PreImages.restore`) every touched object is
compared with its pre-image and put back where it differs (``_restore``), never by dropping or
emptying a table it has no copy of; the comparison is made again, and what still differs is the
rollback's failure.

Three parts live apart: ``_snapshot`` reads pre-images and copies rows, ``_restore`` compares
and puts back (with ``_converge`` for definitions and ``_rows`` for rows by key), and
``_sealing`` (a mixin of :class:`PreImages`) seals a completed run and previews its rollback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

import attrs
import sqlalchemy as sa
from sqlalchemy import event

from lupo_migrate.backends.sqlalchemy import _rows
from lupo_migrate.backends.sqlalchemy._restore import (
    RestoreReport,
    checks_off,
    compare_images,
    put_back,
    uncopied,
)
from lupo_migrate.backends.sqlalchemy._sealing import Sealing
from lupo_migrate.backends.sqlalchemy._snapshot import (
    BACKUP_PREFIX,
    BackupLimitError,
    TableImage,
    _key,
    _own_connection,
    backup_names,
    copy_rows,
    count_upto,
    drop_backups,
    images_from_json,
    images_to_json,
    next_backup_number,
    routine_keys,
    set_aside,
    show_create,
    table_image,
)
from lupo_migrate.backends.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.backends.sqlite_files import sibling_store
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.fingerprint import Fingerprint, restrict
from lupo_migrate.core.validation import referring
from lupo_migrate.sql.lint import column_effects
from lupo_migrate.sql.needs import COLUMNS, DROP, ROWS, SHAPE, Need, needs, strongest
from lupo_migrate.sql.touches import Touch, touches

__all__ = [
    "BACKUP_PREFIX",
    "BackupLimitError",
    "PreImages",
    "RestoreReport",
    "drop_backups",
]

#: The name attach_backups gives a SQLite target's backups file (kept in step).
BACKUPS_ALIAS: Final = "lupo_backups"
#: The engines attach_backups() was called with.
_BACKUPS_ATTACHED: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
#: The material's format: 2 adds what existed, names, needs and sealed rows.
_FORMAT: Final = 2
#: A name the run dropped or renamed away (see PreImages.names).
_GONE: Final = ""


@attrs.define
class PreImages(Sealing):
    """The pre-images of one run on one MySQL/MariaDB or SQLite database (PostgreSQL: rows
    only, compared and not put back).

    Args:
        engine: the target engine (connections with the core schema as default database).
        run_id: the run's id (names its backup tables).
        backup_schema: where backup tables go (SQLite: the name of an attached database).
        limit: the most rows a table may have to be copied; beyond, ``BackupLimitError``.
        exclude: tables never snapshotted nor compared (lupo_migrate's own).
    """

    engine: sa.Engine
    run_id: str
    backup_schema: str | None = None
    limit: int = 100_000
    exclude: Callable[[str], bool] = lambda name: False
    #: Seconds a snapshot waits for a lock another session holds (then the step fails as
    #: blocked, nothing of it run, naming the sessions).
    lock_wait: int = 5
    fingerprint: Fingerprint | None = None
    #: The keys of every object that existed before the run (saved before it starts).
    existed: frozenset[str] = frozenset()
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
    #: Statements of unknown effect that ran, by step.
    unknown_by_step: dict[str, list[str]] = attrs.field(factory=dict)
    #: Table names the run changed the meaning of: a name now -> the table it named before the
    #: run (itself after a rename), None for a table the run created, "" for a name the run
    #: dropped or renamed away. A name absent here names what it named before the run.
    names: dict[str, str | None] = attrs.field(factory=dict)
    #: Tables the run moved to another schema (name before the run -> ``schema.name``).
    moved_out: dict[str, str] = attrs.field(factory=dict)
    #: What each step's statements (those announced) need kept, by table (its name before
    #: the run): what undoing that step from the pre-images relies on.
    step_needs: dict[str, dict[str, Need]] = attrs.field(factory=dict)
    #: Columns the run renamed, by table (its name before the run): name now -> name before.
    renamed_columns: dict[str, dict[str, str]] = attrs.field(factory=dict)
    #: The tables (names before the run) whose rows the run's own statements wrote
    #: (``INSERT``, ``UPDATE``, ``DELETE``...), or that it dropped or created (anything but
    #: altered or renamed); None when a statement may have written any
    #: (a ``CALL``, a function called, a statement of unknown effect), and in material kept
    #: before this was. A table the run only altered changed rows by its conversion alone:
    #: what else changed there meanwhile is the application's (see ``Sealing.seal``).
    rows_written: set[str] | None = attrs.field(factory=set)
    #: The material as :meth:`save` last committed it on a connection of its own (None:
    #: unknown), so that saving the same again writes nothing.
    _committed: str | None = attrs.field(default=None, init=False, repr=False)
    #: What the run's statements need kept of each table (its name before the run).
    plan: dict[str, Need] = attrs.field(factory=dict)
    #: Sealed: the run completed and its rows were sealed (a later rollback keeps the rows
    #: the application wrote since); else a rollback puts every row back (writes frozen).
    sealed: bool = False
    #: When sealed: what the run created, as it left it (definitions, and rows of tables).
    created: dict[str, Any] = attrs.field(factory=dict)
    _numbers: Any = attrs.field(factory=lambda: itertools.count(1))
    _schema: str = ""
    #: SQLite: material changed since it was last saved (see after_step).
    _dirty: bool = False
    #: The last statement seen by before(), and the names as they were before it.
    _before_last: Any = None
    #: SQLite: the engine of lupo_migrate's own connections (see _unpooled).
    _private: sa.Engine | None = None

    # ------------------------------------------------------------------ the engine

    @property
    def is_sqlite(self) -> bool:
        """Whether the target is SQLite."""
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether the target is PostgreSQL."""
        return self.engine.dialect.name == "postgresql"

    @property
    def restores(self) -> bool:
        """Whether objects are put back from these pre-images (on every engine now; kept for
        backends that only compare)."""
        return True

    @property
    def _in_step(self) -> bool:
        """Whether snapshots are taken, and the material saved, on the step's own connection
        inside its transaction (SQLite, PostgreSQL: DDL is transactional, and a step that
        fails takes its snapshots back with it); else on a connection of its own (MySQL)."""
        return self.is_sqlite or self.is_postgresql

    def _connect(self) -> AbstractContextManager[sa.Connection]:
        """A connection of its own: autocommit on MySQL, reading without row locks and
        waiting at most ``lock_wait`` seconds for a lock; on SQLite (whose engine issues its
        own BEGIN) a transaction committed when the block ends, on a connection that never
        goes back to the target's pool (a step given it would read our writes in
        ``last_insert_rowid()``, ``changes()`` and ``total_changes()``)."""
        ours = self.backup_schema in (None, BACKUPS_ALIAS)  # attached the usual way
        if self.is_sqlite and ours and self.engine.url.database not in (None, "", ":memory:"):
            return _own_connection(self._unpooled(), lock_wait=self.lock_wait)
        return _own_connection(self.engine, lock_wait=self.lock_wait)

    def _unpooled(self) -> sa.Engine:
        """SQLite: an engine on the target's file whose connections are closed after use,
        the backups file attached to each."""
        if self._private is None:
            from sqlalchemy.pool import NullPool

            self._private = sa.create_engine(self.engine.url, poolclass=NullPool)
            if self.backup_schema is not None:
                attach_backups(self._private)
        return self._private

    @property
    def _family(self) -> str:
        return {"sqlite": "sqlite", "postgresql": "postgresql"}.get(
            self.engine.dialect.name, "mysql"
        )

    def skip(self, name: str) -> bool:
        """Whether table *name* is never snapshotted nor compared (backups, our own)."""
        return name.startswith(BACKUP_PREFIX) or self.exclude(name)

    # ------------------------------------------------------------------ before the run

    def start(self) -> None:
        """Read the fingerprint the pre-images are taken from and save, at once, what exists:
        a run that dies before it snapshots anything can still be rolled back from it."""
        with self._connect() as conn:
            if not self.is_sqlite:
                here = "current_schema()" if self.is_postgresql else "DATABASE()"
                self._schema = str(conn.exec_driver_sql(f"SELECT {here}").scalar())
            self.fingerprint = read_fingerprint(conn, exclude=self.skip)
            self._numbers = itertools.count(
                next_backup_number(backup_names(self.engine, conn, self.backup_schema), self.run_id)
            )
            schemas = self._schemas(conn)
            missing = self.backup_schema is not None and self.backup_schema not in schemas
            if missing and not self.is_sqlite:  # the default one, on first use
                make = "SCHEMA" if self.is_postgresql else "DATABASE"
                conn.exec_driver_sql(
                    f"CREATE {make} IF NOT EXISTS {self._q(str(self.backup_schema))}"
                )
        self.existed = frozenset(self.fingerprint.objects) | {f"schema:{s}" for s in schemas}
        self.save()

    def _schemas(self, conn: sa.Connection) -> set[str]:
        """The schemas (MySQL databases, PostgreSQL schemas) there are now."""
        if self.is_sqlite:
            return set()
        return {
            str(n)
            for n in conn.exec_driver_sql(
                "SELECT schema_name FROM information_schema.schemata"
            ).scalars()
        }

    def plan_run(self, statements: Iterable[str]) -> None:
        """What the run's *statements* (in run order) need kept of each table, followed
        through the run's renames: taken at each table's first touch (see ``sql.needs``)."""
        names: dict[str, str | None] = dict(self.names)
        columns = {t: dict(m) for t, m in self.renamed_columns.items()}
        plan: dict[str, Need] = dict(self.plan)
        for statement in statements:
            for need in needs(statement, dialect=self._family):
                original = self._original(need.table, names)
                if original and need.schema in (None, self._schema):
                    back = columns.get(original, {})  # dropped columns by their first names
                    dropped = tuple(back.get(c, c) for c in need.columns)
                    need = attrs.evolve(need, table=original, columns=dropped)
                    plan[original] = _merge(plan.get(original), need)
            self._follow_names(statement, names)
            self._follow_columns(statement, names, columns)
        self.plan = plan

    def resume(self) -> None:
        """Go on recording after :meth:`load`, for a run that goes on after its process died:
        what the run has not touched yet is as it was before the run, so its pre-run state is
        read from the live schema; backup tables go on being numbered after those there (a
        copy the dead run was making included)."""
        assert self.fingerprint is not None, "load() the material first"
        with self._connect() as conn:
            live = read_fingerprint(conn, exclude=self.skip)
            self._numbers = itertools.count(
                next_backup_number(backup_names(self.engine, conn, self.backup_schema), self.run_id)
            )
        objects = {k: v for k, v in live.objects.items() if k not in self.touched}
        objects.update(self.fingerprint.objects)
        self.fingerprint = Fingerprint(dialect=live.dialect, objects=objects)

    # ------------------------------------------------------------------ while the run works

    def before_step(self, statements: Iterable[str], connection: sa.Connection | None) -> None:
        """Take, before a step's first statement, the pre-images of what its *statements*
        touch for the first time (so that nothing of ours runs between two of them)."""
        if self.fingerprint is None or not self.restores:
            return
        if self.is_sqlite and self.engine.url.database not in (None, "", ":memory:"):
            # On a connection of its own, before the step's transaction writes anything:
            # a copy on the step's connection would change last_insert_rowid() and changes()
            # for the file's first statement. (A step that fails leaves these copies behind:
            # they are of tables it did not change, and compare as they are.)
            connection = None
        took = False
        shadow = dict(self.names)
        for statement in statements:
            todo = [t for t in self._first_touches(statement, shadow) if self._existed_now(t)]
            self.touched.update(f"table:{t.name}" for t in todo)
            if todo:
                self._take(todo, statement, connection)
                took = True
            self._follow_names(statement, shadow)
        if took:
            self._dirty = False
            self.save(connection if self._in_step else None)

    def before(self, statement: str, connection: sa.Connection | None = None) -> str | None:
        """Record what *statement* touches, take the pre-images of what it is the first to
        touch (if :meth:`before_step` did not), keep the material saved; returns the
        statement to run instead (a soft drop), or None.

        The material is saved at once on MySQL (on a connection of its own: DDL commits by
        itself); on SQLite it is saved with the step, by :meth:`after_step` (nothing of ours
        runs between two statements of a file).

        Args:
            statement: the statement about to run.
            connection: the step's connection (SQLite and PostgreSQL snapshot on it).
        """
        if self.fingerprint is None:
            return None
        first = [t for t in self._touches(statement) if self._existed_now(t)]
        todo = [t for t in first if not (t.kind == "table" and t.name in self.tables)]
        changed = bool(first)  # the kept fingerprint holds what is touched: keep it whole
        if todo:
            self._take(todo, statement, connection)
        if self.restores:
            changed |= self._escalate(statement, connection)
        instead = self._soft_drop(statement) if self.restores else None
        self._record_needs(statement)
        # What the names meant before it: put back if the server refuses it (rejected()).
        self._before_last = (
            statement,
            dict(self.names),
            {t: dict(m) for t, m in self.renamed_columns.items()},
            dict(self.moved_out),
        )
        changed |= self._follow_names(statement, self.names)
        changed |= self._follow_columns(statement)
        if changed or instead is not None:
            self._dirty = True
            if not self._in_step:
                self.save()
        return instead

    def after_step(self, connection: sa.Connection | None) -> None:
        """The step's statements ran: SQLite keeps the material with the step (in its
        transaction, after its last statement)."""
        if self._dirty and self._in_step and connection is not None:
            self.save(connection)
            self._dirty = False

    def rejected(self, statement: str) -> None:
        """*statement* was refused by the server: it ran nothing, so what it would have done
        (effects unknown) makes nothing unrecoverable, and the names it would have changed
        mean what they meant before it."""
        last = self._before_last
        if last is not None and last[0] == statement:
            _, self.names, self.renamed_columns, self.moved_out = last
            self._before_last = None
            self._dirty = True
            if not self._in_step and self.fingerprint is not None:
                self.save()
        unknown = [t.name for t in touches(statement, dialect=self._family) if t.kind == "unknown"]
        for name in unknown:
            if name in self.unknown:
                self.unknown.remove(name)
            mine = self.unknown_by_step.get(self.step or "", [])
            if name in mine:
                mine.remove(name)

    def forget_names(self) -> None:
        """Forget what the names mean (and what each step needed), to follow them again from
        the statements that ran (:meth:`note`): the saved material says what the statements
        announced would do, and the last one may not have run."""
        self.names, self.renamed_columns, self.moved_out = {}, {}, {}
        self.step_needs = {}

    def _record_needs(self, statement: str) -> None:
        """Add what *statement* needs kept to its step's needs (see :attr:`step_needs`)."""
        mine = self.step_needs.setdefault(self.step or "", {})
        for need in needs(statement, dialect=self._family):
            original = self._original(need.table, self.names)
            if original and need.schema in (None, self._schema):
                back = self.renamed_columns.get(original, {})
                need = attrs.evolve(
                    need, table=original, columns=tuple(back.get(c, c) for c in need.columns)
                )
                mine[original] = _merge(mine.get(original), need)

    def note(self, statement: str) -> None:
        """Count what *statement* touches, without snapshots: for a run that died, whose
        journal tells what ran (what existed before was snapshotted and saved then)."""
        if self.fingerprint is not None:
            self._touches(statement)
            self._record_needs(statement)
            self._follow_names(statement, self.names)
            self._follow_columns(statement)

    def _first_touches(self, statement: str, names: Mapping[str, str | None]) -> list[Touch]:
        """The tables, views... *statement* touches that no statement touched before (by
        their names before the run), without recording them."""
        out = []
        for touch in self._local(statement):
            if touch.kind != "table" or touch.schema is not None:
                continue
            original = self._original(touch.name, names)
            if original and f"table:{original}" not in self.touched and original not in self.tables:
                out.append(Touch("table", original, touch.action, touch.schema))
        return out

    def _touches(self, statement: str) -> list[Touch]:
        """Record what *statement* touches; returns the objects it is the first to touch that
        existed before the run (those need a snapshot)."""
        assert self.fingerprint is not None
        found = []
        local = self._local(statement)
        self._note_writes(statement, local)
        for touch in local:
            if touch.kind == "table" and touch.action == "rename":
                if touch.schema is None and touch.new_schema is not None:  # moved out of core
                    touch = Touch("table", touch.name, "alter")
                elif touch.schema is not None and touch.new_schema is None and touch.new_name:
                    touch = Touch("table", touch.new_name, "create")  # moved into core
            resolved = self._resolve(touch)
            if resolved is not None:
                found.append(resolved)
        # What refers to a renamed table is rewritten with it (InnoDB's foreign keys; SQLite's
        # foreign keys, views and triggers): it changes too.
        renamed = {t.name for t in found if t.action == "rename" and t.kind == "table"}
        if renamed:
            for key in sorted(referring(self.fingerprint, renamed)):
                kind, _, name = key.partition(":")
                found.append(Touch(kind, name, "alter"))
        mine = self.by_step.setdefault(self.step or "", set())
        new: list[Touch] = []
        for touch in found:
            if touch.kind == "table":
                original = self._original(touch.name, self.names)
                if original:
                    touch = attrs.evolve(touch, name=original)
            mine.add(_key(touch))
            if touch.new_name is not None:  # a renamed table's new name is touched too
                self.touched.add(f"{touch.kind}:{touch.new_name}")
                mine.add(f"{touch.kind}:{touch.new_name}")
            if _key(touch) not in self.touched:
                new.append(touch)
                self.touched.add(_key(touch))
                if touch.kind == "unknown":
                    self.unknown.append(touch.name)
                    self.unknown_by_step.setdefault(self.step or "", []).append(touch.name)
                elif touch.kind == "routine":  # the statement may name a procedure or function
                    self.touched.add(f"routine:procedure:{touch.name}")
                    self.touched.add(f"routine:function:{touch.name}")
                    self.touched.update(routine_keys(touch.name, self.existed))
        return new

    def _note_writes(self, statement: str, found: Sequence[Touch]) -> None:
        """Add the tables *statement* writes rows of to :attr:`rows_written` (None: it may
        write any)."""
        if self.rows_written is None:
            return
        if any(t.kind == "unknown" for t in found) or (not found and "(" in statement):
            self.rows_written = None  # a CALL, a LOAD, a function called: anything
            return
        for touch in found:
            if touch.action == "write" and touch.kind != "table":
                self.rows_written = None  # rows written through a view: which, unknown
                return
            if touch.kind == "table" and touch.action not in ("alter", "rename"):
                # Written, dropped (then made anew) or made: not a table only altered.
                self.rows_written.add(self._original(touch.name, self.names) or touch.name)

    def _local(self, statement: str) -> list[Touch]:
        """What *statement* touches, the core schema's objects unqualified (whether the
        statement names its schema or not); a table moved between the core schema and
        another keeps the other's name in ``schema`` or ``new_schema``."""
        out = []
        for touch in touches(statement, dialect=self._family):
            if touch.schema == self._schema and self._schema:
                touch = attrs.evolve(touch, schema=None)
            if touch.new_schema == self._schema and self._schema:
                touch = attrs.evolve(touch, new_schema=None)
            out.append(touch)
        return out

    def _original(self, name: str, names: Mapping[str, str | None]) -> str | None:
        """The table *name* names now stood for before the run (None: the run made it, or
        moved it in from another schema, or there is none)."""
        if name in names:
            was = names[name]
            return was if was and "." not in was else None
        return self._default(name)

    def _follow_names(self, statement: str, names: dict[str, str | None]) -> bool:
        """Update *names* (see :attr:`names`) with what *statement* creates, renames, drops;
        whether a name of a table that existed before the run changed its meaning (only such
        changes need keeping: a name the run made is known as the run's without them)."""
        changed = False
        for touch in self._local(statement):
            if touch.kind != "table":
                continue
            before = dict(names)
            if touch.action == "rename" and touch.new_name and touch.schema != touch.new_schema:
                if touch.schema is None:  # moved out of the core schema: gone from it
                    was = self._original(touch.name, names)
                    if was:
                        self.moved_out[was] = f"{touch.new_schema}.{touch.new_name}"
                    names[touch.name] = _GONE
                elif touch.new_schema is None:  # moved in: it goes back where it came from
                    names[touch.new_name] = f"{touch.schema}.{touch.name}"
                changed |= names != before
                continue
            if touch.schema is not None:
                continue
            if touch.action == "rename" and touch.new_name:
                was = self._original(touch.name, names) if self._known(touch.name, names) else None
                names[touch.new_name] = was
                names[touch.name] = _GONE
            elif touch.action == "create" and not self._known(touch.name, names):
                names[touch.name] = None
            elif touch.action == "drop":
                names[touch.name] = _GONE
            else:
                continue
            for name in (touch.name, touch.new_name):  # drop what says only the default
                if name is not None and names.get(name) == self._default(name):
                    names.pop(name, None)
            changed |= names != before
        return changed

    def _default(self, name: str) -> str | None:
        """What a name absent from :attr:`names` means: itself if the table existed."""
        return name if f"table:{name}" in self.existed else None

    def _known(self, name: str, names: Mapping[str, str | None]) -> bool:
        """Whether a table of that name existed before the run, or was made by it, and is
        there now (as far as the run's statements say)."""
        if name in names:
            return names[name] != _GONE
        return f"table:{name}" in self.existed

    def _follow_columns(
        self,
        statement: str,
        names: Mapping[str, str | None] | None = None,
        renamed: dict[str, dict[str, str]] | None = None,
    ) -> bool:
        """Record the columns *statement* renames in *renamed* (default: ``renamed_columns``),
        by their names before the run; whether there were any."""
        names = self.names if names is None else names
        renamed = self.renamed_columns if renamed is None else renamed
        changed = False
        for table, action, column, new in column_effects(statement, self._family):
            if action != "rename" or new is None:
                continue
            original = self._original(table.strip('`"[]'), names)
            if not original:
                continue
            mine = renamed.setdefault(original, {})
            mine[new] = mine.pop(column, column)
            changed = True
        return changed

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

    def _existed_now(self, touch: Touch) -> bool:
        """Whether *touch*'s object existed before the run (in this schema)."""
        if touch.schema not in (None, self._schema or "main"):
            self.unknown.append(f"{touch.schema}.{touch.name}")
            self.unknown_by_step.setdefault(self.step or "", []).append(
                f"{touch.schema}.{touch.name}"
            )
            return False
        if touch.kind == "routine":
            return bool(routine_keys(touch.name, self.existed))
        return _key(touch) in self.existed

    def _take(self, todo: list[Touch], statement: str, connection: sa.Connection | None) -> None:
        try:
            self._take_now(todo, connection)
        except sa.exc.OperationalError as error:
            if _lock_wait(error):
                raise self._blocked(todo, error) from error
            raise

    def _blocked(self, todo: list[Touch], error: BaseException) -> SnapshotBlockedError:
        """The error saying which sessions held what a snapshot waited for."""
        from lupo_migrate.backends.sqlalchemy._blockers import open_transactions

        names = ", ".join(sorted({t.name for t in todo}))
        try:
            with self.engine.connect() as conn:
                found = [str(b) for b in open_transactions(conn)]
        except sa.exc.DBAPIError:  # pragma: no cover - the server went away meanwhile
            found = []
        return SnapshotBlockedError(
            f"taking the pre-image of {names} waited {self.lock_wait} s for a lock another"
            f" session holds ({', '.join(found) or 'no open transaction is left'}); nothing of"
            f" step {self.step} ran. Retry once that transaction ends"
        )

    def _take_now(self, todo: list[Touch], connection: sa.Connection | None) -> None:
        if self._in_step and connection is not None:
            for touch in todo:
                self._snapshot(connection, touch)
        else:
            with self._connect() as conn:
                for touch in todo:
                    self._snapshot(conn, touch)

    def _snapshot(self, conn: sa.Connection, touch: Touch) -> None:
        assert self.fingerprint is not None
        name = touch.name
        if touch.kind == "table":
            if not self.skip(name):
                self.tables[name] = self._table(conn, name)
            return
        for key, sql in show_create(conn, touch, self.fingerprint, sqlite=self.is_sqlite):
            self.definitions[key] = sql

    def _table(self, conn: sa.Connection, name: str) -> TableImage:
        """Table *name*'s pre-image, with what the run needs kept of its rows."""
        assert self.fingerprint is not None
        need = self.plan.get(name, Need(name, None, SHAPE))
        copy = need.what == ROWS or (need.what == DROP and not self._movable(name))
        if copy and self.trust_down and need.what == ROWS:
            # its down section undoes it: a table over the limit need not be copied
            copy = count_upto(conn, self._q(name), self.limit) <= self.limit
        image = table_image(
            conn,
            name,
            self.fingerprint,
            sqlite=self.is_sqlite,
            copy=copy,
            limit=self.limit,
            backup_name=self._backup_name,
        )
        if need.what == COLUMNS and image.backup is None:
            image = self._aside(conn, name, image, need.columns)
        return image

    def _aside(
        self,
        conn: sa.Connection,
        name: str,
        image: TableImage,
        columns: Iterable[str],
        renamed: Mapping[str, str] | None = None,
    ) -> TableImage:
        """Set the values of *columns* (their names before the run; *renamed*: their names
        now -> before, for a table changed since its pre-image) aside by key (before a
        ``DROP COLUMN``), under their names before the run."""
        now = {was: current for current, was in (renamed or {}).items()}
        if not image.key:
            if count_upto(conn, self._q(name), self.limit) > self.limit:
                raise BackupLimitError(
                    f"table {name} has no primary or unique key and more than {self.limit}"
                    " rows (the backup limit): the values of the column(s) a step drops"
                    f" ({', '.join(columns)}) cannot be set aside by key; give the table a"
                    " primary key, or the step a down section (-- lupo:down)"
                )
            backup = self._backup_name()
            copy_rows(conn, self._q(name), backup, image.columns, (), sqlite=self.is_sqlite)
            return attrs.evolve(image, backup=backup)
        aside = dict(image.aside)
        for column in columns:
            if column in image.columns and column not in aside:
                aside[column] = self._backup_name()
                current = now.get(column, column)
                set_aside(conn, self._q(name), aside[column], image.key, current, column)
        return attrs.evolve(image, aside=aside)

    def _escalate(self, statement: str, connection: sa.Connection | None) -> bool:
        """A statement not foreseen by :meth:`plan_run` (a module's) that needs more kept of
        a table than its pre-image has: copy or set aside now. Whether anything was taken."""
        took = False
        for need in needs(statement, dialect=self._family):
            original = self._original(need.table, self.names)
            image = self.tables.get(original or "")
            if image is None or original is None:
                continue
            missing = need.what in (ROWS, DROP) and image.backup is None and image.moved is None
            back = self.renamed_columns.get(original, {})
            missing |= need.what == COLUMNS and not (
                image.backup is not None
                or {back.get(c, c) for c in need.columns} & set(image.columns) <= set(image.aside)
            )
            if not missing:
                continue
            with contextlib.ExitStack() as stack:
                conn = connection if self._in_step and connection is not None else None
                if conn is None:
                    conn = stack.enter_context(self._connect())
                table = self._q(need.table)
                if need.what == COLUMNS:
                    back = self.renamed_columns.get(original, {})
                    self.tables[original] = self._aside(conn, need.table, image, need.columns, back)
                elif need.what == DROP and self._movable(original):
                    self.plan[original] = _merge(self.plan.get(original), need)
                elif count_upto(conn, table, self.limit) > self.limit:
                    if self.trust_down:
                        continue  # its own down undoes it; no copy is taken
                    raise BackupLimitError(
                        f"table {need.table} has more than {self.limit} rows (the backup"
                        " limit) and a statement changes its rows: give the migration a"
                        " down section (-- lupo:down), or raise the limit (--backup-limit)"
                    )
                else:
                    backup = self._backup_name()
                    columns = self.columns_now(conn, need.table)
                    copy_rows(conn, table, backup, columns, image.key, sqlite=self.is_sqlite)
                    data = table_data(conn, [need.table])[need.table]
                    self.tables[original] = attrs.evolve(
                        image, backup=backup, columns=tuple(columns), data=data
                    )
            took = True
        return took

    def _movable(self, name: str) -> bool:
        """Whether a ``DROP TABLE`` of *name* may move it aside instead (MySQL/MariaDB and
        PostgreSQL, with a backup schema of its own, and no foreign key of another table
        referring to it; on PostgreSQL no view either, which a plain drop would refuse)."""
        if self.is_sqlite or self.backup_schema is None:
            return False
        assert self.fingerprint is not None
        kinds = ("table:", "view:") if self.is_postgresql else ("table:",)
        return not any(k.startswith(kinds) for k in referring(self.fingerprint, [name]))

    def _soft_drop(self, statement: str) -> str | None:
        """The ``RENAME TABLE`` moving aside the tables a plain ``DROP TABLE`` names, when
        each may be (see :meth:`_movable`); None to run the statement as it is."""
        found = touches(statement, dialect=self._family)
        drops = [t for t in found if t.kind == "table" and t.action == "drop"]
        if not drops or len(drops) != len(found) or "CASCADE" in statement.upper():
            return None
        moves: list[tuple[str, str]] = []
        for touch in drops:
            if touch.schema is not None or not self._known(touch.name, self.names):
                return None  # another schema's, or not there (IF EXISTS): as written
            original = self._original(touch.name, self.names)
            image = self.tables.get(original or "")
            if original is None or image is None or image.backup is not None:
                return None  # made by the run, or copied: the drop may go as written
            if not self._movable(original):
                return None
            moves.append((touch.name, original))
        parts = []
        first: list[str] = []  # MySQL: what goes before the RENAME, on the step's connection
        for name, original in moves:
            target = self._backup_name("sd")
            self.tables[original] = attrs.evolve(self.tables[original], moved=target)
            # Its foreign keys go (a dropped table holds no row back; the rollback adds them
            # again from its definition).
            keys = self._foreign_keys(name)
            if self.is_postgresql:  # renamed where it is, then moved (with its indexes,
                # constraints, triggers and the sequences it owns)
                bare = target.rpartition(".")[2]
                parts += [f"ALTER TABLE {self._q(name)} DROP CONSTRAINT {self._q(k)}" for k in keys]
                parts.append(
                    f"ALTER TABLE {self._q(name)} RENAME TO {bare};"
                    f" ALTER TABLE {bare} SET SCHEMA {self._q(str(self.backup_schema))}"
                )
            else:
                # On the step's own connection, in the statement's place: a connection of our
                # own would wait for the table locks the step's open transaction holds (its
                # earlier INSERT into the parent table), where the DROP would commit it.
                first += self._drop_triggers(name)
                if keys:
                    dropping = ", ".join(f"DROP FOREIGN KEY {self._q(k)}" for k in keys)
                    first.append(f"ALTER TABLE {self._q(name)} {dropping}")
                parts.append(f"{self._q(name)} TO {target}")
        if self.is_postgresql:
            return "; ".join(parts)
        return ";\n".join([*first, "RENAME TABLE " + ", ".join(parts)])

    def _foreign_keys(self, name: str) -> list[str]:
        """The names of table *name*'s own foreign keys, now."""
        with self._connect() as conn:
            if self.is_postgresql:
                found = conn.exec_driver_sql(
                    "SELECT conname FROM pg_constraint WHERE contype = 'f'"
                    " AND conrelid = to_regclass(%s)",
                    (self._q(name),),
                ).scalars()
            else:
                found = conn.exec_driver_sql(
                    "SELECT constraint_name FROM information_schema.referential_constraints"
                    " WHERE constraint_schema = DATABASE() AND table_name = %s",
                    (name,),
                ).scalars()
            return sorted(str(k) for k in found)

    def _drop_triggers(self, name: str) -> list[str]:
        """The statements dropping table *name*'s triggers (MySQL moves no table with
        triggers to another schema; ``DROP TABLE`` would drop them too): its pre-image keeps
        their texts."""
        with self._connect() as conn:
            triggers = conn.exec_driver_sql(
                "SELECT trigger_name FROM information_schema.triggers"
                " WHERE event_object_schema = DATABASE() AND event_object_table = %s",
                (name,),
            ).scalars()
            found = [str(t) for t in triggers]
        self.touched.update(f"trigger:{t}" for t in found)
        return [f"DROP TRIGGER IF EXISTS {self._q(t)}" for t in found]

    def _backup_name(self, kind: str = "") -> str:
        suffix = f"_{kind}" if kind else ""
        return self._qualified(f"{BACKUP_PREFIX}{self.run_id[:12]}_{next(self._numbers)}{suffix}")

    def new_backup_name(self, kind: str) -> str:
        """A new backup table name of this run (qualified, quoted), for a passing use."""
        return self._backup_name(kind)

    def _qualified(self, name: str) -> str:
        table = self._q(name)
        return table if self.backup_schema is None else f"{self._q(self.backup_schema)}.{table}"

    def _q(self, name: str) -> str:
        return str(self.engine.dialect.identifier_preparer.quote_identifier(name))

    def columns_now(self, conn: sa.Connection, name: str) -> list[str]:
        """Table *name*'s columns now, in order (generated columns left out)."""
        if self.is_sqlite:
            return [
                str(row[1])
                for row in conn.exec_driver_sql(f"PRAGMA table_xinfo({self._q(name)})")
                if int(row[6]) == 0
            ]
        here = "current_schema()" if self.is_postgresql else "DATABASE()"
        extra = "is_generated = 'NEVER'" if self.is_postgresql else "extra NOT LIKE '%%GENERATED%%'"
        return [
            str(c)
            for c in conn.exec_driver_sql(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                f" {here} AND table_name = %s AND {extra} ORDER BY ordinal_position",
                (name,),
            ).scalars()
        ]

    def rowset(
        self, name: str, columns: Sequence[str], table: str | None = None
    ) -> _rows.RowSet | None:
        """Table *name*'s rows as the rollback sees them, the table having *columns* now and
        being called *table* (default: *name*); None when no copy of its rows was kept."""
        image = self.tables.get(name)
        if image is None or image.backup is None:
            return None
        renamed = self.renamed_columns.get(name, {})
        pairs = tuple((renamed.get(c, c), c) for c in columns if renamed.get(c, c) in image.columns)
        moved_keys = {was for now, was in renamed.items() if now != was}
        key = image.key
        if set(key) & moved_keys or not set(key) <= set(columns):
            key = ()  # its key changed names: rows are told apart by all their values
        return _rows.RowSet(
            table=self._q(table or name),
            copy=image.backup,
            columns=pairs,
            key=key,
            sealed=image.sealed,
        )

    def _current(self, original: str) -> str | None:
        """The name table *original* (its name before the run) has now, or None (gone)."""
        for name, was in self.names.items():
            if was == original:
                return name
        if original in self.names:  # the name means something else now (gone, the run's)
            return None
        return original

    # ------------------------------------------------------------------ after a rollback

    def uncovered(self, step: str) -> str | None:
        """Why restoring the pre-images would not put back everything *step* changed (None:
        it would): a statement of unknown effect, or rows of a table no copy was kept of."""
        unknown = self.unknown_by_step.get(step)
        if unknown:
            return f"statements whose effects cannot be told ran: {', '.join(sorted(set(unknown)))}"
        missing = []
        for name, need in sorted(self.step_needs.get(step, {}).items()):
            if f"table:{name}" not in self.existed:
                continue
            image = self.tables.get(name)
            if image is None or need.what == SHAPE:
                continue
            kept = image.backup is not None or image.moved is not None
            if need.what == COLUMNS:  # a column the run added and dropped needs nothing
                kept |= set(need.columns) & set(image.columns) <= set(image.aside)
            if not kept:
                missing.append(name)
        if missing:
            return (
                f"no copy was kept of the rows it changed in {', '.join(missing)} (over the"
                " backup limit: its own down section was to undo them)"
            )
        return None

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
        return compare_images(self, conn, only)

    def restore(self, only: Collection[str] | None = None) -> RestoreReport:
        """Put back every touched object (of *only*) that differs from its pre-image, never
        dropping or emptying what was not copied; compare again."""
        if self.fingerprint is None:
            return RestoreReport((), (), (), {}, 0)
        # PostgreSQL: the whole restore in one transaction (DDL included): all or nothing
        opened = self.engine.begin() if self.is_postgresql else self._connect()
        with opened as conn:
            self._names_back(conn)
            self.seal_altered(conn)
            first = self.compare(conn, only)
            gone_schemas, kept_schemas = self._schemas_back(conn, only)
            if (first.verified and not self.sealed and not kept_schemas) or not self.restores:
                return attrs.evolve(first, dropped=tuple(gone_schemas))
            restored, dropped, rows, left = put_back(self, conn, first, only)
            final = self.compare(conn, only)
            left += uncopied(self, final)
        dropped += gone_schemas
        left += kept_schemas
        return attrs.evolve(
            final,
            restored=tuple(restored),
            dropped=tuple(dropped),
            rows=rows,
            left=tuple(left),
        )

    def _names_back(self, conn: sa.Connection) -> None:
        """Tables the run created go, and tables it renamed get their names back, before
        anything is compared: a name then means what it meant before the run."""
        if not self.restores:
            return
        present = set(read_fingerprint(conn, exclude=self.skip).tables)
        made = [n for n, was in self.names.items() if was is None and n in present]
        with checks_off(conn):
            for name in made:
                if f"table:{name}" in self.existed and self.names.get(name, _GONE) is None:
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(name)}")
                    present.discard(name)
            for name, was in self.names.items():  # tables moved in go back where they were
                if was and "." in was and name in present:
                    self._move(conn, name, was)
                    present.discard(name)
            for original, moved in self.moved_out.items():  # and tables moved out come back
                if original not in present and self._exists_qualified(conn, moved):
                    self._move(conn, moved, original)
                    present.add(original)
            for name, was in self.names.items():
                if (
                    was
                    and "." not in was
                    and was != name
                    and name in present
                    and was not in present
                ):
                    rename = (
                        "RENAME TABLE {} TO {}"
                        if self._family == "mysql"
                        else "ALTER TABLE {} RENAME TO {}"
                    )
                    conn.exec_driver_sql(rename.format(self._q(name), self._q(was)))
                    present.discard(name)
                    present.add(was)

    def _schemas_back(
        self, conn: sa.Connection, only: Collection[str] | None
    ) -> tuple[list[str], list[str]]:
        """Drop the schemas the run created, when empty (after the undo statements dropped
        what the run made in them); a schema holding tables is left, and said so. Returns
        the keys dropped and the lines left."""
        made = sorted(
            k
            for k in self.touched
            if k.startswith("schema:") and k not in self.existed and (only is None or k in only)
        )
        if not made:
            return [], []
        there = self._schemas(conn)
        dropped: list[str] = []
        left: list[str] = []
        for key in made:
            name = key[7:]
            if name not in there:
                continue
            tables = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (name,)
            ).scalar_one()
            if tables:
                left.append(
                    f"schema {name}, created by the run, holds {tables} table(s) now: it was"
                    " left as it is (drop it by hand if nothing in it is needed)"
                )
                continue
            drop = "DROP SCHEMA" if self.is_postgresql else "DROP DATABASE"
            conn.exec_driver_sql(f"{drop} {self._q(name)}")
            dropped.append(key)
        return dropped, left

    def _move(self, conn: sa.Connection, source: str, target: str) -> None:
        """Move table *source* to *target* (either may be ``schema.name``, the other then
        being in the core schema)."""
        quoted = [".".join(self._q(p) for p in n.split(".", 1)) for n in (source, target)]
        if not self.is_postgresql:
            conn.exec_driver_sql(f"RENAME TABLE {quoted[0]} TO {quoted[1]}")
            return
        schema, _, name = target.rpartition(".")
        here = schema or self._schema
        conn.exec_driver_sql(f"ALTER TABLE {quoted[0]} SET SCHEMA {self._q(here)}")
        moved = f"{self._q(here)}.{self._q(source.rpartition('.')[2])}"
        if source.rpartition(".")[2] != name:
            conn.exec_driver_sql(f"ALTER TABLE {moved} RENAME TO {self._q(name)}")

    def _exists_qualified(self, conn: sa.Connection, qualified: str) -> bool:
        schema, _, name = qualified.rpartition(".")
        return (
            conn.exec_driver_sql(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name = %s",
                (schema, name),
            ).first()
            is not None
        )

    @property
    def backups(self) -> tuple[str, ...]:
        """This run's backup tables (qualified, quoted)."""
        out: list[str] = []
        for image in self.tables.values():
            out += [t for t in (image.backup, image.moved, image.sealed) if t]
            out += list(image.aside.values())
        return tuple(out)

    def drop_backups(self) -> None:
        """Drop this run's backup tables and saved material (no longer needed)."""
        self._committed = None
        drop_backups(self.engine, self.run_id, self.backup_schema)

    # ------------------------------------------------------------------ kept after a run

    def to_json(self) -> str:
        """What a rollback of the run needs, as JSON (the pre-run fingerprint of the touched
        objects, and the keys of every object that existed)."""
        assert self.fingerprint is not None
        data = {
            "format": _FORMAT,
            "schema": self._schema,
            "fingerprint": restrict(self.fingerprint, self.touched).to_json(),
            "existed": sorted(self.existed),
            "touched": sorted(self.touched),
            "tables": images_to_json(self.tables),
            "definitions": self.definitions,
            "unknown": self.unknown,
            "unknown_by_step": self.unknown_by_step,
            "by_step": {step: sorted(keys) for step, keys in self.by_step.items()},
            "names": self.names,
            "moved_out": self.moved_out,
            "renamed_columns": self.renamed_columns,
            "rows_written": None if self.rows_written is None else sorted(self.rows_written),
            "plan": {
                name: [need.what, list(need.columns)] for name, need in sorted(self.plan.items())
            },
            "step_needs": {
                step: {n: [need.what, list(need.columns)] for n, need in sorted(found.items())}
                for step, found in sorted(self.step_needs.items())
            },
            "sealed": self.sealed,
            "created": self.created,
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
        text = self.to_json()
        if connection is None and text == self._committed:
            return table  # committed as it is already (the seal saves, then the run's end)
        # A write on a step's connection may go with the step's rollback: unknown after.
        self._committed = None
        kind, mark = {"sqlite": ("TEXT", "?"), "postgresql": ("TEXT", "%s")}.get(
            self.engine.dialect.name, ("LONGTEXT", "%s")
        )
        with contextlib.ExitStack() as stack:
            conn = connection if connection is not None else stack.enter_context(self._connect())
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {table} (material {kind} NOT NULL)")
            # The old material is replaced in one transaction: a process killed between the
            # DELETE and the INSERT must not leave the table empty (recover would find no
            # material, and refuse to undo what only pre-images can). On MySQL and PostgreSQL
            # our own connection autocommits each statement: it opens the transaction itself.
            apart = connection is None and self._family in ("mysql", "postgresql")
            if apart:
                conn.exec_driver_sql("START TRANSACTION")
            conn.exec_driver_sql(f"DELETE FROM {table}")
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({mark})", (text,))
            if apart:
                conn.exec_driver_sql("COMMIT")
        if connection is None:
            self._committed = text
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
        self.existed = frozenset(data.get("existed", self.fingerprint.objects))
        self.tables = images_from_json(data["tables"])
        self.definitions = dict(data["definitions"])
        self.unknown = list(data["unknown"])
        self.unknown_by_step = {s: list(v) for s, v in data.get("unknown_by_step", {}).items()}
        self.by_step = {step: set(keys) for step, keys in data["by_step"].items()}
        self.names = dict(data.get("names", {}))
        self.moved_out = dict(data.get("moved_out", {}))
        self.renamed_columns = {t: dict(m) for t, m in data.get("renamed_columns", {}).items()}
        written = data.get("rows_written")
        self.rows_written = None if written is None else set(written)
        self.plan = {
            name: Need(name, None, what, tuple(columns))
            for name, (what, columns) in data.get("plan", {}).items()
        }
        self.step_needs = {
            step: {n: Need(n, None, what, tuple(cols)) for n, (what, cols) in found.items()}
            for step, found in data.get("step_needs", {}).items()
        }
        self.sealed = bool(data.get("sealed", False))
        self.created = dict(data.get("created", {}))
        return True


class SnapshotBlockedError(StorageError):
    """A snapshot waited too long for a lock another session holds; nothing of the step ran
    (transient: the run is rolled back and may be tried again)."""


def _lock_wait(error: BaseException) -> bool:
    """Whether *error* is MySQL's "lock wait timeout exceeded" (row or metadata lock)."""
    orig = getattr(error, "orig", None)
    code = (getattr(orig, "args", None) or [None])[0]
    return bool(code == 1205)


def _merge(have: Need | None, need: Need) -> Need:
    """The need that keeps what both *have* and *need* ask (dropped columns united)."""
    if have is None:
        return need
    what = strongest([have.what, need.what])
    columns = tuple(dict.fromkeys((*have.columns, *need.columns)))
    return Need(need.table, need.schema, what, columns if what == COLUMNS else ())


def attach_backups(engine: sa.Engine) -> str | None:
    """Give a SQLite file target a database of its own for backup tables (rollback
    material): ``app.lupo-backups.db``, attached to each of *engine*'s connections as
    :data:`BACKUPS_ALIAS`. Returns that name, the ``backup_schema`` to give
    :class:`SqlAlchemyTarget`; None for another database or an in-memory one.

    Not the application's file (lupo_migrate's tables never go there), and not the file of
    the orchestration tables either: a step's transaction writes backups on the target's
    connection while the storage writes the journal on connections of its own, and SQLite
    lets one connection at a time write to a file.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    if engine in _BACKUPS_ATTACHED:  # asked again: one ATTACH per connection is all it takes
        return BACKUPS_ALIAS
    _BACKUPS_ATTACHED.add(engine)
    path = sibling_store(str(database), "lupo-backups")

    @event.listens_for(engine, "connect")
    def attach(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"ATTACH DATABASE ? AS {BACKUPS_ALIAS}", (path,))

    engine.pool.dispose()  # connections opened before get it too
    return BACKUPS_ALIAS
