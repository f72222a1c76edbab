"""Every backend implementation against the public contract of lupo_migrate.testing.

Add an implementation by adding a ``pytest.param`` to the factory lists below.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lupo_migrate.backends import (
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
)
from lupo_migrate.testing import check_freeze, check_lock, check_storage
from lupo_migrate.typing import Freeze, Lock, Storage

MakeStorage = Callable[[], Storage]
MakeLockPair = Callable[[ManualClock], tuple[Lock, Lock]]
MakeFreeze = Callable[[ManualClock], Freeze]


def _memory_lock_pair(clock: ManualClock) -> tuple[Lock, Lock]:
    table = InMemoryLockTable()
    return InMemoryLock("main", clock, table=table), InMemoryLock("main", clock, table=table)


def _memory_lock_one_handle(clock: ManualClock) -> tuple[Lock, Lock]:
    lock = InMemoryLock("main", clock)
    return lock, lock


STORAGES = [pytest.param(InMemoryStorage, id="memory")]
LOCK_PAIRS = [
    pytest.param(_memory_lock_pair, id="memory-two-handles"),
    pytest.param(_memory_lock_one_handle, id="memory-one-handle"),
]
FREEZES = [pytest.param(InMemoryFreeze, id="memory")]


@pytest.fixture(name="make_storage", params=STORAGES)
def _make_storage(request: pytest.FixtureRequest) -> MakeStorage:
    factory: MakeStorage = request.param
    return factory


@pytest.fixture(name="make_lock_pair", params=LOCK_PAIRS)
def _make_lock_pair(request: pytest.FixtureRequest) -> MakeLockPair:
    factory: MakeLockPair = request.param
    return factory


@pytest.fixture(name="make_freeze", params=FREEZES)
def _make_freeze(request: pytest.FixtureRequest) -> MakeFreeze:
    factory: MakeFreeze = request.param
    return factory


class TestContract:
    def test_storage(self, make_storage: MakeStorage) -> None:
        """The storage gives every guarantee of the Storage protocol."""
        check_storage(make_storage)

    def test_storage_is_a_storage(self, make_storage: MakeStorage) -> None:
        """The storage satisfies the runtime-checkable protocol."""
        assert isinstance(make_storage(), Storage)

    def test_lock(self, make_lock_pair: MakeLockPair) -> None:
        """The lock gives every guarantee of the Lock protocol."""
        check_lock(make_lock_pair, wait=0.1)

    def test_lock_is_a_lock(self, make_lock_pair: MakeLockPair) -> None:
        """Both handles satisfy the runtime-checkable protocol."""
        assert all(isinstance(h, Lock) for h in make_lock_pair(ManualClock()))

    def test_freeze(self, make_freeze: MakeFreeze) -> None:
        """The write gate gives every guarantee of the Freeze protocol."""
        check_freeze(make_freeze)

    def test_freeze_is_a_freeze(self, make_freeze: MakeFreeze) -> None:
        """The write gate satisfies the runtime-checkable protocol."""
        assert isinstance(make_freeze(ManualClock()), Freeze)
