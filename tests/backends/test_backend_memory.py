"""Behaviour specific to the in-memory backends and clocks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.backends import (
    FreezeOverride,
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
    SystemClock,
)
from lupo_migrate.core.model import Run
from lupo_migrate.errors import (
    ConcurrentUpdateError,
    InvalidArgumentError,
    LockHeldError,
    StorageError,
)
from lupo_migrate.testing import st_runs

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(name="storage")
def _storage() -> InMemoryStorage:
    return InMemoryStorage()


class TestClocks:
    def test_system_clock_is_aware_utc(self) -> None:
        """The system clock returns the current time in UTC."""
        before = datetime.now(UTC)
        now = SystemClock().now()
        assert now.tzinfo is UTC
        assert before <= now <= datetime.now(UTC)

    def test_manual_clock_moves_only_when_told(self, clock: ManualClock) -> None:
        """A manual clock shows its start until advanced or set."""
        assert clock.now() == T0
        assert clock.advance(timedelta(minutes=2)) == T0 + timedelta(minutes=2)
        clock.set(T0 - timedelta(days=1))
        assert clock.now() == T0 - timedelta(days=1)

    def test_manual_clock_converts_to_utc(self) -> None:
        """A start in another zone is shown in UTC."""
        start = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
        now = ManualClock(start).now()
        assert now == start
        assert now.utcoffset() == timedelta(0)

    def test_manual_clock_has_a_default_start(self) -> None:
        """Without a start the clock shows a fixed aware time."""
        assert ManualClock().now() == datetime(2024, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize("bad", [datetime(2024, 1, 1), "2024-01-01", None])
    def test_manual_clock_refuses_naive_start(self, bad: object) -> None:
        """A naive or non-datetime start is an invalid argument."""
        with pytest.raises(InvalidArgumentError, match="timezone-aware"):
            ManualClock(bad)

    def test_manual_clock_refuses_naive_set(self, clock: ManualClock) -> None:
        """set() refuses naive datetimes."""
        with pytest.raises(InvalidArgumentError):
            clock.set(datetime(2024, 1, 1))

    @pytest.mark.parametrize("bad", [timedelta(seconds=-1), 5])
    def test_advance_refuses_going_back(self, clock: ManualClock, bad: object) -> None:
        """advance() takes only non-negative timedeltas."""
        with pytest.raises(InvalidArgumentError, match="timedelta >= 0"):
            clock.advance(bad)  # type: ignore[arg-type]


class TestInMemoryStorage:
    def test_stores_the_values_themselves(self, storage: InMemoryStorage) -> None:
        """The frozen values given are the values read back."""
        run = Run(id="r1")
        storage.create_run(run)
        assert storage.get_run("r1") is run

    def test_journal_ids_start_at_one(self, storage: InMemoryStorage) -> None:
        """Journal ids are 1, 2, 3 across runs."""
        ids = [storage.journal_intent(r, "s", 0, "SELECT 1", 20240101000000).id for r in "abc"]
        assert ids == [1, 2, 3]

    def test_journal_done_of_unknown_entry(self, storage: InMemoryStorage) -> None:
        """Marking an unknown journal entry done is a storage error naming it."""
        with pytest.raises(StorageError, match="no journal entry 42"):
            storage.journal_done(42, 20240101000000)

    def test_duplicate_create_message(self, storage: InMemoryStorage) -> None:
        """A duplicate run id names the table and the run."""
        storage.create_run(Run(id="r1"))
        with pytest.raises(StorageError, match="migration_batches: run r1 already exists"):
            storage.create_run(Run(id="r1"))

    @pytest.mark.parametrize("method", ["create_run", "record_applied"])
    def test_wrong_value_types_are_invalid_arguments(
        self, storage: InMemoryStorage, method: str
    ) -> None:
        """Passing something other than the documented value raises InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError):
            getattr(storage, method)({"id": "r"})

    def test_save_run_needs_a_run(self, storage: InMemoryStorage) -> None:
        """save_run() refuses something other than a Run."""
        with pytest.raises(InvalidArgumentError):
            storage.save_run({"id": "r"}, expected_version=0)  # type: ignore[arg-type]

    def test_findings_must_be_findings(self, storage: InMemoryStorage) -> None:
        """record_findings() refuses non-Finding values and records nothing."""
        with pytest.raises(InvalidArgumentError):
            storage.record_findings("r", ["oops"])  # type: ignore[list-item]
        assert storage.findings("r") == []

    def test_compare_and_set_under_threads(self, storage: InMemoryStorage) -> None:
        """Of many threads saving from the same version, exactly one wins."""
        storage.create_run(Run(id="r"))
        results: list[str] = []
        barrier = threading.Barrier(8)

        def save(n: int) -> None:
            barrier.wait()
            try:
                storage.save_run(Run(id="r", holder=str(n), version=1), expected_version=0)
                results.append("ok")
            except ConcurrentUpdateError:
                results.append("conflict")

        threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["conflict"] * 7 + ["ok"]

    @given(runs=st.lists(st_runs(), max_size=6, unique_by=lambda r: r.id))
    def test_any_runs_round_trip(self, runs: list[Run]) -> None:
        """Any runs drawn by st_runs read back equal, in creation order."""
        storage = InMemoryStorage()
        for run in runs:
            storage.create_run(run)
        assert list(storage.list_runs()) == runs
        for run in runs:
            assert storage.get_run(run.id) == run
            newer = attrs.evolve(run, version=run.version + 1)
            storage.save_run(newer, expected_version=run.version)
            assert storage.get_run(run.id) == newer


