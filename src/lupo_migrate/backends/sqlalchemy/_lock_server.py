"""What the servers know of a run lock: its server-side name or key, and its connection.

Apart from :mod:`lupo_migrate.backends.sqlalchemy.lock` (taking, holding and naming the holder):
MySQL/MariaDB lock names are server-wide and at most 64 characters, PostgreSQL advisory locks
take a 64-bit key, and a lock's dedicated connection is looked at (is anything waiting to be
read on it?) rather than pinged.
"""

from __future__ import annotations

import hashlib
import select
from typing import Any, Final

import sqlalchemy as sa

__all__ = ["PG_HOLDER", "mysql_lock_name", "postgresql_lock_key", "quiet"]

#: The backend pid holding the advisory lock of key (:hi, :lo) in this database.
PG_HOLDER: Final = sa.text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid::bigint = :hi AND objid::bigint = :lo"
)


def mysql_lock_name(name: str) -> str:
    """The ``GET_LOCK`` name for *name*: itself, or ``'lupo:' + sha1`` hex if over 64 chars."""
    if len(name) <= 64:
        return name
    return "lupo:" + hashlib.sha1(name.encode("utf-8")).hexdigest()


def postgresql_lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key for *name* (the first 8 bytes of its sha1)."""
    digest = hashlib.sha1(b"lupo_migrate:" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def quiet(conn: sa.Connection) -> bool:
    """Whether nothing is waiting to be read on *conn*'s socket (False when unknown)."""
    try:
        raw: Any = conn.connection.dbapi_connection
        sock = getattr(raw, "_sock", None)  # PyMySQL
        fileno = sock.fileno() if sock is not None else raw.fileno()  # psycopg2
        readable, _, _ = select.select([fileno], [], [], 0)
    except Exception:  # no socket to look at (closed, another driver): ask the server
        return False
    return not readable
