"""SQLAlchemy backends: the storage and the run lock on the orchestration tables.

Importing this package imports SQLAlchemy (the rest of lupo_migrate never does)::

    import sqlalchemy as sa
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock, SqlAlchemyStorage

    engine = sa.create_engine("mysql+pymysql://user@db/orchestration")
    storage = SqlAlchemyStorage(engine)
    storage.ensure_schema()  # creates the 8 tables once; one query afterwards
    with SqlAlchemyLock(engine, "main").acquire("host-1:4242", timeout=30) as info:
        ...

- :class:`SqlAlchemyStorage`: the ``Storage`` protocol, plus the plan, accepted checksums,
  alerts, rollback decisions and the targets' phase.
- :class:`SqlAlchemyTarget` (and :func:`make_engine`, which gives SQLite transactional DDL and
  PyMySQL multi-statement packets): where a run's statements execute; pre-images, checks.
- :class:`SqlAlchemyFreeze` and :func:`guard`: the write freeze as a lease row, and a guard
  that makes a host application's engine refuse writes while it is active.
- :class:`ReadOnlyFreeze`: opt-in on MySQL/MariaDB, the lease row plus the server's
  ``read_only`` flag, thawed by a server event when the lease expires.
- :class:`SqlAlchemyLock`: the ``Lock`` protocol (``GET_LOCK``, PostgreSQL advisory lock or a
  SQLite lease, by dialect).
- :func:`make_tables`: the 8 orchestration tables as Core ``Table`` objects.
- :func:`read_fingerprint` and :func:`table_data`: a schema's fingerprint and tables' row
  checksums, read with a few bulk catalog queries.
"""

from __future__ import annotations

from lupo_migrate.backends.sqlalchemy._codec import Alert, RollbackDecision, SystemState
from lupo_migrate.backends.sqlalchemy._tables import (
    SCHEMA_VERSION,
    OrchestrationTables,
    make_tables,
)
from lupo_migrate.backends.sqlalchemy.fingerprint import read_fingerprint, table_data
from lupo_migrate.backends.sqlalchemy.freeze import SqlAlchemyFreeze, guard
from lupo_migrate.backends.sqlalchemy.lock import (
    SqlAlchemyLock,
    mysql_lock_name,
    postgresql_lock_key,
)
from lupo_migrate.backends.sqlalchemy.readonly import ReadOnlyFreeze
from lupo_migrate.backends.sqlalchemy.storage import SqlAlchemyStorage
from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget, attach_backups, make_engine

__all__ = [
    "SCHEMA_VERSION",
    "Alert",
    "OrchestrationTables",
    "ReadOnlyFreeze",
    "RollbackDecision",
    "SqlAlchemyFreeze",
    "SqlAlchemyLock",
    "SqlAlchemyStorage",
    "SqlAlchemyTarget",
    "SystemState",
    "attach_backups",
    "guard",
    "make_engine",
    "make_tables",
    "mysql_lock_name",
    "postgresql_lock_key",
    "read_fingerprint",
    "table_data",
]
