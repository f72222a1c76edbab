"""PostgreSQL statements that cannot run inside a transaction block (functional core).

``CREATE INDEX CONCURRENTLY`` and its ``DROP`` / ``REINDEX`` forms, ``VACUUM``, ``CREATE`` /
``DROP DATABASE`` and ``TABLESPACE``, ``ALTER SYSTEM``, and ``ALTER TYPE ... ADD VALUE``
(refused in a transaction before PostgreSQL 12, and since then a value added in a
transaction cannot be used before it commits) fail with ``cannot run inside a transaction
block`` in the one transaction lupo_migrate gives a PostgreSQL step. A step holding one, or
whose file says ``-- lupo:no-transaction`` on a line of its own, runs *apart*: each statement
commits on its own, announced in the journal before it runs and marked done after, as on
MySQL, whose DDL commits by itself (Alembic's ``autocommit_block``, Flyway's detection).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MARKER", "concurrent_index_table", "outside_transaction", "runs_apart"]

#: The line that asks for a step to run apart whatever its statements.
MARKER: Final = re.compile(r"^--[ \t]*lupo:no-transaction[ \t\r]*$", re.IGNORECASE | re.MULTILINE)

_COMMENTS: Final = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)+", re.DOTALL)
_APART: Final = re.compile(
    r"""(?:
        create\s+(?:unique\s+)?index\s+concurrently\b
      | drop\s+index\s+concurrently\b
      | reindex\b[^;]*\bconcurrently\b
      | vacuum\b
      | (?:create|drop)\s+(?:database|tablespace)\b
      | alter\s+system\b
      | alter\s+type\b[^;]*\badd\s+value\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def outside_transaction(sql: str, family: str) -> bool:
    """Whether *sql* cannot run in a transaction block on *family* (PostgreSQL only)."""
    if family != "postgresql":
        return False
    start = _COMMENTS.match(sql)
    return _APART.match(sql, start.end() if start else 0) is not None


def runs_apart(text: str, statements: list[str], family: str) -> bool:
    """Whether a step whose file reads *text* and lists *statements* runs apart (see the
    module docstring): on PostgreSQL, a statement of it cannot run in a transaction, or the
    file asks for it with ``-- lupo:no-transaction``."""
    if family != "postgresql":
        return False
    return MARKER.search(text) is not None or any(
        outside_transaction(s, family) for s in statements
    )


_NAME: Final = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_CONCURRENT_INDEX: Final = re.compile(
    rf"""create\s+(?:unique\s+)?index\s+concurrently\s+
        (?:if\s+not\s+exists\s+)?(?:{_NAME}\s+)?
        on\s+(?:only\s+)?(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)""",
    re.IGNORECASE | re.VERBOSE,
)


def concurrent_index_table(sql: str) -> str | None:
    """The table (as written, schema-qualified or quoted as it is) that *sql*, a PostgreSQL
    ``CREATE [UNIQUE] INDEX CONCURRENTLY``, builds an index on; None for any other statement.

    Such a statement that fails part-way (a lock wait that ran out, a duplicate key) leaves
    its index behind, marked invalid: the caller drops it, so that the statement can run
    again and a rollback leaves nothing.

    >>> concurrent_index_table('CREATE INDEX CONCURRENTLY i ON ONLY app."Big" (v)')
    'app."Big"'
    >>> concurrent_index_table("CREATE INDEX i ON t (v)") is None
    True
    """
    start = _COMMENTS.match(sql)
    found = _CONCURRENT_INDEX.match(sql, start.end() if start else 0)
    return None if found is None else found.group("table")
