"""The completed run, a mixin of :class:`~lupo_migrate.backends.sqlalchemy._preimage.PreImages`:
what it left is sealed, and what a rollback of it would do is read (touching nothing).

**When the run completes** (:meth:`Sealing.seal`, writes still frozen) the rows it inserted,
changed or deleted are sealed by key (``_rows``); the definitions of what it created, and a
checksum of each table it created, are recorded; the values it left in the columns it added
are kept (``_added``). :meth:`Sealing.confirm` then checks that everything a rollback needs
is there.

**Before a rollback** (:meth:`Sealing.preview`) the sealed state is compared with what is
there now: the rows that go back, the conflicts (rows the run changed that the application
changed again), what would be lost (rows written since into a table the run created, values
written since into a column it added, a keyless table changed since), what was changed
again since, and rows written since that would not fit a definition put back. Nothing is
touched: ``core.undo_plan.refusal`` decides from the preview whether the rollback may go on.

Apart from ``_preimage`` so each module holds one idea: that one follows a run while it
works and puts back; this one looks at a run that completed. The class has no state of its
own: the attributes and methods it uses are ``PreImages``' (declared below for the type
checker).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _added, _rows
from lupo_migrate.backends.sqlalchemy._snapshot import TableImage, backup_names
from lupo_migrate.backends.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.core.fingerprint import Fingerprint, TableData, diff, restrict
from lupo_migrate.core.schema_checks import linked_tables
from lupo_migrate.core.undo_plan import RollbackPreview, RowConflict

__all__ = ["Sealing"]


class Sealing:
    """Sealing a completed run, confirming its rollback material, previewing its rollback."""

    if not TYPE_CHECKING:
        # No slots of its own, so PreImages (a slotted attrs class) keeps no __dict__;
        # hidden from mypy, which would hold the fields assigned below to this empty tuple.
        __slots__ = ()

    # PreImages' fields.

    engine: sa.Engine
    run_id: str
    backup_schema: str | None
    fingerprint: Fingerprint | None
    existed: frozenset[str]
    touched: set[str]
    tables: dict[str, TableImage]
    names: dict[str, str | None]
    renamed_columns: dict[str, dict[str, str]]
    sealed: bool
    created: dict[str, Any]
    unknown: list[str]
    rows_written: set[str] | None

    if TYPE_CHECKING:

        @property
        def is_sqlite(self) -> bool: ...

        @property
        def is_postgresql(self) -> bool: ...

        @property
        def restores(self) -> bool: ...

        @property
        def _family(self) -> str: ...

        def _connect(self) -> AbstractContextManager[sa.Connection]: ...

        def skip(self, name: str) -> bool: ...

        def _current(self, original: str) -> str | None: ...

        def _q(self, name: str) -> str: ...

        def _backup_name(self, kind: str = "") -> str: ...

        def _material_name(self) -> str: ...

        def columns_now(self, conn: sa.Connection, name: str) -> list[str]: ...

        def rowset(
            self, name: str, columns: Sequence[str], table: str | None = None
        ) -> _rows.RowSet | None: ...

        def save(self, connection: sa.Connection | None = None) -> str | None: ...

    # ------------------------------------------------------------------ when the run completes

    def seal(self, live: Fingerprint | None = None) -> None:
        """The run completed (writes still frozen): seal the rows it changed, record what it
        created as it left it, and keep the material (see the module docstring).

        *live*: the schema as the run left it, when the caller read it since the last
        statement ran (the validation after the run does, of the same schema, with the same
        tables left out); read here otherwise.
        """
        if self.fingerprint is None or not self.restores:
            return
        with self._connect() as conn:
            if live is None:
                live = read_fingerprint(conn, exclude=self.skip)
            whole: dict[str, list[Any]] = {}
            for name, image in list(self.tables.items()):
                current = self._current(name)
                if (
                    image.backup is None
                    or current is None
                    or f"table:{current}" not in live.objects
                ):
                    continue
                rowset = self._seal_table(conn, name, image, current)
                if not rowset.key:
                    after = table_data(conn, [current])[current]
                    whole[name] = [after.rows, after.checksum]
            made = {k[6:] for k in live.objects if k.startswith("table:") and k not in self.existed}
            made |= {
                n for n, was in self.names.items() if was is None and f"table:{n}" in live.objects
            }
            self.created = {
                "fingerprint": restrict(
                    live, self.touched | {f"table:{n}" for n in made}
                ).to_json(),
                "sums": _checksums(conn, sorted(made)),
                "whole": whole,
                "added": self._keep_added(conn, live),
            }
        self.sealed = True
        self.save()

    def _seal_table(
        self, conn: sa.Connection, name: str, image: TableImage, current: str
    ) -> _rows.RowSet:
        """Seal the rows of table *name* (called *current* now) the run changed; its rowset."""
        columns = self.columns_now(conn, current)
        rowset = self.rowset(name, columns, current)
        assert rowset is not None  # it has a copy
        sealed = self._backup_name("a")
        converted = None
        if rowset.key and self._only_altered(name):
            converted = self._backup_name("c")
            _rows.convert(conn, rowset, converted)
        _rows.seal(conn, rowset, sealed, columns, converted)
        if converted is not None:
            conn.exec_driver_sql(f"DROP TABLE {converted}")
        self.tables[name] = attrs.evolve(
            image, sealed=sealed, sealed_columns=tuple(columns), current=current
        )
        return rowset

    def seal_altered(self, conn: sa.Connection) -> None:
        """Before a rollback of a run that did not complete: seal the tables the run only
        altered (see :meth:`_only_altered`) as :meth:`seal` would, so that the rollback puts
        back what the alteration changed and leaves what the application wrote meanwhile
        (writes go on while MySQL/MariaDB alters a table online). Every other table goes back
        to its copy as a whole (writes were frozen). Kept with the material: a rollback run
        again uses the same seal."""
        if self.sealed or self.fingerprint is None:
            return
        present = set(read_fingerprint(conn, exclude=self.skip).tables)
        done = False
        for name, image in list(self.tables.items()):
            if image.backup is None or image.sealed is not None or not image.key or image.moved:
                continue
            if name not in present or not self._only_altered(name):
                continue
            if not set(image.key) <= set(self.columns_now(conn, name)):
                continue
            self._seal_table(conn, name, image, name)
            done = True
        if done:
            self.save()

    def _only_altered(self, name: str) -> bool:
        """Whether the rows of table *name* (its name before the run) changed by the run's
        definition changes alone: no statement of the run wrote its rows, none could have
        (a ``CALL``, a function, a trigger of a table written, a foreign key's cascade), and
        the server lets the application write while a table is altered (MySQL/MariaDB's
        online DDL, the online copy). Every other change to its rows is then the
        application's, made while the run worked: the seal leaves it out."""
        if self.is_sqlite or self.is_postgresql or self.unknown or self.fingerprint is None:
            return False
        image = self.tables.get(name)
        if image is None or image.moved is not None:  # dropped (set aside): not altered
            return False
        written = self.rows_written
        if written is None:
            return False
        linked = linked_tables(self.fingerprint, {f"table:{w}" for w in written})
        return name not in written | linked

    def _keep_added(self, conn: sa.Connection, live: Fingerprint) -> dict[str, Any]:
        """The values the run left in the columns it added to tables that were there before
        it, kept (see ``_added``): ``{name before the run: {"table": name now, "key": [...],
        "columns": {column: [literal default, backup table or None, values kept]}}}``."""
        assert self.fingerprint is not None
        out: dict[str, Any] = {}
        for key in sorted(k for k in self.touched if k.startswith("table:")):
            name = key[6:]
            before = self.fingerprint.objects.get(key)
            current = self._current(name)
            entry = live.objects.get(f"table:{current}")
            if before is None or current is None or entry is None:
                continue
            now = self.columns_now(conn, current)
            added = _added.added_columns(before, now, self.renamed_columns.get(name, {}))
            if not added:
                continue
            row_key = [k for k in _rows.row_key(entry, self._family) if k not in added]
            defaults = {c["name"]: c.get("default") for c in entry.get("columns", ())}
            columns = {}
            for column in added:
                default = _added.literal_default(defaults.get(column))
                into = self._backup_name("v")
                kept = _added.keep_values(conn, self._q(current), column, row_key, default, into)
                columns[column] = [default, into if kept else None, kept]
            out[name] = {"table": current, "key": row_key, "columns": columns}
        return out

    def _added_lost(self, conn: sa.Connection, keys: Collection[str]) -> list[str]:
        """What the rollback would lose with the columns the run added: one line for each
        that holds values written since the run (see :meth:`_keep_added`)."""
        lines = []
        added = self.created.get("added", {}) if self.created else {}
        for name, info in sorted(added.items()):
            table = str(info["table"])
            if f"table:{name}" not in keys or not _exists_table(conn, table, self):
                continue
            present = set(self.columns_now(conn, table))
            for column, (default, kept, _count) in sorted(info["columns"].items()):
                if column not in present:
                    continue
                found, shown = _added.written_since(
                    conn, self._q(table), column, info["key"], default, kept
                )
                if found:
                    more = f" and {found - len(shown)} more" if found > len(shown) else ""
                    lines.append(
                        f"column {table}.{column}, added by the run, holds values written"
                        f" since the run in {found} row(s) ({'; '.join(shown)}{more}): the"
                        " rollback drops the column, and them"
                    )
        return lines

    def confirm(self) -> tuple[bool, str]:
        """Whether everything a rollback of the completed run needs is there (its material,
        and every copy, set-aside column, moved table and sealed row table it names), and
        a line that says what."""
        with self._connect() as conn:
            there = set(backup_names(self.engine, conn, self.backup_schema))
        wanted = {
            "copies": [i.backup for i in self.tables.values() if i.backup],
            "columns set aside": [t for i in self.tables.values() for t in i.aside.values()],
            "tables set aside": [i.moved for i in self.tables.values() if i.moved],
            "sealed row tables": [i.sealed for i in self.tables.values() if i.sealed],
            "added-column values": [
                column[1]
                for info in (self.created or {}).get("added", {}).values()
                for column in info["columns"].values()
                if column[1]
            ],
        }
        missing = [
            name
            for names in wanted.values()
            for name in names
            if name.rpartition(".")[2].strip('`"') not in there
        ]
        kept = ", ".join(f"{len(v)} {k}" for k, v in wanted.items() if v) or "definitions only"
        material = self._material_name().rpartition(".")[2].strip('`"')
        if material not in there:
            missing.append(material)
        if missing:
            return False, f"rollback material missing: {', '.join(missing)}"
        return True, f"rollback material kept and checked: {kept}"

    # ------------------------------------------------------------------ before a rollback

    def preview(self, only: Collection[str] | None = None, limit: int = 50) -> RollbackPreview:
        """What rolling back the sealed run would do, read now, touching nothing: the rows
        that go back, the conflicts (at most *limit* listed), what would be lost, and what
        changed its definition since the run (then the rollback is refused)."""
        assert self.fingerprint is not None
        undo: dict[str, dict[str, int]] = {}
        kept: list[str] = []
        found: list[RowConflict] = []
        more = 0
        lost: list[str] = []
        changed: list[str] = []
        keys = self.touched if only is None else self.touched & set(only)
        with self._connect() as conn:
            live = read_fingerprint(conn, exclude=self.skip)
            if self.created:
                after = Fingerprint.from_json(self.created["fingerprint"])
                mine = set(after.objects) if only is None else set(after.objects) & keys
                changed = [str(d) for d in diff(restrict(after, mine), restrict(live, mine))]
                sums = self.created.get("sums", {})
                made = [
                    n
                    for n in sorted(sums)
                    if f"table:{n}" in live.objects and (only is None or f"table:{n}" in keys)
                ]
                for name, checksum in sorted(_checksums(conn, made).items()):
                    if checksum != sums[name]:
                        rows = conn.exec_driver_sql(
                            f"SELECT COUNT(*) FROM {self._q(name)}"
                        ).scalar()
                        lost.append(
                            f"table {name}, created by the run, holds {rows} row(s) now and"
                            " changed since the run completed: the rollback drops it, and the"
                            " rows written since with it"
                        )
            lost += self._added_lost(conn, keys)
            unfit = self._unfit(conn, keys)
            whole = self.created.get("whole", {}) if self.created else {}
            for name, image in sorted(self.tables.items()):
                if f"table:{name}" not in keys or image.sealed is None:
                    continue
                current = image.current or name
                rowset = self.rowset(name, image.sealed_columns, current)
                if rowset is None:
                    continue
                counts = _rows.sealed_counts(conn, image.sealed)
                undo[name] = {
                    label: counts.get(op, 0)
                    for op, label in (
                        ("i", "inserted"),
                        ("u", "changed"),
                        ("d", "deleted"),
                        ("k", "kept"),
                        ("a", "rows"),
                    )
                    if counts.get(op)
                }
                kept.append(name)
                if not rowset.key:
                    now = table_data(conn, [current])[current]
                    rows, checksum = whole.get(name, [None, None])
                    if now != TableData(rows=rows, checksum=checksum):
                        lost.append(
                            f"table {name} has no primary or unique key and changed since the"
                            " run: its rows cannot be told apart, so the rollback would put"
                            " back all of them as they were before the run"
                        )
                    continue
                room = max(limit - len(found), 0)
                got = _rows.conflicts(conn, rowset, name, image.sealed_columns, room + 1)
                if len(got) > room:
                    more += len(got) - room
                    got = got[:room]
                found += got
        return RollbackPreview(
            run_id=self.run_id,
            undo=undo,
            kept=tuple(kept),
            conflicts=tuple(found),
            more=more,
            lost=tuple(lost),
            changed=tuple(changed),
            unfit=tuple(unfit),
            set_aside=tuple(self._set_aside(keys)),
        )

    def _set_aside(self, keys: Collection[str]) -> list[str]:
        """What the run's drops set aside (see :attr:`RollbackPreview.set_aside`)."""
        lines = []
        for name, image in sorted(self.tables.items()):
            if f"table:{name}" not in keys:
                continue
            if image.moved is not None:
                lines.append(f"table {name}: set aside whole as {image.moved}, moved back")
            for column, table in sorted(image.aside.items()):
                lines.append(f"column {name}.{column}: its values set aside by key in {table}")
        return lines

    def _unfit(self, conn: sa.Connection, keys: Collection[str]) -> list[str]:
        """Rows that stay (not the run's) but would not fit a column's definition before the
        run once it is put back: NULL where the column was NOT NULL, or a value of another
        type that does not convert back; one line each (the rollback is then refused)."""
        assert self.fingerprint is not None
        lines: list[str] = []
        for name, image in sorted(self.tables.items()):
            before = self.fingerprint.objects.get(f"table:{name}")
            current = self._current(name)
            if f"table:{name}" not in keys or before is None or current is None:
                continue
            if not _exists_table(conn, current, self):
                continue
            renamed = self.renamed_columns.get(name, {})
            now = {renamed.get(c, c): c for c in self.columns_now(conn, current)}
            stays = self._staying(image, current)
            for column in before.get("columns", ()):
                was = column["name"]
                if was not in now or column.get("generated"):
                    continue
                col = f"{self._q(current)}.{self._q(now[was])}"
                if not column.get("nullable", True):
                    found = conn.exec_driver_sql(
                        f"SELECT COUNT(*) FROM {self._q(current)} WHERE {col} IS NULL{stays}"
                    ).scalar_one()
                    if found:
                        lines.append(
                            f"{found} row(s) of {name} written since the run hold NULL in"
                            f" {was}, which was NOT NULL before it: the column's definition"
                            " cannot be put back without changing them"
                        )
                bad = self._unconvertible(conn, current, now[was], column, stays)
                if bad:
                    lines.append(
                        f"{bad} row(s) of {name} hold values in {was} that do not convert back"
                        f" to {column['type']}: the column's definition cannot be put back"
                        " without changing them"
                    )
        return lines

    def _staying(self, image: TableImage, current: str) -> str:
        """A condition (`` AND ...``) keeping the rows of table *current* a rollback leaves
        as they are: all but the sealed rows the run changed (they go back to their
        copies)."""
        if image.sealed is None or not image.key:
            return ""
        op = self._q("lupo_op")
        key = " AND ".join(f"s.{self._q(k)} = {self._q(current)}.{self._q(k)}" for k in image.key)
        return f" AND NOT EXISTS (SELECT 1 FROM {image.sealed} AS s WHERE {key} AND s.{op} <> 'k')"

    def _unconvertible(
        self, conn: sa.Connection, table: str, column: str, before: Mapping[str, Any], stays: str
    ) -> int:
        """How many staying values of *column* would not convert back to the type *before*
        gives it (MySQL in strict mode, PostgreSQL: the conversion fails; 0 when the type is
        the same, or on SQLite, whose columns take any value)."""
        if self.is_sqlite:
            return 0
        q = self._q
        now_type = conn.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns WHERE table_schema ="
            f" {'current_schema()' if self.is_postgresql else 'DATABASE()'}"
            " AND table_name = %s AND column_name = %s",
            (table, column),
        ).scalar()
        kind = str(before.get("type") or "")
        if now_type is None or kind.split("(")[0].lower().startswith(str(now_type).lower()):
            return 0
        try:
            # PostgreSQL: a failed conversion aborts the transaction, so it is tried under a
            # savepoint. MySQL/MariaDB: a failed statement leaves the transaction as it was,
            # and the connection may be in autocommit, where a savepoint does not outlive its
            # statement (its release failed: every staying row was then counted unfit).
            nested = self.is_postgresql and conn.in_transaction()
            with conn.begin_nested() if nested else contextlib.nullcontext():
                if self.is_postgresql:
                    conn.exec_driver_sql(
                        f"SELECT COUNT(({q(column)})::text::{kind}) FROM {q(table)}"
                        f" WHERE {q(column)} IS NOT NULL{stays}"
                    ).scalar()
                else:
                    return self._unconvertible_mysql(conn, table, column, kind, stays)
        except sa.exc.DBAPIError:
            where = f"{q(table)}.{q(column)} IS NOT NULL{stays}"
            return int(
                conn.exec_driver_sql(f"SELECT COUNT(*) FROM {q(table)} WHERE {where}").scalar_one()
            )
        return 0

    def _unconvertible_mysql(
        self, conn: sa.Connection, table: str, column: str, kind: str, stays: str
    ) -> int:
        """MySQL/MariaDB: each staying value of *column* beside its conversion to *kind* (made
        as a non-strict ``INSERT IGNORE`` makes it: clipped, cut, rounded) in a session table
        of its own; those that differ are counted."""
        q = self._q
        now = conn.exec_driver_sql(
            "SELECT column_type FROM information_schema.columns WHERE table_schema ="
            " DATABASE() AND table_name = %s AND column_name = %s",
            (table, column),
        ).scalar_one()
        probe = q("lupo_probe")
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {probe}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {probe} (v {kind} NULL, w {now} NULL)")
        try:
            conn.exec_driver_sql(
                f"INSERT IGNORE INTO {probe} (v, w) SELECT {q(table)}.{q(column)},"
                f" {q(table)}.{q(column)} FROM {q(table)}"
                f" WHERE {q(table)}.{q(column)} IS NOT NULL{stays}"
            )
            return int(
                conn.exec_driver_sql(
                    f"SELECT COUNT(*) FROM {probe} WHERE NOT (v <=> w)"
                ).scalar_one()
            )
        finally:
            conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {probe}")

    def keep_conflicts(self, only: Collection[str] | None = None) -> int:
        """The application's version of every conflicting row stays as it is now: mark them
        so (in the sealed tables: durable, for a rollback that dies and is finished by
        ``recover``). Returns how many were marked."""
        keys = self.touched if only is None else self.touched & set(only)
        marked = 0
        with self._connect() as conn:
            for name, image in sorted(self.tables.items()):
                if f"table:{name}" not in keys or image.sealed is None:
                    continue
                rowset = self.rowset(name, image.sealed_columns, image.current)
                if rowset is not None:
                    marked += _rows.keep_conflicting(conn, rowset, image.sealed_columns)
        return marked


