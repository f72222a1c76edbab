"""Verifying and restoring after a rollback: a run's touched objects against their pre-images.

:func:`compare_images` reads the live fingerprint and reports what differs from the pre-images
(a :class:`RestoreReport`): definitions, and rows (a frozen rollback: tables whose rows differ
from their count and checksum before the run; a completed run's: sealed rows not yet put back).
:func:`put_back` then brings back what differs, **never dropping or emptying what it has no copy
of**, with foreign key checks off:

1. objects the run created (absent from what existed before it) are dropped;
2. a table the run dropped comes back from where a soft drop moved it, or is recreated from its
   definition and filled from its copy; without either, it is left gone, and said so;
3. a table whose definition differs is brought back to it with its rows kept
   (:mod:`._converge`); columns that came back are filled by key from their copy;
4. rows: a frozen rollback puts back every row that differs from the copy; a completed run's
   puts back the sealed rows only, and leaves the application's alone (:mod:`._rows`); the
   table's triggers are off meanwhile (dropped and made again) so that they see nothing;
5. views, triggers, routines and events come back from their ``CREATE`` texts.

Whatever cannot be put back without losing something is left as it is and named in
:attr:`RestoreReport.left`: the rollback then fails, and the target is blocked, with the data
where it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _converge, _postgres, _rows
from lupo_migrate.backends.sqlalchemy._snapshot import TableImage, _q, routine_keys
from lupo_migrate.backends.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.fingerprint import Difference, Fingerprint, TableData, diff, restrict


class PreImages(Protocol):
    """What putting tables back reads of the run's pre-images (``_preimage.PreImages``): the
    images kept before the run, and how to reach and name tables now. Explicit, so that this
    module needs nothing else of the pre-images, which call it."""

    fingerprint: Fingerprint | None
    existed: frozenset[str]
    touched: set[str]
    tables: dict[str, TableImage]
    definitions: dict[str, str]
    names: dict[str, str | None]
    renamed_columns: dict[str, dict[str, str]]
    sealed: bool

    @property
    def is_sqlite(self) -> bool: ...

    @property
    def is_postgresql(self) -> bool: ...

    def skip(self, name: str) -> bool: ...

    def new_backup_name(self, kind: str) -> str: ...

    def _q(self, name: str) -> str: ...

    def columns_now(self, conn: sa.Connection, name: str) -> list[str]: ...

    def rowset(
        self, name: str, columns: Sequence[str], table: str | None = None
    ) -> _rows.RowSet | None: ...


__all__ = [
    "RestoreReport",
    "checks_off",
    "compare_images",
    "put_back",
    "refill",
    "uncopied",
]


@attrs.frozen
class RestoreReport:
    """What a restore did and what still differs.

    Attributes:
        restored: objects put back from their pre-image (``table:t``...).
        dropped: objects the run had created, dropped.
        differences: what still differs from the pre-image afterwards (empty: verified).
        data: tables whose rows still differ, with (before, after).
        checked: how many objects were compared.
        rows: rows put back, by table.
        left: what was left as it is, and why (it could not be put back without a loss).
        unreverted: a completed run's rollback: sealed rows not yet as before, by table.
        reordered: PostgreSQL: tables whose columns are all back, but not in their old order
            (a column put back comes last there), one line each.
    """

    restored: tuple[str, ...]
    dropped: tuple[str, ...]
    differences: tuple[Difference, ...]
    data: Mapping[str, tuple[TableData, TableData]]
    checked: int
    rows: Mapping[str, int] = attrs.field(factory=dict)
    left: tuple[str, ...] = ()
    unreverted: Mapping[str, int] = attrs.field(factory=dict)
    reordered: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """Whether every touched object equals its pre-image, rows included."""
        return not self.differences and not self.data and not self.left and not self.unreverted


def compare_images(
    pre: PreImages, conn: sa.Connection, only: Collection[str] | None
) -> RestoreReport:
    """The touched objects (or those of *only*) compared with their pre-images; rows as the
    rollback's kind says (see the module docstring)."""
    assert pre.fingerprint is not None
    now = read_fingerprint(conn, exclude=pre.skip)
    keys = set(pre.touched if only is None else pre.touched & set(only))
    for key in [k for k in keys if k.startswith("routine:?:")]:  # every overload of it
        keys.update(routine_keys(key[10:], [*pre.fingerprint.objects, *now.objects]))
    differences = diff(restrict(pre.fingerprint, keys), restrict(now, keys))
    moved: list[str] = []
    if pre.is_postgresql:  # a column put back comes last there: said, not a failure
        moved = [
            f"{d.key.partition(':')[2]}: columns {', '.join(d.after)} (before the run:"
            f" {', '.join(d.before)})"
            for d in differences
            if d.path == ("column order",)
        ]
        differences = tuple(d for d in differences if d.path != ("column order",))
    mine = [n for n in pre.tables if f"table:{n}" in keys and f"table:{n}" in now.objects]
    data: dict[str, tuple[TableData, TableData]] = {}
    unreverted: dict[str, int] = {}
    # Sealed tables (a completed run's; a table the run only altered, see
    # Sealing.seal_altered) are compared by their sealed rows, the others as a whole.
    sealed = [n for n in mine if pre.tables[n].sealed is not None]
    for name in sealed:
        rowset = pre.rowset(name, pre.columns_now(conn, name))
        if rowset is not None and rowset.sealed is not None and rowset.key:
            count = _rows.unreverted(conn, rowset)
            if count:
                unreverted[name] = count
    if not pre.sealed:
        counted = [
            n for n in mine if pre.tables[n].data is not None and pre.tables[n].sealed is None
        ]
        after = table_data(conn, counted)
        for name in counted:
            was = pre.tables[name].data
            if was is not None and after[name] != was:
                data[name] = (was, after[name])
    return RestoreReport(
        (), (), differences, data, len(keys), unreverted=unreverted, reordered=tuple(moved)
    )


