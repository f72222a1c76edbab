"""Taking pre-images, and the backup tables that hold tables' rows.

A table's pre-image (:func:`table_image`): its ``CREATE`` text (SQLite: with its indexes), the
``CREATE`` texts of its triggers, its row count and checksum and, when it has rows, a copy of
them in a backup table (``lupo_bk_<run>_<n>``, in the backup schema), refused beyond the backup
limit (:class:`BackupLimitError`) unless the step has a down of its own. Views, triggers and
routines keep their ``CREATE`` text (:func:`show_create`). Also here: how backup tables are
numbered (:func:`next_backup_number`) and dropped (:func:`drop_backups`, the kept material
included), and the JSON form of table images in that material.

Apart from :mod:`lupo_migrate.ext.sqlalchemy._preimage` (which re-exports the public names) so
that module stays readable in one sitting: ``PreImages`` decides what to snapshot and when, and
keeps the images; this module reads them from the database and copies the rows. The rest of the
pre-images' theory is in ``_preimage``'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final

import attrs
import sqlalchemy as sa

from lupo_migrate._fingerprint import Fingerprint, TableData
from lupo_migrate.errors import StorageError
from lupo_migrate.ext.sqlalchemy.fingerprint import table_data
from lupo_migrate.handlers._touch import Touch

__all__ = [
    "BACKUP_PREFIX",
    "BackupLimitError",
    "TableImage",
    "drop_backups",
    "images_from_json",
    "images_to_json",
    "next_backup_number",
    "show_create",
    "table_image",
]

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


def table_image(
    conn: sa.Connection,
    name: str,
    fingerprint: Fingerprint,
    *,
    sqlite: bool,
    limit: int,
    trust_down: bool,
    backup_name: Callable[[], str],
) -> TableImage:
    """The pre-image of table *name*, its rows copied to a backup table named by
    *backup_name* (called only when a copy is made).

    Args:
        fingerprint: the fingerprint before the run (names the table's columns and triggers).
        sqlite: read the ``CREATE`` texts from ``sqlite_master`` (else ``SHOW CREATE``).
        limit: the most rows a table may have to be copied.
        trust_down: over *limit*, copy nothing instead of raising (the step's down undoes it).

    Raises:
        BackupLimitError: the table has more than *limit* rows and *trust_down* is false.
    """
    mine = [
        key[8:]
        for key, value in fingerprint.objects.items()
        if key.startswith("trigger:") and value.get("table") == name
    ]
    if sqlite:
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
        for c in fingerprint.objects[f"table:{name}"]["columns"]
        if not c.get("generated") and not c.get("hidden")
    )
    backup = None
    if data.rows > limit and trust_down:
        pass  # its down section undoes it; the comparison afterwards checks the rows
    elif data.rows:
        if data.rows > limit:
            raise BackupLimitError(
                f"table {name} has {data.rows} rows, more than the backup limit"
                f" ({limit}): give the migration that changes it a down section"
                " (-- lupo:down), or raise the limit (--backup-limit)"
            )
        backup = backup_name()
        cols = ", ".join(_q(c) for c in columns)
        if sqlite:  # the rows are what matters; the definition is in ddl
            conn.exec_driver_sql(f"CREATE TABLE {backup} AS SELECT {cols} FROM {_q(name)}")
        else:
            conn.exec_driver_sql(f"CREATE TABLE {backup} LIKE {_q(name)}")
            conn.exec_driver_sql(f"INSERT INTO {backup} ({cols}) SELECT {cols} FROM {_q(name)}")
    return TableImage(ddl=ddl, triggers=triggers, data=data, backup=backup, columns=columns)


def show_create(
    conn: sa.Connection, touch: Touch, fingerprint: Fingerprint, *, sqlite: bool
) -> Iterator[tuple[str, str]]:
    """The key and ``CREATE`` text of the view, trigger or routine *touch* names, one at a
    time as each is read (a routine: the procedure and the function of that name that are
    in *fingerprint*); nothing for another kind. *sqlite*: read from ``sqlite_master``."""
    name = touch.name
    if touch.kind in _SHOW and sqlite:
        yield _key(touch), _master_sql(conn, touch.kind, name)
    elif touch.kind in _SHOW:
        row = conn.exec_driver_sql(f"SHOW CREATE {_SHOW[touch.kind]} {_q(name)}").one()
        yield _key(touch), str(row[1] if touch.kind == "view" else row[2])
    elif touch.kind == "routine":
        for kind in ("procedure", "function"):
            key = f"routine:{kind}:{name}"
            if key in fingerprint.objects:
                row = conn.exec_driver_sql(f"SHOW CREATE {kind.upper()} {_q(name)}").one()
                yield key, str(row[2])


def next_backup_number(images: Iterable[TableImage]) -> int:
    """The number of the next backup table after those of *images* (``..._<n>``)."""
    taken = [
        int(found.group(1))
        for image in images
        if image.backup and (found := re.search(r"_(\d+)\W*$", image.backup))
    ]
    return max(taken, default=0) + 1


def images_to_json(tables: Mapping[str, TableImage]) -> dict[str, dict[str, Any]]:
    """*tables*' images as the kept material holds them (see ``PreImages.to_json``)."""
    return {
        name: {
            "ddl": image.ddl,
            "triggers": list(image.triggers),
            "rows": image.data.rows,
            "checksum": image.data.checksum,
            "backup": image.backup,
            "columns": list(image.columns),
        }
        for name, image in tables.items()
    }


def images_from_json(tables: Mapping[str, Any]) -> dict[str, TableImage]:
    """The table images :func:`images_to_json` gave."""
    return {
        name: TableImage(
            ddl=t["ddl"],
            triggers=tuple(t["triggers"]),
            data=TableData(rows=t["rows"], checksum=t["checksum"]),
            backup=t["backup"],
            columns=tuple(t["columns"]),
        )
        for name, t in tables.items()
    }


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


def _key(touch: Touch) -> str:
    if touch.kind == "routine":
        return f"routine:?:{touch.name}"
    return f"{touch.kind}:{touch.name}"
