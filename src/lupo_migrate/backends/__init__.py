"""Backends: where runs persist, the run lock, the write freeze and clocks.

The in-memory implementations (:mod:`lupo_migrate.backends.memory`, re-exported here) are
complete reference implementations of the protocols in :mod:`lupo_migrate.core.ports`; the
SQLAlchemy ones, and the target that runs statements on MySQL/MariaDB, PostgreSQL and SQLite,
live in :mod:`lupo_migrate.backends.sqlalchemy`. :mod:`~lupo_migrate.backends.clocks` holds the
clocks every backend uses, :mod:`~lupo_migrate.backends.liveness` whether a process that
recorded itself has gone.

May import: :mod:`lupo_migrate.observe`, :mod:`lupo_migrate.handlers`, :mod:`lupo_migrate.sql`,
:mod:`lupo_migrate.files` and :mod:`lupo_migrate.core`; never :mod:`lupo_migrate.run`: the
orchestrator knows the backends only through the protocols.
"""

from __future__ import annotations

from lupo_migrate.backends.memory import (
    FreezeOverride,
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
    SystemClock,
)

__all__ = [
    "FreezeOverride",
    "InMemoryFreeze",
    "InMemoryLock",
    "InMemoryLockTable",
    "InMemoryStorage",
    "ManualClock",
    "SystemClock",
]