def uncopied(pre: PreImages, report: RestoreReport) -> list[str]:
    """Why the rows of tables in *report* that still differ were left as they are: no copy
    of them was kept (a table over the backup limit whose rows the run was not expected to
    change)."""
    return [
        f"table {name}: its rows differ from before the run ({was.rows} -> {now.rows} rows)"
        " and no copy of them was kept (over the backup limit): they were left as they are"
        for name, (was, now) in report.data.items()
        if pre.tables.get(name) is None or pre.tables[name].backup is None
    ]


def put_back(
    pre: PreImages, conn: sa.Connection, first: RestoreReport, only: Collection[str] | None
) -> tuple[list[str], list[str], dict[str, int], list[str]]:
    """Put back what *first* (a comparison) found different: see the module docstring.
    Returns what was restored, what was dropped, the rows put back by table and what was left
    as it is (with why)."""
    assert pre.fingerprint is not None
    wrong = (
        {d.key for d in first.differences}
        | {f"table:{n}" for n in first.data}
        | {f"table:{n}" for n in first.unreverted}
    )
    if pre.sealed:  # sealed rows go back whether or not their table's definition changed
        wrong |= {f"table:{n}" for n, image in pre.tables.items() if image.sealed}
        wrong &= pre.touched if only is None else pre.touched & set(only)
    # (A run that did not complete: a table it only altered, sealed before the rollback,
    # comes in by its definition or by its sealed rows not yet back: first.unreverted.)
    restored: list[str] = []
    dropped: list[str] = []
    rows: dict[str, int] = {}
    left: list[str] = []
    live = read_fingerprint(conn, exclude=pre.skip) if pre.is_postgresql else None
    at_end: list[str] = []
    with checks_off(conn):
        # What the run created goes first (triggers and views before tables); then tables
        # come back, then what is defined on them (routines, views, triggers, events).
        for key in sorted(wrong - pre.existed, key=_order):
            kind, _, name = key.partition(":")
            if kind == "table" and name in pre.names and pre.names[name] is not None:
                # The run's record says this name left (or stands for a table that was
                # there): never dropped on that word; left, and said so.
                left.append(
                    f"table {name} is there, but the run's record says the run dropped or"
                    " renamed it: it was left as it is"
                )
                continue
            _drop(conn, kind, name, live=live)
            dropped.append(key)
        for key in sorted(wrong & pre.existed, key=_order, reverse=True):
            kind, _, name = key.partition(":")
            if kind == "table":
                done, why = _table(pre, conn, name, first, rows, at_end)
                if why is not None:
                    left.append(why)
                if not done:
                    continue
            elif key in pre.definitions:
                _drop(conn, kind, name, live=live)
                conn.exec_driver_sql(pre.definitions[key])
            else:
                continue
            restored.append(key)
        for statement in at_end:  # foreign keys checked once every table's rows are back
            conn.exec_driver_sql(statement)
    return restored, dropped, rows, left


