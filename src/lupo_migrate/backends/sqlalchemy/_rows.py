"""Rows by key: what a run changed in a table, what changed again since, and putting back.

A table the run writes rows of is copied before the run (its *copy*, ``lupo_bk_<run>_<n>``).
Each row is known by its *key*: the primary key, else a unique key on NOT NULL columns
(:func:`row_key`); a table with neither is known by its whole rows.

*Frozen* rollbacks (a run that fails, or is recovered; writes were frozen all along): every
row that differs from the copy is the run's, and is put back (:func:`revert_frozen`).

A *completed* run's rollback (writes thawed since): when the run completes, the rows it
inserted, changed or deleted are *sealed* (:func:`seal`): their keys, with the row as the run
left it, in the table ``lupo_bk_<run>_<n>_a`` (column ``lupo_op``: ``i`` inserted, ``u``
changed, ``d`` deleted, ``k`` kept as it is now: see below). Before the rollback touches
anything, each sealed row is compared with the row now (:func:`conflicts`): one the
application changed or deleted since (or re-inserted, for a row the run deleted) is a
*conflict*, listed, and nothing is done unless the operator says which side wins; a conflict
that keeps the application's row is marked ``k``. Then, once the run's schema changes are
undone, the sealed rows are put back from the copy (:func:`revert_sealed`), and every other
row, the application's, is left as it is.

All statements are built here from names and run on the connection given; the dialect
families differ in the null-safe equality only (``<=>``, ``IS``, ``IS NOT DISTINCT FROM``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import sqlalchemy as sa

from lupo_migrate.core.fingerprint import row_key
from lupo_migrate.core.undo_plan import RowConflict

__all__ = [
    "RowSet",
    "conflicts",
    "convert",
    "index_key",
    "keep_conflicting",
    "revert_frozen",
    "revert_sealed",
    "row_key",
    "seal",
    "sealed_counts",
    "unreverted",
]

#: The column of a sealed table that says what the run did to the row.
OP: Final = "lupo_op"


@attrs.frozen
class RowSet:
    """One table's rows as the rollback sees them.

    Attributes:
        table: the table as it is named now (quoted, qualified as needed).
        copy: the copy taken before the run (quoted, qualified).
        columns: the columns to compare and put back: (name in the copy, name now).
        key: the key columns (names in both), () for a table without one.
        sealed: the sealed table of a completed run (quoted, qualified), or None.
    """

    table: str
    copy: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    sealed: str | None = None


def _overriding(conn: sa.Connection) -> str:
    """PostgreSQL: rows put back keep their values in identity columns too."""
    return " OVERRIDING SYSTEM VALUE" if conn.dialect.name == "postgresql" else ""


def _eq(conn: sa.Connection) -> str:
    name = conn.dialect.name
    return "IS NOT DISTINCT FROM" if name == "postgresql" else "IS" if name == "sqlite" else "<=>"


def _q(conn: sa.Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote_identifier(name))


def _same_key(conn: sa.Connection, key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{_q(conn, k)} = {right}.{_q(conn, k)}" for k in key)


def _same_values(
    conn: sa.Connection, pairs: Sequence[tuple[str, str]], left: str, right: str
) -> str:
    eq = _eq(conn)
    if not pairs:
        return "1 = 1"
    # PostgreSQL compares no integer with a varchar (a run may have changed a column's
    # type): values are compared as text there. MySQL compares strings by their collation,
    # which takes 'a' for 'A' (and 'a ' for 'a'): a change of case is a change, so values
    # are compared byte for byte.
    before, after = {"postgresql": ("", "::text"), "mysql": ("BINARY ", "")}.get(
        conn.dialect.name, ("", "")
    )
    return " AND ".join(
        f"{before}{left}.{_q(conn, a)}{after} {eq} {before}{right}.{_q(conn, b)}{after}"
        for a, b in pairs
    )


def index_key(conn: sa.Connection, table: str, key: Sequence[str]) -> None:
    """Index *table* (qualified, quoted: a backup table) on *key*: the rollback joins it
    with the table it was taken from by key, row by row (a million rows unindexed is a
    trillion comparisons on SQLite)."""
    if not key:
        return
    columns = ", ".join(_q(conn, k) for k in key)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"CREATE INDEX ON {table} ({columns})")
    elif conn.dialect.name == "sqlite":  # the index is named in the table's schema
        schema, dot, bare = table.rpartition(".")
        name = _q(conn, bare.strip('`"') + "_key")
        conn.exec_driver_sql(f"CREATE INDEX {schema}{dot}{name} ON {bare} ({columns})")
    else:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD INDEX ({columns})")


def convert(conn: sa.Connection, rows: RowSet, converted: str) -> None:
    """Make table *converted* (qualified, quoted; MySQL/MariaDB) the copy's rows as the
    table's definition now holds them: what the run's definition changes alone made of them
    (see :func:`seal`)."""
    now = ", ".join(_q(conn, b) for _, b in rows.columns)
    was = ", ".join(f"c.{_q(conn, a)}" for a, _ in rows.columns)
    # In key order, as the alteration read them: where a new unique key keeps one of two
    # rows (ALTER IGNORE), the same one is kept here.
    order = ", ".join(f"c.{_q(conn, k)}" for k in rows.key) or "1"
    conn.exec_driver_sql(f"CREATE TABLE {converted} LIKE {rows.table}")
    conn.exec_driver_sql(
        f"INSERT IGNORE INTO {converted} ({now}) SELECT {was} FROM {rows.copy} AS c"
        f" ORDER BY {order}"
    )


def seal(
    conn: sa.Connection,
    rows: RowSet,
    sealed: str,
    now_columns: Sequence[str],
    converted: str | None = None,
) -> None:
    """Keep, in table *sealed*, the rows of *rows*' table the run inserted, changed or
    deleted (compared with the copy), as the run left them; *now_columns* are the table's
    columns now (the sealed table has the same, plus ``lupo_op``).

    *converted*: for a table the run only altered (:func:`convert`): a row is the run's
    only where the alteration explains it (it is as converted; a row it removed, as ``ALTER
    IGNORE`` does, is missing from *converted* too). A row inserted, changed or deleted
    otherwise is the application's, written while the table was altered online, and is
    left out: a rollback leaves it as the application left it."""
    op = _q(conn, OP)
    cols = ", ".join(f"n.{_q(conn, c)}" for c in now_columns)
    if not rows.key:  # whole rows: the table as the run left it
        conn.exec_driver_sql(
            f"CREATE TABLE {sealed} AS SELECT 'a' AS {op}, {cols} FROM {rows.table} AS n"
        )
        return
    key = _same_key(conn, rows.key, "c", "n")
    same = _same_values(conn, rows.columns, "c", "n")
    gone = ", ".join(
        f"c.{_q(conn, c)}" if c in rows.key else f"NULL AS {_q(conn, c)}" for c in now_columns
    )
    changed, inserted, deleted = "", "", ""
    if converted is not None:
        # The pre-image's columns only: one the run added (a default of CURRENT_TIMESTAMP,
        # say) tells nothing of who wrote the row.
        as_converted = _same_values(conn, [(b, b) for _, b in rows.columns], "v", "n")
        changed = (
            f" AND EXISTS (SELECT 1 FROM {converted} AS v"
            f" WHERE {_same_key(conn, rows.key, 'v', 'n')} AND {as_converted})"
        )
        inserted = " AND 1 = 0"
        deleted = (
            f" AND NOT EXISTS (SELECT 1 FROM {converted} AS v"
            f" WHERE {_same_key(conn, rows.key, 'v', 'c')})"
        )
    conn.exec_driver_sql(
        f"CREATE TABLE {sealed} AS"
        f" SELECT 'u' AS {op}, {cols} FROM {rows.table} AS n JOIN {rows.copy} AS c ON {key}"
        f" WHERE NOT ({same}){changed}"
        f" UNION ALL SELECT 'i', {cols} FROM {rows.table} AS n"
        f" WHERE NOT EXISTS (SELECT 1 FROM {rows.copy} AS c WHERE {key}){inserted}"
        f" UNION ALL SELECT 'd', {gone} FROM {rows.copy} AS c"
        f" WHERE NOT EXISTS (SELECT 1 FROM {rows.table} AS n WHERE {key}){deleted}"
    )
    index_key(conn, sealed, rows.key)


def sealed_counts(conn: sa.Connection, sealed: str) -> dict[str, int]:
    """How many sealed rows of each kind (``i``, ``u``, ``d``, ``k``, ``a``)."""
    op = _q(conn, OP)
    return {
        str(kind): int(count)
        for kind, count in conn.exec_driver_sql(
            f"SELECT {op}, COUNT(*) FROM {sealed} GROUP BY {op}"
        )
    }


def conflicts(
    conn: sa.Connection, rows: RowSet, name: str, sealed_columns: Sequence[str], limit: int
) -> list[RowConflict]:
    """The sealed rows of *rows* (a keyed table) that changed since the run: changed or
    deleted by the application (the run inserted or changed them), or there again (the run
    deleted them); at most *limit*, with their rows before the run, after it and now."""
    assert rows.sealed is not None
    assert rows.key
    op = _q(conn, OP)
    key = _same_key(conn, rows.key, "s", "n")
    pairs = [(c, c) for c in sealed_columns]
    same = _same_values(conn, pairs, "s", "n")
    first = _q(conn, rows.key[0])
    scols = ", ".join(f"s.{_q(conn, c)}" for c in sealed_columns)
    ncols = ", ".join(f"n.{_q(conn, c)}" for c in sealed_columns)
    found = conn.exec_driver_sql(
        f"SELECT s.{op}, {scols}, n.{first} IS NULL, {ncols} FROM {rows.sealed} AS s"
        f" LEFT JOIN {rows.table} AS n ON {key}"
        f" WHERE (s.{op} IN ('i', 'u') AND (n.{first} IS NULL OR NOT ({same})))"
        f" OR (s.{op} = 'd' AND n.{first} IS NOT NULL)"
        f" ORDER BY {', '.join(f's.{_q(conn, k)}' for k in rows.key)}"
        f" LIMIT {int(limit)}"
    ).all()
    width = len(sealed_columns)
    out: list[RowConflict] = []
    for row in found:
        kind = row[0]
        after = dict(zip(sealed_columns, row[1 : 1 + width], strict=True))
        missing = bool(row[1 + width])
        now = None if missing else dict(zip(sealed_columns, row[2 + width :], strict=True))
        keys = tuple(str(after[k]) for k in rows.key)
        before = None if kind == "i" else _copy_row(conn, rows, after)
        out.append(
            RowConflict(
                table=name,
                key=keys,
                before=before,
                after=None if kind == "d" else after,
                now=now,
            )
        )
    return out


def _copy_row(conn: sa.Connection, rows: RowSet, after: Mapping[str, Any]) -> dict[str, Any] | None:
    mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    where = " AND ".join(f"{_q(conn, k)} = {mark}" for k in rows.key)
    cols = ", ".join(_q(conn, a) for a, _ in rows.columns)
    found = conn.exec_driver_sql(
        f"SELECT {cols} FROM {rows.copy} WHERE {where}", tuple(after[k] for k in rows.key)
    ).first()
    if found is None:
        return None
    return dict(zip([a for a, _ in rows.columns], found, strict=True))


def keep_conflicting(conn: sa.Connection, rows: RowSet, sealed_columns: Sequence[str]) -> int:
    """Mark ``k`` every sealed row that changed since the run (see :func:`conflicts`): the
    rollback leaves them as they are now. Returns how many were marked."""
    assert rows.sealed is not None
    if not rows.key:
        return 0
    op = _q(conn, OP)
    s = rows.sealed
    key = " AND ".join(f"{s}.{_q(conn, k)} = n.{_q(conn, k)}" for k in rows.key)
    same = _same_values(conn, [(c, c) for c in sealed_columns], s, "n")
    return max(
        int(
            conn.exec_driver_sql(
                f"UPDATE {s} SET {op} = 'k' WHERE ({op} IN ('i', 'u') AND NOT EXISTS"
                f" (SELECT 1 FROM {rows.table} AS n WHERE {key} AND {same or '1 = 1'}))"
                f" OR ({op} = 'd' AND EXISTS (SELECT 1 FROM {rows.table} AS n WHERE {key}))"
            ).rowcount
        ),
        0,
    )


def revert_sealed(conn: sa.Connection, rows: RowSet) -> None:
    """Put back the sealed rows (but those marked ``k``) from the copy, by key: the run's
    inserts deleted, its changes and deletes undone; every other row left as it is."""
    assert rows.sealed is not None
    op = _q(conn, OP)
    if not rows.key:  # whole rows: the table goes back to the copy (nobody wrote since)
        _reload(conn, rows)
        return
    key = _same_key(conn, rows.key, "s", rows.table)
    conn.exec_driver_sql(
        f"DELETE FROM {rows.table} WHERE EXISTS (SELECT 1 FROM {rows.sealed} AS s"
        f" WHERE {key} AND s.{op} IN ('i', 'u', 'd'))"
    )
    back = _same_key(conn, rows.key, "s", "c")
    now = ", ".join(_q(conn, b) for _, b in rows.columns)
    was = ", ".join(f"c.{_q(conn, a)}" for a, _ in rows.columns)
    conn.exec_driver_sql(
        f"INSERT INTO {rows.table} ({now}){_overriding(conn)} SELECT {was} FROM {rows.copy} AS c"
        f" WHERE EXISTS (SELECT 1 FROM {rows.sealed} AS s WHERE {back} AND s.{op} IN ('u', 'd'))"
    )


def drop_inserted(conn: sa.Connection, rows: RowSet) -> int:
    """Delete the rows the run inserted (those the rollback deletes anyway), by key: of a
    completed run, those its seal marks inserted; of a run that failed (writes frozen),
    every key the copy lacks. Done before a definition goes back, which those rows need not
    fit (a NULL in a column that was NOT NULL). Returns how many were deleted."""
    if not rows.key:
        return 0
    if rows.sealed is not None:
        key = _same_key(conn, rows.key, "s", rows.table)
        found = f"SELECT 1 FROM {rows.sealed} AS s WHERE {key} AND s.{_q(conn, OP)} = 'i'"
        return max(
            conn.exec_driver_sql(f"DELETE FROM {rows.table} WHERE EXISTS ({found})").rowcount, 0
        )
    key = _same_key(conn, rows.key, "c", rows.table)
    found = f"SELECT 1 FROM {rows.copy} AS c WHERE {key}"
    return max(
        conn.exec_driver_sql(f"DELETE FROM {rows.table} WHERE NOT EXISTS ({found})").rowcount, 0
    )


def revert_frozen(conn: sa.Connection, rows: RowSet) -> int:
    """Make the table's rows those of the copy again, by key: rows that differ or are new
    deleted, missing ones put back from the copy (writes were frozen: every difference is
    the run's). Returns how many rows were deleted and put back in all."""
    if not rows.key:
        return _reload(conn, rows)
    t = rows.table
    key = _same_key(conn, rows.key, "c", t)
    same = _same_values(conn, rows.columns, "c", t)
    deleted = conn.exec_driver_sql(
        f"DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {rows.copy} AS c WHERE {key} AND {same})"
    ).rowcount
    back = _same_key(conn, rows.key, "c", "n")
    now = ", ".join(_q(conn, b) for _, b in rows.columns)
    was = ", ".join(f"c.{_q(conn, a)}" for a, _ in rows.columns)
    added = conn.exec_driver_sql(
        f"INSERT INTO {t} ({now}){_overriding(conn)} SELECT {was} FROM {rows.copy} AS c"
        f" WHERE NOT EXISTS (SELECT 1 FROM {t} AS n WHERE {back})"
    ).rowcount
    return max(deleted, 0) + max(added, 0)


def _reload(conn: sa.Connection, rows: RowSet) -> int:
    now = ", ".join(_q(conn, b) for _, b in rows.columns)
    was = ", ".join(_q(conn, a) for a, _ in rows.columns)
    deleted = conn.exec_driver_sql(f"DELETE FROM {rows.table}").rowcount
    added = conn.exec_driver_sql(
        f"INSERT INTO {rows.table} ({now}){_overriding(conn)} SELECT {was} FROM {rows.copy}"
    ).rowcount
    return max(deleted, 0) + max(added, 0)


def unreverted(conn: sa.Connection, rows: RowSet) -> int:
    """How many sealed rows (not marked ``k``) are not as they were before the run."""
    assert rows.sealed is not None
    assert rows.key
    op = _q(conn, OP)
    key_sc = _same_key(conn, rows.key, "s", "c")
    key_cn = _same_key(conn, rows.key, "c", "n")
    key_sn = _same_key(conn, rows.key, "s", "n")
    same = _same_values(conn, rows.columns, "c", "n")
    back = conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM {rows.sealed} AS s JOIN {rows.copy} AS c ON {key_sc}"
        f" WHERE s.{op} IN ('u', 'd') AND NOT EXISTS"
        f" (SELECT 1 FROM {rows.table} AS n WHERE {key_cn} AND {same})"
    ).scalar_one()
    gone = conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM {rows.sealed} AS s WHERE s.{op} = 'i' AND EXISTS"
        f" (SELECT 1 FROM {rows.table} AS n WHERE {key_sn})"
    ).scalar_one()
    return int(back) + int(gone)
