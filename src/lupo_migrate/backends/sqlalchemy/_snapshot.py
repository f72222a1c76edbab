"""Taking pre-images, and the backup tables that hold tables' rows.

A table's pre-image (:func:`table_image`): its ``CREATE`` text (SQLite: with its indexes), the
``CREATE`` texts of its triggers, its row count and checksum and, when it has rows, a copy of
them in a backup table (``lupo_bk_<run>_<n>``, in the backup schema), refused beyond the backup
limit (:class:`BackupLimitError`) unless the step has a down of its own. Views, triggers and
routines keep their ``CREATE`` text (:func:`show_create`). Also here: how backup tables are
numbered (:func:`next_backup_number`) and dropped (:func:`drop_backups`, the kept material
included), and the JSON form of table images in that material.

Apart from :mod:`lupo_migrate.backends.sqlalchemy._preimage` (which re-exports the public names) so
that module stays readable in one sitting: ``PreImages`` decides what to snapshot and when, and
keeps the images; this module reads them from the database and copies the rows. The rest of the
pre-images' theory is in ``_preimage``'s docstring.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._rows import index_key, row_key
from lupo_migrate.backends.sqlalchemy.fingerprint import table_data
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.fingerprint import Fingerprint, TableData
from lupo_migrate.sql.touches import Touch

__all__ = [
    "BACKUP_PREFIX",
    "BackupLimitError",
    "TableImage",
    "drop_backups",
    "images_from_json",
    "images_to_json",
    "next_backup_number",
    "routine_keys",
    "show_create",
    "table_image",
]

#: Backup tables are named ``lupo_bk_<first 12 characters of the run id>_<n>``.
BACKUP_PREFIX: Final = "lupo_bk_"
_SHOW: Final = {"view": "VIEW", "trigger": "TRIGGER", "event": "EVENT"}


class BackupLimitError(StorageError):
    """A table to back up has more rows than the backup limit."""


@attrs.frozen
class TableImage:
    """A table as it was before the run, and what was kept of its rows.

    Attributes:
        ddl: its ``CREATE TABLE`` text (MySQL: ``SHOW CREATE TABLE``; SQLite: as stored).
        triggers: the ``CREATE`` texts of its triggers (SQLite: of its indexes too).
        data: its row count and checksum, or None when it was not read (a table over the
            backup limit whose rows the run does not change).
        backup: the copy of its rows (qualified, quoted), or None.
        columns: the columns of the copy.
        key: the columns that tell its rows apart (see ``_rows.row_key``); () for none.
        moved: where a soft drop moved the table itself (qualified, quoted), or None.
        aside: the columns a ``DROP COLUMN`` set aside: column -> table of (key, column).
        sealed: the rows the run changed, as it left them (see ``_rows.seal``), or None.
        sealed_columns: the table's columns when the run completed (the sealed table's).
        current: the table's name when the run completed (a rename), or None.
    """

    ddl: str
    triggers: tuple[str, ...]
    data: TableData | None
    backup: str | None
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()
    moved: str | None = None
    aside: Mapping[str, str] = attrs.field(factory=dict)
    sealed: str | None = None
    sealed_columns: tuple[str, ...] = ()
    current: str | None = None


def table_image(
    conn: sa.Connection,
    name: str,
    fingerprint: Fingerprint,
    *,
    sqlite: bool,
    copy: bool,
    limit: int,
    backup_name: Callable[[], str],
) -> TableImage:
    """The pre-image of table *name*: its definition, its key and, within *limit* rows, its
    row count and checksum; with *copy*, its rows copied to a backup table named by
    *backup_name* (called only when a copy is made).

    Args:
        fingerprint: the fingerprint before the run (names the table's columns and triggers).
        sqlite: read the ``CREATE`` texts from ``sqlite_master`` (else ``SHOW CREATE``).
        copy: copy the rows (the run changes them).
        limit: the most rows a table may have to be copied (or checksummed).

    Raises:
        BackupLimitError: a copy is asked of a table of more than *limit* rows.
    """
    mine = [
        key[8:]
        for key, value in fingerprint.objects.items()
        if key.startswith("trigger:") and value.get("table") == name
    ]
    pg = conn.dialect.name == "postgresql"
    if pg:  # no CREATE text: the fingerprint entry is the definition (see _postgres)
        ddl = ""
        triggers = tuple(
            str(fingerprint.objects[f"trigger:{t}"]["definition"]) for t in sorted(mine)
        )
    elif sqlite:
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
    entry = fingerprint.objects[f"table:{name}"]
    columns = tuple(
        c["name"] for c in entry["columns"] if not c.get("generated") and not c.get("hidden")
    )
    key = row_key(entry, conn.dialect.name)
    rows = count_upto(conn, _q(name, conn), limit)
    data = table_data(conn, [name])[name] if rows <= limit else None
    backup = None
    if copy:  # an empty table too: the rows the run inserts are told from the copy
        if rows > limit:
            raise BackupLimitError(
                f"table {name} has more than {limit} rows (the backup limit) and the run"
                " changes its rows: give the migration that changes it a down section"
                " (-- lupo:down), or raise the limit (--backup-limit)"
            )
        backup = backup_name()
        copy_rows(conn, _q(name, conn), backup, columns, key, sqlite=sqlite)
    return TableImage(
        ddl=ddl, triggers=triggers, data=data, backup=backup, columns=columns, key=key
    )


def count_upto(conn: sa.Connection, table: str, limit: int) -> int:
    """The rows of *table* (quoted), counted up to *limit* + 1 only: a big table costs what a
    small one does."""
    return int(
        conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {int(limit) + 1}) AS lupo_n"
        ).scalar_one()
    )


def copy_rows(
    conn: sa.Connection,
    table: str,
    backup: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    sqlite: bool,
) -> None:
    """Copy *table*'s *columns* (quoted: the table) into a new table *backup*, keyed as the
    table is (the rollback joins the two by *key*)."""
    cols = ", ".join(_q(c, conn) for c in columns)
    if sqlite or conn.dialect.name == "postgresql":  # the rows are what matters; the
        # definition is in the image (PostgreSQL: no default copied draws on a sequence)
        conn.exec_driver_sql(f"CREATE TABLE {backup} AS SELECT {cols} FROM {table}")
        index_key(conn, backup, key)
    else:
        conn.exec_driver_sql(f"CREATE TABLE {backup} LIKE {table}")
        conn.exec_driver_sql(f"INSERT INTO {backup} ({cols}) SELECT {cols} FROM {table}")


def set_aside(
    conn: sa.Connection,
    table: str,
    aside: str,
    key: Sequence[str],
    column: str,
    name: str | None = None,
) -> None:
    """Keep *column*'s values of *table* (quoted) by *key* in a new table *aside* (under
    *name*, by default the column's), before a ``DROP COLUMN`` takes them (any number of
    rows: one narrow copy)."""
    cols = ", ".join(
        [_q(c, conn) for c in key] + [f"{_q(column, conn)} AS {_q(name or column, conn)}"]
    )
    conn.exec_driver_sql(f"CREATE TABLE {aside} AS SELECT {cols} FROM {table}")
    index_key(conn, aside, key)


def show_create(
    conn: sa.Connection, touch: Touch, fingerprint: Fingerprint, *, sqlite: bool
) -> Iterator[tuple[str, str]]:
    """The key and ``CREATE`` text of the view, trigger or routine *touch* names, one at a
    time as each is read (a routine: the procedure and the function of that name that are
    in *fingerprint*); nothing for another kind. *sqlite*: read from ``sqlite_master``."""
    name = touch.name
    if touch.kind == "event" and sqlite:  # pragma: no cover - SQLite has no events
        return
    if conn.dialect.name == "postgresql":
        yield from _pg_definitions(touch, fingerprint)
        return
    if touch.kind in _SHOW and sqlite:
        yield _key(touch), _master_sql(conn, touch.kind, name)
    elif touch.kind in _SHOW:
        row = conn.exec_driver_sql(f"SHOW CREATE {_SHOW[touch.kind]} {_q(name)}").one()
        column = {"view": 1, "trigger": 2, "event": 3}[touch.kind]
        yield _key(touch), str(row[column])
    elif touch.kind == "routine":
        for kind in ("procedure", "function"):
            key = f"routine:{kind}:{name}"
            if key in fingerprint.objects:
                row = conn.exec_driver_sql(f"SHOW CREATE {kind.upper()} {_q(name)}").one()
                yield key, str(row[2])


def _pg_definitions(touch: Touch, fingerprint: Fingerprint) -> Iterator[tuple[str, str]]:
    """PostgreSQL: the statements making again the view, trigger or routine *touch* names,
    from the catalog's own texts in *fingerprint*."""
    keys = (
        routine_keys(touch.name, fingerprint.objects) if touch.kind == "routine" else [_key(touch)]
    )
    for key in keys:
        entry = fingerprint.objects.get(key)
        if entry is None:
            continue
        if touch.kind == "view":
            kind = "MATERIALIZED VIEW" if entry.get("materialized") else "VIEW"
            yield key, f"CREATE {kind} {_q(touch.name, 'postgresql')} AS {entry['definition']}"
        else:  # pg_get_triggerdef / pg_get_functiondef: whole CREATE statements
            yield key, str(entry["definition"])