def _checksums(conn: sa.Connection, names: Sequence[str]) -> dict[str, str]:
    """A checksum of the rows of each of *names* (tables of the connection's schema), in a
    few statements however many tables there are (a run may create hundreds): MySQL's
    ``CHECKSUM TABLE``, PostgreSQL one query per hundred tables; SQLite reads them."""
    out: dict[str, str] = {}
    dialect = conn.dialect.name
    q = conn.dialect.identifier_preparer.quote_identifier
    for start in range(0, len(names), 100):
        chunk = names[start : start + 100]
        if dialect == "mysql":
            found = conn.exec_driver_sql(f"CHECKSUM TABLE {', '.join(q(n) for n in chunk)}")
            for table, value in found:
                out[str(table).rpartition(".")[2]] = str(value)
        elif dialect == "postgresql":
            parts = [
                f"SELECT %s, COUNT(*)::text || ':' || COALESCE(md5(string_agg(t::text, ','"
                f" ORDER BY t::text)), '') FROM {q(n)} AS t"
                for n in chunk
            ]
            for table, value in conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(chunk)):
                out[str(table)] = str(value)
        else:
            for name, data in table_data(conn, chunk).items():
                out[name] = f"{data.rows}:{data.checksum}"
    return out


def _exists_table(conn: sa.Connection, name: str, pre: Sealing) -> bool:
    """Whether table *name* is in the core schema now."""
    if pre.is_sqlite:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        here = "current_schema()" if pre.is_postgresql else "DATABASE()"
        sql = (
            "SELECT 1 FROM information_schema.tables"
            f" WHERE table_schema = {here} AND table_name = %s"
        )
    return conn.exec_driver_sql(sql, (name,)).first() is not None
