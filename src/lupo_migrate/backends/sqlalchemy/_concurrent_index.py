"""``CREATE INDEX CONCURRENTLY`` on PostgreSQL, run so that a failure leaves nothing behind.

The statement builds its index in three transactions of its own: it records the index (marked
invalid), builds it, then waits for every transaction that could still see the table without
it. When it fails part-way (its ``lock_timeout`` ran out while an application transaction
stayed open, a duplicate key for a unique index, a cancel), the invalid index stays: it takes
the name, so running the statement again fails ("relation already exists"), and it slows every
write to the table while it does no good. A rollback of the run would leave it too, since the
statement never finished.

So the index the failed statement left is dropped at once (``DROP INDEX CONCURRENTLY``, which
blocks neither reads nor writes). That drop waits for the same open transactions; when they
outlast its lock wait, the index is remembered, and dropped before the statement runs again
(:func:`drop_leftovers`) or when the run gives up (:meth:`SqlAlchemyTarget.leftovers`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from sqlalchemy.engine import Connection

from lupo_migrate.backends.sqlalchemy._driver import raw

__all__ = ["create_concurrently", "drop_leftovers"]


def _indexes(connection: Connection, table: str) -> set[int]:
    rows = raw(
        connection, "SELECT indexrelid::int8 FROM pg_index WHERE indrelid = to_regclass(%s)", table
    )
    return {int(row[0]) for row in rows}


def _invalid_since(connection: Connection, table: str, before: set[int]) -> list[str]:
    rows = raw(
        connection,
        "SELECT indexrelid::int8, indexrelid::regclass::text FROM pg_index"
        " WHERE indrelid = to_regclass(%s) AND NOT indisvalid",
        table,
    )
    return sorted(str(name) for oid, name in rows if int(oid) not in before)


def drop_leftovers(connection: Connection, leftovers: MutableMapping[str, set[str]]) -> None:
    """Drop the invalid indexes earlier failures left (see the module docstring); raises the
    database's error when one still cannot be dropped (its lock wait ran out again)."""
    for table in list(leftovers):
        names = leftovers[table]
        for name in sorted(names):
            raw(connection, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            names.discard(name)
        del leftovers[table]


def create_concurrently(
    connection: Connection,
    statement: str,
    table: str,
    run: Any,
    leftovers: MutableMapping[str, set[str]],
) -> None:
    """Run *statement*, a ``CREATE INDEX CONCURRENTLY`` on *table*, with *run* (sends one
    statement); when it fails, drop the invalid index it left, or remember it in *leftovers*
    (table to index names) when the drop cannot take its lock either. Reraises the failure."""
    drop_leftovers(connection, leftovers)
    before = _indexes(connection, table)
    try:
        run(statement)
    except Exception:
        try:
            left = _invalid_since(connection, table, before)
        except Exception:
            # The connection cannot tell (lost): the statement's own failure is raised, and
            # the run's rollback compares the schema with its pre-images anyway.
            left = []
        for name in left:
            try:
                raw(connection, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            except Exception:
                leftovers.setdefault(table, set()).add(name)
        raise