@contextlib.contextmanager
def checks_off(conn: sa.Connection) -> Iterator[None]:
    """Foreign key checks off while objects and rows go back (PostgreSQL: the replica role,
    for this transaction only, which needs a superuser; without it, checks stay on)."""
    name = conn.dialect.name
    if name == "sqlite":  # off by default; a pragma is per connection and ignored in a BEGIN
        yield
        return
    if name == "postgresql":
        savepoint = conn.begin_nested()
        try:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            savepoint.commit()
        except sa.exc.DBAPIError:
            savepoint.rollback()
        yield
        return
    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
    try:
        yield
    finally:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def _table(
    pre: PreImages,
    conn: sa.Connection,
    name: str,
    first: RestoreReport,
    rows: dict[str, int],
    at_end: list[str],
) -> tuple[bool, str | None]:
    """Put table *name* back (see the module docstring); (whether anything was done, why
    something was left as it is)."""
    image = pre.tables.get(name)
    if image is None:
        return False, f"table {name}: no pre-image of it was kept, so it was left as it is"
    moved_back = False
    if not _exists(conn, name):
        if image.moved is not None:
            # As the soft drop found it: its definition may have changed earlier in the run.
            _move_back(pre, conn, image.moved, name)
            moved_back = True
        elif image.backup is None and (image.data is None or image.data.rows):
            return False, (
                f"table {name} is gone and no copy of its rows was kept (it had more rows"
                " than the backup limit): it was not recreated empty; restore it from a"
                " backup of your own, then `lupo-migrate resolve`"
            )
        else:
            assert pre.fingerprint is not None
            at_end += refill(conn, name, image, pre.fingerprint.objects.get(f"table:{name}"))
            rows[name] = image.data.rows if image.data is not None else 0
            return True, None
    added: list[str] = []
    after_fill: list[str] = []
    early = 0
    if moved_back or any(d.key == f"table:{name}" for d in first.differences):
        early_rows = pre.rowset(name, pre.columns_now(conn, name))
        sealed = image.sealed is not None
        if early_rows is not None and not pre.is_sqlite and (sealed or name in first.data):
            early = _rows.drop_inserted(conn, early_rows)
        added, after_fill, last = _converge_table(pre, conn, name, image)
        at_end += last
    triggers = _triggers_off(conn, name)
    try:
        count = early
        columns = pre.columns_now(conn, name)
        for column in added:
            count += _fill(pre, conn, name, image, column)
        rowset = pre.rowset(name, columns)
        if rowset is not None and rowset.sealed is not None:
            _rows.revert_sealed(conn, rowset)
            count += sum(v for k, v in _rows.sealed_counts(conn, rowset.sealed).items() if k != "k")
        elif name in first.data and rowset is not None:
            count += _rows.revert_frozen(conn, rowset)
        if count:
            rows[name] = count
        for statement in after_fill:  # NOT NULL, keys: once the column holds its values
            conn.exec_driver_sql(statement)
    finally:
        if moved_back and not pre.is_postgresql:  # PostgreSQL's moved with the table
            _recreate(conn, image.triggers)
        else:
            _recreate(conn, triggers)
    return True, None


def _converge_table(
    pre: PreImages, conn: sa.Connection, name: str, image: TableImage
) -> tuple[list[str], list[str], list[str]]:
    """Bring table *name*'s definition back to *image*'s, rows kept; the columns added back,
    what to run once they are filled (PostgreSQL: their NOT NULL, keys on them) and once
    every table's rows are back (PostgreSQL: validating foreign keys)."""
    table = pre._q(name)
    renamed = pre.renamed_columns.get(name, {})
    if pre.is_postgresql:
        assert pre.fingerprint is not None
        before = pre.fingerprint.objects[f"table:{name}"]
        live = read_fingerprint(conn, exclude=pre.skip).objects[f"table:{name}"]
        stages, added, after, last = _postgres.alter_back(table, before, live, renamed)
        for stage in stages:
            for statement in stage:
                conn.exec_driver_sql(statement)
        return added, after, last
    if not pre.is_sqlite:
        before_ddl = _converge.parse_mysql(image.ddl)
        if before_ddl is not None:
            got = _converge.mysql_alter(
                table,
                before_ddl,
                lambda: _converge.parse_mysql(_show_create(conn, table)),
                lambda sql: _run(conn, sql),
                renamed,
            )
            if got is not None and _converge.same_definition(_show_create(conn, table), image.ddl):
                return got, [], []
    columns = pre.columns_now(conn, name)
    wanted = _ddl_columns(pre, name, image)
    back = {now_name: renamed.get(now_name, now_name) for now_name in columns}
    pairs = [(n, b) for n, b in back.items() if b in wanted]
    added = [c for c in wanted if c not in set(back.values())]
    _converge.rebuild(
        conn,
        table,
        image.ddl,
        pre.new_backup_name("hold"),
        pairs,
        create=image.triggers if pre.is_sqlite else (),
    )
    return added, [], []


