"""The public contract suite catches broken backends, and its strategies draw valid values.

Each broken backend below wraps a correct in-memory one and breaks exactly one guarantee; the
matching check must fail with a message naming that guarantee.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.backends import (
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
)
from lupo_migrate.core.model import AppliedStep, Finding, FreezeInfo, LockInfo, Run, Step
from lupo_migrate.errors import LockError, StorageError
from lupo_migrate.testing import (
    check_freeze,
    check_lock,
    check_storage,
    st_findings,
    st_runs,
    st_steps,
)
from lupo_migrate.typing import Lock


class Delegating:
    """Forwards everything to a correct backend; subclasses override one method badly."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- storages


class IgnoresVersion(Delegating):
    def save_run(self, run: Run, *, expected_version: int) -> None:
        self.inner._runs[run.id] = run


class SortsById(Delegating):
    def list_runs(self, target: str | None = None) -> Sequence[Run]:
        return sorted(self.inner.list_runs(target), key=lambda r: r.id)


class MovesReplacedLedgerRows(Delegating):
    def record_applied(self, entry: AppliedStep) -> None:
        self.inner.remove_applied(entry.target, entry.step_id)
        self.inner.record_applied(entry)


class DropsFindingsOfRuns(Delegating):
    def get_run(self, run_id: str) -> Run | None:
        run = self.inner.get_run(run_id)
        return None if run is None else attrs.evolve(run, findings=())


class AllowsDuplicateRuns(Delegating):
    def create_run(self, run: Run) -> None:
        self.inner._runs[run.id] = run


class RaisesPlainStorageError(Delegating):
    def save_run(self, run: Run, *, expected_version: int) -> None:
        stored = self.inner.get_run(run.id)
        if stored is None or stored.version != expected_version:
            raise StorageError("conflict")
        self.inner.save_run(run, expected_version=expected_version)


class ReversesFindings(Delegating):
    def findings(self, run_id: str) -> Sequence[Finding]:
        return list(reversed(self.inner.findings(run_id)))


class ForgetsJournalDone(Delegating):
    def journal_done(self, entry_id: int, at: int) -> None:
        pass


class SharesLedgerAcrossTargets(Delegating):
    def applied(self, target: str) -> Mapping[str, AppliedStep]:
        merged: dict[str, AppliedStep] = {}
        for rows in self.inner._applied.values():
            merged.update(rows)
        return merged


class TestCheckStorage:
    def test_correct_storage_passes(self) -> None:
        """The reference storage passes."""
        check_storage(InMemoryStorage)

    @pytest.mark.parametrize(
        ("broken", "message"),
        [
            (IgnoresVersion, "save_run() with a stale expected_version: expected"),
            (SortsById, "list_runs() (oldest first)"),
            (MovesReplacedLedgerRows, "must replace it in place"),
            (DropsFindingsOfRuns, "get_run('r-rich') after create_run()"),
            (AllowsDuplicateRuns, "create_run() of an id that exists"),
            (RaisesPlainStorageError, "expected ConcurrentUpdateError, got StorageError: conflict"),
            (ReversesFindings, "findings() (in recording order)"),
            (ForgetsJournalDone, "done_at after journal_done()"),
            (SharesLedgerAcrossTargets, "applied() values"),
        ],
    )
    def test_broken_storage_fails(self, broken: type[Delegating], message: str) -> None:
        """A storage breaking one guarantee fails check_storage, saying which."""
        with pytest.raises(AssertionError) as info:
            check_storage(lambda: broken(InMemoryStorage()))
        assert message in str(info.value)


# --------------------------------------------------------------------------- locks


class Reentrant(Delegating):
    """Lets the holder take the lock again."""

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        held = self.inner.holder()
        if held is not None and held.owner == owner:
            return _yield(held)
        return self.inner.acquire(owner, timeout=timeout)  # type: ignore[no-any-return]


@contextmanager
def _yield(info: LockInfo) -> Iterator[LockInfo]:
    yield info


class KeepsLockOnError(Delegating):
    """Releases only when the block ends normally."""

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        return self._hold(owner, timeout)

    @contextmanager
    def _hold(self, owner: str, timeout: float) -> Iterator[LockInfo]:
        ctx = self.inner.acquire(owner, timeout=timeout)
        self.leaked = ctx  # keep it alive, or closing the generator would release the lock
        info = ctx.__enter__()
        yield info
        ctx.__exit__(None, None, None)


class NeverWaits(Delegating):
    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        return self.inner.acquire(owner, timeout=0.0)  # type: ignore[no-any-return]


class PlainLockError(Delegating):
    """Raises a LockError that is not a LockHeldError."""

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        if self.inner.holder() is not None:
            raise LockError("busy")
        return self.inner.acquire(owner, timeout=timeout)  # type: ignore[no-any-return]


class HeartbeatAnyone(Delegating):
    def heartbeat(self, owner: str) -> None:
        held = self.inner.holder()
        if held is None:
            raise LockError("free")
        self.inner.heartbeat(held.owner)


class HeartbeatIgnored(Delegating):
    def heartbeat(self, owner: str) -> None:
        if self.inner.holder() is None or self.inner.holder().owner != owner:
            raise LockError("not yours")


