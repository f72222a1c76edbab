"""Every backend implementation against the public contract of lupo_migrate.testing.

Add an implementation by adding a ``pytest.param`` to the factory lists below. A param is
either a factory (in-memory backends) or an :class:`OnDatabase`, whose ``build`` gets a
:class:`Databases` helper making a new empty database (SQLite, MariaDB or PostgreSQL, per
``kind``) for each backend the contract asks for; the databases are dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from databases import fresh_database
from lupo_migrate.backends import (
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
)
from lupo_migrate.backends.sqlalchemy import SqlAlchemyLock, SqlAlchemyStorage
from lupo_migrate.testing import check_freeze, check_lock, check_storage
from lupo_migrate.typing import Freeze, Lock, Storage

MakeStorage = Callable[[], Storage]
MakeLockPair = Callable[[ManualClock], tuple[Lock, Lock]]
MakeFreeze = Callable[[ManualClock], Freeze]


@attrs.define
class Databases:
    """Makes new empty databases of one kind, and engines on them; cleans up on close."""

    kind: str
    tmp_path: Path
    stack: contextlib.ExitStack = attrs.field(factory=contextlib.ExitStack)

    def url(self) -> str:
        """The URL of a new empty database."""
        return self.stack.enter_context(fresh_database(self.kind, self.tmp_path))

    def engine(self, url: str) -> sa.Engine:
        """An engine on *url*, disposed before the databases are dropped."""
        engine = sa.create_engine(url)
        self.stack.callback(engine.dispose)
        return engine

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


@attrs.frozen
class OnDatabase:
    """A param whose backend lives in a fresh database of *kind*."""

    kind: str
    build: Callable[[Databases], Callable[..., Any]]


def _db_params(prefix: str, build: Callable[[Databases], Callable[..., Any]]) -> list[Any]:
    marks = {"mariadb": pytest.mark.mariadb, "postgresql": pytest.mark.postgresql}
    return [
        pytest.param(
            OnDatabase(kind, build),
            id=f"{prefix}-{kind}",
            marks=[marks[kind]] if kind in marks else [],
        )
        for kind in ("sqlite", "mariadb", "postgresql")
    ]


def _sqlalchemy_storage(dbs: Databases) -> MakeStorage:
    def make() -> Storage:
        storage = SqlAlchemyStorage(dbs.engine(dbs.url()), clock=ManualClock())
        storage.ensure_schema()
        return storage

    return make


def _sqlalchemy_lock_pair(dbs: Databases) -> MakeLockPair:
    def make(clock: ManualClock) -> tuple[Lock, Lock]:
        url = dbs.url()  # one database, two engines: two processes
        return (
            SqlAlchemyLock(dbs.engine(url), "main", clock=clock),
            SqlAlchemyLock(dbs.engine(url), "main", clock=clock),
        )

    return make


def _sqlalchemy_lock_one_handle(dbs: Databases) -> MakeLockPair:
    def make(clock: ManualClock) -> tuple[Lock, Lock]:
        lock = SqlAlchemyLock(dbs.engine(dbs.url()), "main", clock=clock)
        return lock, lock

    return make


@contextlib.contextmanager
def _factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    param = request.param
    if not isinstance(param, OnDatabase):
        yield param
        return
    with Databases(param.kind, tmp_path) as dbs:
        yield param.build(dbs)


def _memory_lock_pair(clock: ManualClock) -> tuple[Lock, Lock]:
    table = InMemoryLockTable()
    return InMemoryLock("main", clock, table=table), InMemoryLock("main", clock, table=table)


def _memory_lock_one_handle(clock: ManualClock) -> tuple[Lock, Lock]:
    lock = InMemoryLock("main", clock)
    return lock, lock


STORAGES = [
    pytest.param(InMemoryStorage, id="memory"),
    *_db_params("sqlalchemy", _sqlalchemy_storage),
]
LOCK_PAIRS = [
    pytest.param(_memory_lock_pair, id="memory-two-handles"),
    pytest.param(_memory_lock_one_handle, id="memory-one-handle"),
    *_db_params("sqlalchemy-two-engines", _sqlalchemy_lock_pair),
    *_db_params("sqlalchemy-one-handle", _sqlalchemy_lock_one_handle),
]
FREEZES = [pytest.param(InMemoryFreeze, id="memory")]


@pytest.fixture(name="make_storage", params=STORAGES)
def _make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStorage]:
    with _factory(request, tmp_path) as factory:
        yield factory


@pytest.fixture(name="make_lock_pair", params=LOCK_PAIRS)
def _make_lock_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLockPair]:
    with _factory(request, tmp_path) as factory:
        yield factory


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
