"""Journal row ids taken ahead, in blocks, on a connection of the storage's own.

A journal row written on a step's connection must not change what the step's statements read
of their session. An ``INSERT`` that *generates* its key does: MySQL's ``LAST_INSERT_ID()``
becomes the journal row's id, PostgreSQL's ``lastval()`` the value its sequence handed out
(``INSERT ...; SET @x = LAST_INSERT_ID()`` would store lupo_migrate's id, not the row's). An
``INSERT`` that names its key changes neither. So the storage names the key of every journal
row it writes on MySQL/MariaDB and PostgreSQL, and takes the keys from the table's own
generator beforehand, on a connection that is not the step's:

- PostgreSQL: ``nextval()`` of the key's sequence, once per id of the block;
- MySQL/MariaDB: a block of placeholder rows inserted and rolled back at once. InnoDB never
  hands an auto-increment value out twice, even when the insert that took it rolls back, so
  the values are the storage's alone; the placeholders are never committed, never seen.

Every journal row of the storage takes its id here, written on the step's connection or not,
so a run's rows keep their order by id. A block starts at 32 ids and doubles up to 1,024: a
run of 1,000 statements takes six blocks; ids a process does not use are skipped (the keys are
64-bit). A server that lost its auto-increment counter (MySQL before 8.0 recomputes it at
restart) could hand an unused reserved id out again: the insert then fails on the duplicate
key, a ``StorageError``, never a row overwritten.

SQLite keeps its generated keys: its storage is a file of its own (``app.lupo.db``), never
written on the step's connection.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._tables import describe, reason
from lupo_migrate.core.errors import StorageError

__all__ = ["IdBlocks"]

_FIRST: Final = 32
_LARGEST: Final = 1024


class IdBlocks:
    """Ids of one table's ``id`` key, reserved ahead (see the module docstring)."""

    def __init__(self, engine: sa.Engine, table: sa.Table) -> None:
        self._engine = engine
        self._table = table
        dialect = engine.dialect.name
        self.named = dialect in ("mysql", "postgresql")
        self._ids: deque[int] = deque()
        self._size = _FIRST
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """The next id to write; None where the database generates the key (SQLite)."""
        if not self.named:
            return None
        with self._lock:
            if not self._ids:
                self._ids.extend(self._reserve(self._size))
                self._size = min(self._size * 2, _LARGEST)
            return self._ids.popleft()

    def take_many(self, count: int) -> list[int] | None:
        """The next *count* ids to write, in order, reserved in one block if need be (the
        rows of a long step written together); None where the database generates keys."""
        if not self.named:
            return None
        with self._lock:
            missing = count - len(self._ids)
            if missing > 0:
                self._ids.extend(self._reserve(max(missing, self._size)))
                self._size = min(self._size * 2, _LARGEST)
            return [self._ids.popleft() for _ in range(count)]

    def _reserve(self, count: int) -> list[int]:
        table = self._table
        try:
            with self._engine.connect() as conn:
                if self._engine.dialect.name == "postgresql":
                    name = self._engine.dialect.identifier_preparer.format_table(table)
                    query = sa.text(
                        "SELECT nextval(pg_get_serial_sequence(:name, 'id'))"
                        " FROM generate_series(1, :count)"
                    )
                    ids = conn.execute(query, {"name": name, "count": count}).scalars().all()
                    conn.commit()
                else:
                    token = f"lupo:ids:{uuid.uuid4().hex}"
                    placeholder = {
                        "run_id": token,
                        "step_id": "",
                        "stmt_index": 0,
                        "statement": "",
                        "started_at": 0,
                    }
                    conn.execute(table.insert(), [placeholder] * count)
                    mine = sa.select(table.c.id).where(table.c.run_id == token)
                    ids = conn.execute(mine).scalars().all()
                    conn.rollback()  # the values stay taken; the rows never were
        except sa.exc.DBAPIError as exc:
            raise StorageError(
                f"reserving journal ids failed on {describe(self._engine)}: {reason(exc)}."
                " Check the database is reachable and holds the orchestration tables."
            ) from exc
        if len(ids) != count:  # pragma: no cover - the database lost rows it just inserted
            raise StorageError(f"reserving {count} journal ids returned {len(ids)}")
        return sorted(int(i) for i in ids)
