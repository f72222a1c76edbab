"""The five ephemeral tables as SQLAlchemy Core ``Table`` objects.

Apart from :mod:`lupo_migrate.backends.sqlalchemy.ephemeral` (the store that reads and writes them),
as the orchestration tables are apart from their storage: ``sessions``, ``cache`` and
``temp_data`` hold named values, ``job_queue`` the queue entries being worked on, ``locks`` the
leases; every row has an ``expires_at`` stamp (indexed: purges delete by it).
"""

from __future__ import annotations

from typing import Final

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._tables import _OPTIONS, _long_text

__all__ = ["EphemeralTables", "make_ephemeral_tables"]

#: The orchestration tables' options (InnoDB, utf8mb4, binary collation); no key here is a
#: counter, so SQLite's AUTOINCREMENT is left out.
_EPHEMERAL_OPTIONS: Final = {k: v for k, v in _OPTIONS.items() if k != "sqlite_autoincrement"}


def _expires() -> sa.Column[int]:
    return sa.Column("expires_at", sa.BigInteger(), nullable=False, index=True)


@attrs.frozen
class EphemeralTables:
    """The five ephemeral tables, built on one ``MetaData`` by :func:`make_ephemeral_tables`."""

    metadata: sa.MetaData
    sessions: sa.Table
    cache: sa.Table
    temp_data: sa.Table
    job_queue: sa.Table
    locks: sa.Table

    @property
    def all(self) -> tuple[sa.Table, ...]:
        """The five tables, in creation order."""
        return (self.sessions, self.cache, self.temp_data, self.job_queue, self.locks)


def make_ephemeral_tables(
    metadata: sa.MetaData | None = None, *, schema: str | None = None
) -> EphemeralTables:
    """Define the ephemeral tables on *metadata* (a new one by default) in *schema*."""
    md = sa.MetaData() if metadata is None else metadata

    def values(name: str) -> sa.Table:
        return sa.Table(
            name,
            md,
            sa.Column("name", sa.String(191), primary_key=True),
            sa.Column("value", _long_text(), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            _expires(),
            schema=schema,
            **_EPHEMERAL_OPTIONS,
        )

    job_queue = sa.Table(
        "job_queue",
        md,
        sa.Column("entry_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("target", sa.String(191), nullable=False, index=True),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=False),
        _expires(),
        schema=schema,
        **_EPHEMERAL_OPTIONS,
    )
    locks = sa.Table(
        "locks",
        md,
        sa.Column("name", sa.String(191), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        _expires(),
        schema=schema,
        **_EPHEMERAL_OPTIONS,
    )
    return EphemeralTables(
        md, values("sessions"), values("cache"), values("temp_data"), job_queue, locks
    )
