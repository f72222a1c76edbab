"""Verifying and restoring after a rollback: a run's touched objects against their pre-images.

:func:`compare_images` reads the live fingerprint and the touched tables' rows and reports what
differs from the pre-images (a :class:`RestoreReport`); :func:`put_back` drops what the run
created and puts back what it changed, with foreign key checks off, from the ``CREATE`` texts
and backup tables taken before (:func:`refill` for one table).

Apart from :mod:`lupo_migrate.ext.sqlalchemy._preimage` (which re-exports
:class:`RestoreReport`) so that module stays readable in one sitting: ``PreImages.restore``
decides when to compare and put back; this module holds how.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from collections.abc import Set as AbstractSet

import attrs
import sqlalchemy as sa

from lupo_migrate._fingerprint import Difference, Fingerprint, TableData, diff, restrict
from lupo_migrate.errors import StorageError
from lupo_migrate.ext.sqlalchemy._snapshot import TableImage, _q
from lupo_migrate.ext.sqlalchemy.fingerprint import read_fingerprint, table_data

__all__ = ["RestoreReport", "compare_images", "put_back", "refill"]


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


def compare_images(
    conn: sa.Connection,
    before: Fingerprint,
    touched: AbstractSet[str],
    tables: Mapping[str, TableImage],
    only: Collection[str] | None,
    skip: Callable[[str], bool],
) -> RestoreReport:
    """The *touched* objects (or those of *only*) compared with their pre-images: *before*,
    the fingerprint before the run, and the *tables*' images; *skip* names the tables never
    compared (backup tables, lupo_migrate's own)."""
    now = read_fingerprint(conn, exclude=skip)
    keys = touched if only is None else touched & set(only)
    differences = diff(restrict(before, keys), restrict(now, keys))
    mine = [n for n in tables if f"table:{n}" in keys]
    after = table_data(conn, [n for n in mine if f"table:{n}" in now.objects])
    data = {
        name: (tables[name].data, after[name])
        for name in mine
        if name in after and after[name] != tables[name].data
    }
    return RestoreReport((), (), differences, data, len(keys))


def put_back(
    conn: sa.Connection,
    wrong: AbstractSet[str],
    before: Fingerprint,
    definitions: Mapping[str, str],
    *,
    sqlite: bool,
    refill_table: Callable[[sa.Connection, str], None],
) -> tuple[list[str], list[str]]:
    """Drop the objects of *wrong* the run created (absent from *before*) and put back those
    it changed: tables by *refill_table*, other objects from their *definitions*, with foreign key
    checks off meanwhile. Returns what was restored and what was dropped."""
    restored: list[str] = []
    dropped: list[str] = []
    checks = "PRAGMA foreign_keys = " if sqlite else "SET FOREIGN_KEY_CHECKS = "
    conn.exec_driver_sql(checks + "0")
    try:
        # What the run created goes first (triggers and views before tables); then
        # tables come back, then what is defined on them (routines, views, triggers).
        for key in sorted(wrong - before.objects.keys(), key=_order):
            _drop(conn, *key.split(":", 1))
            dropped.append(key)
        for key in sorted(wrong & before.objects.keys(), key=_order, reverse=True):
            kind, _, name = key.partition(":")
            if kind == "table":
                refill_table(conn, name)
            elif key in definitions:
                _drop(conn, kind, name)
                conn.exec_driver_sql(definitions[key])
            else:
                continue
            restored.append(key)
    finally:
        if not sqlite:  # SQLite's default is off; a pragma is per connection
            conn.exec_driver_sql(checks + "1")
    return restored, dropped


def refill(conn: sa.Connection, name: str, image: TableImage | None) -> None:
    """Recreate table *name* from its pre-image *image*, rows and triggers included."""
    if image is None:
        raise StorageError(f"no pre-image of table {name}: it cannot be restored")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(name)}")
    conn.exec_driver_sql(image.ddl)
    if image.backup is not None:
        cols = ", ".join(_q(c) for c in image.columns)
        conn.exec_driver_sql(f"INSERT INTO {_q(name)} ({cols}) SELECT {cols} FROM {image.backup}")
    for trigger in image.triggers:
        conn.exec_driver_sql(trigger)


def _order(key: str) -> tuple[int, str]:
    """Triggers, views, routines, then tables: the order to drop in (reversed: to create)."""
    return ({"trigger": 0, "view": 1, "routine": 2}.get(key.partition(":")[0], 3), key)


def _drop(conn: sa.Connection, kind: str, name: str) -> None:
    if kind == "routine":
        rtype, _, rname = name.partition(":")
        conn.exec_driver_sql(f"DROP {rtype.upper()} IF EXISTS {_q(rname)}")
    elif kind in ("table", "view", "trigger"):
        conn.exec_driver_sql(f"DROP {kind.upper()} IF EXISTS {_q(name)}")