def _ddl_columns(pre: PreImages, name: str, image: TableImage) -> list[str]:
    """The columns table *name* had before the run (generated ones aside)."""
    assert pre.fingerprint is not None
    entry = pre.fingerprint.objects.get(f"table:{name}")
    if entry is None:
        return list(image.columns)
    return [c["name"] for c in entry["columns"] if not c.get("generated")]


def _fill(pre: PreImages, conn: sa.Connection, name: str, image: TableImage, column: str) -> int:
    """A column that came back gets its values from before the run, by key: from the copy
    of the table, or from where a ``DROP COLUMN`` set it aside. Returns the rows filled."""
    source = image.aside.get(column)
    if source is None and image.backup is not None and column in image.columns:
        source = image.backup
    if source is None or not image.key:
        return 0
    t = pre._q(name)
    c = pre._q(column)
    key = " AND ".join(f"s.{pre._q(k)} = {t}.{pre._q(k)}" for k in image.key)
    if pre.is_sqlite or pre.is_postgresql:
        sql = (
            f"UPDATE {t} SET {c} = (SELECT s.{c} FROM {source} AS s WHERE {key})"
            f" WHERE EXISTS (SELECT 1 FROM {source} AS s WHERE {key})"
        )
    else:
        join = " AND ".join(f"s.{pre._q(k)} = {t}.{pre._q(k)}" for k in image.key)
        sql = f"UPDATE {t} JOIN {source} AS s ON {join} SET {t}.{c} = s.{c}"
    return max(int(conn.exec_driver_sql(sql).rowcount), 0)


