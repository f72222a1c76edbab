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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # Loaded on first use (PEP 562): the nothing-to-do fast path imports a module of this
    # package (sqlite_files) and needs none of the in-memory backends.
    if name in __all__:
        value = getattr(importlib.import_module("lupo_migrate.backends.memory"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lupo_migrate.backends' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