def routine_keys(name: str, keys: Iterable[str]) -> list[str]:
    """The keys among *keys* of the procedures and functions named *name*: ``routine:
    function:f`` on MySQL, ``routine:function:f(integer)`` (each overload) on PostgreSQL."""
    out = []
    for key in keys:
        for kind in ("procedure", "function"):
            head = f"routine:{kind}:{name}"
            if key == head or key.startswith(head + "("):
                out.append(key)
    return sorted(out)


def next_backup_number(names: Iterable[str], run_id: str) -> int:
    """The number of the next backup table of *run_id*, after those of *names* (the tables
    of the backup schema, whatever they are: a copy the run was making when it died is
    there, though its material does not name it)."""
    own = re.compile(re.escape(f"{BACKUP_PREFIX}{run_id[:12]}_") + r"(\d+)")
    taken = [int(found.group(1)) for name in names if (found := own.match(name))]
    return max(taken, default=0) + 1


def images_to_json(tables: Mapping[str, TableImage]) -> dict[str, dict[str, Any]]:
    """*tables*' images as the kept material holds them (see ``PreImages.to_json``)."""
    return {
        name: {
            "ddl": image.ddl,
            "triggers": list(image.triggers),
            "rows": None if image.data is None else image.data.rows,
            "checksum": None if image.data is None else image.data.checksum,
            "backup": image.backup,
            "columns": list(image.columns),
            "key": list(image.key),
            "moved": image.moved,
            "aside": dict(image.aside),
            "sealed": image.sealed,
            "sealed_columns": list(image.sealed_columns),
            "current": image.current,
        }
        for name, image in tables.items()
    }