def _triggers_off(conn: sa.Connection, name: str) -> list[str]:
    """Turn table *name*'s triggers off (rows put back must not fire them); the statements
    that turn them on again. MySQL and SQLite drop them (their ``CREATE`` texts are what comes
    back); PostgreSQL disables them."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        table = _q(name, conn)
        conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        return [f"ALTER TABLE {table} ENABLE TRIGGER USER"]
    if dialect == "sqlite":
        found = [
            (str(n), str(sql))
            for n, sql in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (name,),
            )
        ]
    else:
        names = conn.exec_driver_sql(
            "SELECT trigger_name FROM information_schema.triggers"
            " WHERE event_object_schema = DATABASE() AND event_object_table = %s",
            (name,),
        ).scalars()
        found = [
            (str(n), str(conn.exec_driver_sql(f"SHOW CREATE TRIGGER {_q(str(n))}").one()[2]))
            for n in list(names)
        ]
    for trigger, _ in found:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_q(trigger, conn)}")
    return [sql for _, sql in found]


def _run(conn: sa.Connection, sql: str) -> None:
    conn.exec_driver_sql(sql)


def _recreate(conn: sa.Connection, statements: Collection[str]) -> None:
    for statement in statements:
        conn.exec_driver_sql(statement)


def _exists(conn: sa.Connection, name: str) -> bool:
    """Whether table *name* is in the core schema (the connection's default) now."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql, params = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    else:
        here = "current_schema()" if dialect == "postgresql" else "DATABASE()"
        sql = (
            "SELECT 1 FROM information_schema.tables"
            f" WHERE table_schema = {here} AND table_name = %s"
        )
        params = (name,)
    return conn.exec_driver_sql(sql, params).first() is not None


def _show_create(conn: sa.Connection, table: str) -> str:
    return str(conn.exec_driver_sql(f"SHOW CREATE TABLE {table}").one()[1])


def _move_back(pre: PreImages, conn: sa.Connection, moved: str, name: str) -> None:
    """Bring a soft-dropped table back from *moved* (qualified, quoted) as *name*."""
    if pre.is_sqlite:  # pragma: no cover - SQLite copies instead of moving (one file per schema)
        raise StorageError(f"table {name} cannot be moved back from {moved} on SQLite")
    if pre.is_postgresql:
        bare = moved.rpartition(".")[2]
        here = conn.exec_driver_sql("SELECT current_schema()").scalar()
        conn.exec_driver_sql(f"ALTER TABLE {moved} SET SCHEMA {pre._q(str(here))}")
        conn.exec_driver_sql(f"ALTER TABLE {bare} RENAME TO {pre._q(name)}")
        return
    conn.exec_driver_sql(f"RENAME TABLE {moved} TO {pre._q(name)}")


def refill(
    conn: sa.Connection, name: str, image: TableImage | None, entry: Mapping[str, Any] | None = None
) -> list[str]:
    """Recreate table *name*, which is gone, from its pre-image *image* (PostgreSQL: from its
    fingerprint *entry*), rows and triggers included (never called for a table that is
    there: its rows are not ours to drop); returns what to run once every table's rows are
    back (PostgreSQL: validating its foreign keys)."""
    if image is None:
        raise StorageError(f"no pre-image of table {name}: it cannot be restored")
    table = _q(name, conn)
    pg = conn.dialect.name == "postgresql"
    if pg and entry is not None:
        statements = _postgres.create_statements(table, entry)
        creating = [x for x in statements if x.startswith(("CREATE SEQUENCE", "CREATE TABLE"))]
        keys = [x for x in statements if x not in creating]
    else:
        creating, keys = [image.ddl], []
    for statement in creating:
        conn.exec_driver_sql(statement)
    if image.backup is not None:
        cols = ", ".join(_q(c, conn) for c in image.columns)
        over = " OVERRIDING SYSTEM VALUE" if pg else ""
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({cols}){over} SELECT {cols} FROM {image.backup}"
        )
    if pg and entry is not None:
        for sequence in _postgres.sequences(entry):  # drawing on after the rows put back
            column = next(
                c["name"] for c in entry["columns"] if sequence in str(c.get("default") or "")
            )
            conn.exec_driver_sql(
                f"SELECT setval('{sequence}', COALESCE((SELECT MAX({_q(column, conn)})"
                f" FROM {table}), 0) + 1, false)"
            )
    last: list[str] = []
    if pg and entry is not None:  # once every table is back (they may refer to one)
        adding, validating = _postgres.foreign_keys(table, entry.get("foreign_keys", ()))
        last = adding + validating
    for statement in (*keys, *image.triggers):
        conn.exec_driver_sql(statement)
    return last


def _order(key: str) -> tuple[int, str]:
    """Triggers, events, views, routines, then tables: the order to drop in (reversed: to
    create)."""
    rank = {"trigger": 0, "event": 1, "view": 2, "routine": 3}
    return (rank.get(key.partition(":")[0], 4), key)


def _drop(conn: sa.Connection, kind: str, name: str, *, live: Fingerprint | None = None) -> None:
    """Drop an object the run created (never with CASCADE: what depends on it is not ours).
    PostgreSQL needs a trigger's table and a routine's argument types: from *live*."""
    pg = conn.dialect.name == "postgresql"
    if kind == "routine":
        rtype, _, rname = name.partition(":")
        if pg:
            bare, paren, arguments = rname.partition("(")
            signature = f"{_q(bare, conn)}({arguments}" if paren else _q(bare, conn)
            conn.exec_driver_sql(f"DROP {rtype.upper()} IF EXISTS {signature}")
        else:
            conn.exec_driver_sql(f"DROP {rtype.upper()} IF EXISTS {_q(rname)}")
    elif kind == "trigger" and pg:
        entry = (live.objects if live is not None else {}).get(f"trigger:{name}")
        if entry is not None:
            conn.exec_driver_sql(
                f"DROP TRIGGER IF EXISTS {_q(name, conn)} ON {_q(entry['table'], conn)}"
            )
    elif kind == "view" and pg:
        entry = (live.objects if live is not None else {}).get(f"view:{name}")
        materialized = "MATERIALIZED " if entry is not None and entry.get("materialized") else ""
        conn.exec_driver_sql(f"DROP {materialized}VIEW IF EXISTS {_q(name, conn)}")
    elif kind in ("table", "view", "trigger", "event"):
        conn.exec_driver_sql(f"DROP {kind.upper()} IF EXISTS {_q(name, conn)}")
