"""Backends: where runs persist, the run lock, the write freeze and clocks.

The in-memory implementations here are complete reference implementations of the protocols in
:mod:`lupo_migrate.core.ports`; SQLAlchemy ones live in :mod:`lupo_migrate.backends.sqlalchemy`.
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