def images_from_json(tables: Mapping[str, Any]) -> dict[str, TableImage]:
    """The table images :func:`images_to_json` gave."""
    return {
        name: TableImage(
            ddl=t["ddl"],
            triggers=tuple(t["triggers"]),
            data=None if t["rows"] is None else TableData(rows=t["rows"], checksum=t["checksum"]),
            backup=t["backup"],
            columns=tuple(t["columns"]),
            key=tuple(t.get("key", ())),
            moved=t.get("moved"),
            aside=dict(t.get("aside", {})),
            sealed=t.get("sealed"),
            sealed_columns=tuple(t.get("sealed_columns", ())),
            current=t.get("current"),
        )
        for name, t in tables.items()
    }


def backup_names(engine: sa.Engine, conn: sa.Connection, backup_schema: str | None) -> list[str]:
    """The names of the tables of the backup schema (lupo_migrate's backup tables and any
    other there)."""
    if engine.dialect.name == "sqlite":
        schema = "" if backup_schema is None else f"{_q(backup_schema)}."
        return [
            str(n)
            for (n,) in conn.exec_driver_sql(
                f"SELECT name FROM {schema}sqlite_master WHERE type = 'table'"
            )
        ]
    here = "current_schema()" if engine.dialect.name == "postgresql" else "DATABASE()"
    where = here if backup_schema is None else "%s"
    params = () if backup_schema is None else (backup_schema,)
    return [
        str(n)
        for (n,) in conn.exec_driver_sql(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {where}",
            params,
        )
    ]


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


