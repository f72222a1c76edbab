"""Complete in-memory implementations of the backend protocols, and two clocks.

These are reference implementations, not mocks: they give every guarantee the protocols in
:mod:`lupo_migrate.core.ports` document (and pass :mod:`lupo_migrate.testing`), are safe to share
between threads, and are what tests and dry runs use. Nothing survives the process.

- :class:`InMemoryStorage`: runs (compare-and-set on ``Run.version``), the applied-step ledger,
  findings, the statement journal, the rollback log
  (a :class:`~lupo_migrate.core.ports.DecisionLog`) and the run queue
  (a :class:`~lupo_migrate.core.ports.RunQueue`).
- :class:`InMemoryLock`: a non-reentrant run lock. Handles built on one
  :class:`InMemoryLockTable` share their state, as two processes share a database lock.
- :class:`InMemoryFreeze`: the write gate, expiring by the injected clock.
- :class:`InMemoryEphemeral`: the ephemeral schema (expiring values, leases, jobs, purge).
- :class:`SystemClock` (real UTC time) and :class:`ManualClock` (moved by hand, for tests).
"""

from __future__ import annotations

from lupo_migrate.backends.clocks import ManualClock, SystemClock
from lupo_migrate.backends.memory._ephemeral import InMemoryEphemeral
from lupo_migrate.backends.memory._locks import (
    FreezeOverride,
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
)
from lupo_migrate.backends.memory._storage import InMemoryStorage
from lupo_migrate.core.tables import EPHEMERAL_TABLES

__all__ = [
    "EPHEMERAL_TABLES",
    "FreezeOverride",
    "InMemoryEphemeral",
    "InMemoryFreeze",
    "InMemoryLock",
    "InMemoryLockTable",
    "InMemoryStorage",
    "ManualClock",
    "SystemClock",
]