class TestInMemoryLock:
    def test_separate_tables_do_not_contend(self, clock: ManualClock) -> None:
        """Locks on different tables are different locks."""
        with InMemoryLock("main", clock).acquire("a"), InMemoryLock("main", clock).acquire("b"):
            pass

    def test_different_names_do_not_contend(self, clock: ManualClock) -> None:
        """Two names on one table are independent locks."""
        table = InMemoryLockTable()
        a, b = InMemoryLock("a", clock, table=table), InMemoryLock("b", clock, table=table)
        with a.acquire("x"), b.acquire("x") as info:
            assert info.name == "b"

    def test_break_lock_frees_it(self, clock: ManualClock) -> None:
        """Breaking a lock frees it at once and the old holder's exit does not free the new one."""
        table = InMemoryLockTable()
        a, b = InMemoryLock("main", clock, table=table), InMemoryLock("main", clock, table=table)
        with a.acquire("crashed") as info:
            assert b.break_lock() == info
            with b.acquire("rescuer"):
                pass
            with b.acquire("second"):
                pass
            with a.acquire("third") as third:
                pass
        assert a.holder() is None
        assert third.owner == "third"
        assert b.break_lock() is None

    def test_stale_exit_does_not_release_new_holder(self, clock: ManualClock) -> None:
        """A with block whose lock was broken does not free whoever took it since."""
        lock = InMemoryLock("main", clock)
        ctx = lock.acquire("old")
        ctx.__enter__()
        lock.break_lock()
        with lock.acquire("new") as info:
            ctx.__exit__(None, None, None)
            assert lock.holder() == info

    def test_lock_defaults_to_system_clock(self) -> None:
        """Without a clock the lock stamps real time."""
        lock = InMemoryLock("main")
        with lock.acquire("me") as info:
            assert info.since >= 20240101000000

    @pytest.mark.parametrize(
        ("owner", "timeout"), [("", 0.0), (None, 0.0), ("me", -1.0), ("me", "1"), ("me", True)]
    )
    def test_arguments_are_checked(
        self, clock: ManualClock, owner: object, timeout: object
    ) -> None:
        """An empty owner or a bad timeout is an invalid argument, raised at once."""
        with pytest.raises(InvalidArgumentError):
            InMemoryLock("main", clock).acquire(owner, timeout=timeout)  # type: ignore[arg-type]

    def test_int_timeout_is_accepted(self, clock: ManualClock) -> None:
        """A timeout may be an int."""
        with InMemoryLock("main", clock).acquire("me", timeout=1):
            pass


class TestInMemoryFreeze:
    def test_other_owner_cannot_freeze_while_frozen(self, clock: ManualClock) -> None:
        """A second owner's freeze is refused with the holder named."""
        gate = InMemoryFreeze(clock)
        info = gate.freeze("run-1", ttl=timedelta(minutes=5))
        with pytest.raises(LockHeldError) as err:
            gate.freeze("run-2", ttl=timedelta(minutes=5))
        assert (err.value.name, err.value.holder, err.value.since) == (
            "write freeze",
            "run-1",
            info.since,
        )

    def test_refreeze_keeps_since(self, clock: ManualClock) -> None:
        """Extending a freeze keeps when it started."""
        gate = InMemoryFreeze(clock)
        first = gate.freeze("run-1", ttl=timedelta(minutes=5))
        clock.advance(timedelta(minutes=1))
        assert gate.freeze("run-1", ttl=timedelta(minutes=5)).since == first.since

    @pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), 60])
    def test_ttl_must_be_positive(self, clock: ManualClock, ttl: object) -> None:
        """A ttl that is not a positive timedelta is an invalid argument."""
        with pytest.raises(InvalidArgumentError):
            InMemoryFreeze(clock).freeze("run-1", ttl=ttl)  # type: ignore[arg-type]

    def test_emergency_thaw_is_recorded(self, clock: ManualClock) -> None:
        """Every emergency thaw is kept with operator, reason, time and what it lifted."""
        gate = InMemoryFreeze(clock)
        info = gate.freeze("run-1", ttl=timedelta(hours=1))
        clock.advance(timedelta(minutes=3))
        gate.emergency_thaw("ops", "host died")
        gate.emergency_thaw("ops2", "again")
        assert gate.overrides == [
            FreezeOverride(operator="ops", reason="host died", at=20240601080300, lifted=info),
            FreezeOverride(operator="ops2", reason="again", at=20240601080300, lifted=None),
        ]

    def test_expiry_is_exact_to_the_second(self, clock: ManualClock) -> None:
        """The freeze is active until the second it expires, then gone."""
        gate = InMemoryFreeze(clock)
        gate.freeze("run-1", ttl=timedelta(seconds=10))
        clock.advance(timedelta(seconds=9))
        assert gate.status() is not None
        clock.advance(timedelta(seconds=1))
        assert gate.status() is None