def _own_connection(
    engine: sa.Engine, *, lock_wait: int | None = None
) -> AbstractContextManager[sa.Connection]:
    """A connection of lupo_migrate's own: autocommit on MySQL (with *lock_wait*: reading
    without row locks, at READ COMMITTED, and waiting at most *lock_wait* seconds for one,
    so that an application's ``SELECT ... FOR UPDATE`` neither blocks a copy nor is blocked
    by it); on SQLite a transaction committed when the block ends."""
    if engine.dialect.name == "sqlite":
        return engine.begin()
    if lock_wait is None or engine.dialect.name != "mysql":
        return engine.execution_options(isolation_level="AUTOCOMMIT").connect()
    return _reading(engine, lock_wait)


@contextlib.contextmanager
def _reading(engine: sa.Engine, lock_wait: int) -> Iterator[sa.Connection]:
    """See :func:`_own_connection`; the session's settings are put back afterwards (the
    connection goes back to the pool, and a step may get it next)."""
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        try:
            level = conn.exec_driver_sql("SELECT @@SESSION.transaction_isolation").scalar()
        except sa.exc.DBAPIError:  # MariaDB before 11.1 calls it tx_isolation
            level = conn.exec_driver_sql("SELECT @@SESSION.tx_isolation").scalar()
        waits = conn.exec_driver_sql(
            "SELECT @@SESSION.innodb_lock_wait_timeout, @@SESSION.lock_wait_timeout"
        ).one()
        wait = max(int(lock_wait), 1)
        conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.exec_driver_sql(
            f"SET SESSION innodb_lock_wait_timeout = {wait}, SESSION lock_wait_timeout = {wait}"
        )
        try:
            yield conn
        finally:
            if not conn.invalidated:
                back = str(level or "REPEATABLE-READ").replace("-", " ")
                conn.exec_driver_sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {back}")
                conn.exec_driver_sql(
                    f"SET SESSION innodb_lock_wait_timeout = {int(waits[0])},"
                    f" SESSION lock_wait_timeout = {int(waits[1])}"
                )


def _master_sql(conn: sa.Connection, kind: str, name: str) -> str:
    """SQLite: the ``CREATE`` text of an object, from ``sqlite_master``."""
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)
    ).scalar()
    if sql is None:
        raise StorageError(f"no definition of {kind} {name} in sqlite_master")
    return str(sql)


def _q(name: str, dialect: Any = "mysql") -> str:
    """*name* quoted for *dialect* (a name, or a connection or engine whose dialect it is):
    double quotes on PostgreSQL, backquotes elsewhere (SQLite takes them too)."""
    if not isinstance(dialect, str):
        dialect = dialect.dialect.name
    if dialect == "postgresql":
        return '"' + name.replace('"', '""') + '"'
    return "`" + name.replace("`", "``") + "`"


def _key(touch: Touch) -> str:
    if touch.kind == "routine":
        return f"routine:?:{touch.name}"
    return f"{touch.kind}:{touch.name}"