class RealTimeStamps(Delegating):
    """Ignores the injected clock."""


def _pair(wrapper: type[Delegating], *, real_time: bool = False) -> Any:
    def make(clock: ManualClock) -> tuple[Lock, Lock]:
        table = InMemoryLockTable()
        used = None if real_time else clock
        kwargs: dict[str, Any] = {"table": table}
        first = InMemoryLock("main", used, **kwargs) if used else InMemoryLock("main", **kwargs)
        second = InMemoryLock("main", used, **kwargs) if used else InMemoryLock("main", **kwargs)
        return wrapper(first), wrapper(second)

    return make


class TestCheckLock:
    def test_correct_lock_passes(self) -> None:
        """The reference lock passes."""
        check_lock(_pair(Delegating), wait=0.05)

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (_pair(Reentrant), "by the holder on the other handle: the lock was granted"),
            (_pair(KeepsLockOnError), "holder() after an exception in the with block"),
            (_pair(NeverWaits), "gave up after"),
            (_pair(PlainLockError), "expected LockHeldError, got LockError: busy"),
            (_pair(HeartbeatAnyone), "heartbeat() by someone not holding it"),
            (_pair(HeartbeatIgnored), "holder() after heartbeat()"),
            (_pair(RealTimeStamps, real_time=True), "since, heartbeat from the clock"),
        ],
    )
    def test_broken_lock_fails(self, make: Any, message: str) -> None:
        """A lock breaking one guarantee fails check_lock, saying which."""
        with pytest.raises(AssertionError) as info:
            check_lock(make, wait=0.05)
        assert message in str(info.value)

    def test_unpicklable_error_fails(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A LockHeldError that loses its facts when pickled fails the check."""
        from lupo_migrate.errors import LockHeldError

        monkeypatch.delattr(LockHeldError, "__reduce__")
        with pytest.raises((AssertionError, TypeError)):
            check_lock(_pair(Delegating), wait=0.05)


# --------------------------------------------------------------------------- freezes


class NeverExpires(Delegating):
    def status(self) -> FreezeInfo | None:
        return self.inner._current  # type: ignore[no-any-return]


class ThawsAnyone(Delegating):
    def thaw(self, owner: str) -> None:
        self.inner._current = None


class NoExtension(Delegating):
    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        current = self.inner.status()
        if current is not None and current.owner == owner:
            return current  # type: ignore[no-any-return]
        return self.inner.freeze(owner, ttl=ttl)  # type: ignore[no-any-return]


class EmergencyThawReturnsNothing(Delegating):
    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        self.inner.emergency_thaw(operator, reason)
        return None


class TestCheckFreeze:
    def test_correct_freeze_passes(self) -> None:
        """The reference write gate passes."""
        check_freeze(InMemoryFreeze)

    @pytest.mark.parametrize(
        ("broken", "message"),
        [
            (NeverExpires, "status() once the clock passed the expiry"),
            (ThawsAnyone, "thaw() by another owner must leave the freeze"),
            (NoExtension, "freeze() again by the owner extends the expiry"),
            (EmergencyThawReturnsNothing, "emergency_thaw() returns the freeze it lifted"),
        ],
    )
    def test_broken_freeze_fails(self, broken: type[Delegating], message: str) -> None:
        """A write gate breaking one guarantee fails check_freeze, saying which."""
        with pytest.raises(AssertionError) as info:
            check_freeze(lambda clock: broken(InMemoryFreeze(clock)))
        assert message in str(info.value)


# --------------------------------------------------------------------------- strategies


class TestStrategies:
    @given(st_steps())
    def test_steps(self, step: Step) -> None:
        """st_steps draws Step values with small texts."""
        assert isinstance(step, Step)
        assert 1 <= len(step.id) <= 8
        assert step.path.endswith(".sql")

    @given(st_findings())
    def test_findings(self, finding: Finding) -> None:
        """st_findings draws Finding values that render as text."""
        assert isinstance(finding, Finding)
        assert isinstance(str(finding), str)

    @given(st_runs())
    def test_runs(self, run: Run) -> None:
        """st_runs draws runs whose applied steps are a prefix of their steps."""
        assert isinstance(run, Run)
        assert run.steps[: len(run.applied)] == run.applied
        assert run.in_flight is None or run.in_flight in run.steps

    @given(st.data())
    def test_drawn_runs_pass_through_storage(self, data: st.DataObject) -> None:
        """Drawn runs round-trip through the reference storage."""
        run = data.draw(st_runs())
        storage = InMemoryStorage()
        storage.create_run(run)
        assert storage.get_run(run.id) == run

    def test_import_does_not_need_hypothesis(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Importing lupo_migrate.testing works when hypothesis cannot be imported."""
        real_import = builtins.__import__

        def no_hypothesis(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "hypothesis" or name.startswith("hypothesis."):
                raise ImportError("no hypothesis here")
            return real_import(name, *args, **kwargs)

        monkeypatch.delitem(sys.modules, "lupo_migrate.testing")
        monkeypatch.setattr(builtins, "__import__", no_hypothesis)
        import lupo_migrate.testing as fresh

        assert callable(fresh.check_storage)
        with pytest.raises(ImportError):
            fresh.st_runs()
