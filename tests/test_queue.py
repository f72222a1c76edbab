"""The run queue: the pure decisions (order, claims), the drain shell on in-memory backends,
the command line, and concurrent enqueue and drain on real databases."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.backends.memory import (
    InMemoryEphemeral,
    InMemoryFreeze,
    InMemoryLock,
    InMemoryStorage,
    ManualClock,
)
from lupo_migrate.backends.sqlalchemy.storage import SqlAlchemyStorage
from lupo_migrate.cli import main
from lupo_migrate.core import queue as _queue
from lupo_migrate.core.queue import Job, QueueEntry, QueueStatus
from lupo_migrate.errors import (
    ConcurrentUpdateError,
    DecisionError,
    InternalError,
    InvalidArgumentError,
    LockHeldError,
    UnknownTargetError,
)
from lupo_migrate.files.discover import load_steps
from lupo_migrate.handlers.registry import HandlerRegistry
from lupo_migrate.run.orchestrator import Orchestrator
from lupo_migrate.session.config import Settings
from lupo_migrate.session.session import session
from lupo_migrate.testing import check_queue
from test_runner import FakeTarget, LineHandler

# --------------------------------------------------------------------------- the core


def entry(entry_id: int, priority: int = 0, at: int = 20240101000000, target: str = "t") -> Any:
    made = QueueEntry.new(target, enqueued_at=at, enqueued_by="ops", priority=priority)
    return attrs.evolve(made, id=entry_id)


_entries = st.lists(
    st.tuples(st.integers(-3, 3), st.integers(20240101000000, 20240101000003)),
    min_size=1,
    max_size=25,
)


class TestOrder:
    @given(drawn=_entries, seed=st.randoms())
    def test_draining_follows_priority_then_age(
        self, drawn: list[tuple[int, int]], seed: random.Random
    ) -> None:
        """Claiming the next entry until none is left gives priority order, then age, then id,
        whatever order the entries are read in."""
        stored = {i: entry(i, p, at) for i, (p, at) in enumerate(drawn, 1)}
        order = []
        while True:
            shown = list(stored.values())
            seed.shuffle(shown)
            chosen = _queue.next_entry(shown, "t")
            if chosen is None:
                break
            running = _queue.claim(chosen, "w", 20240101000009)
            stored[chosen.id] = running
            assert _queue.next_entry(list(stored.values()), "t") is None  # one at a time
            stored[chosen.id] = _queue.finish(
                running, worker="w", at=20240101000010, outcome="completed"
            )
            order.append(chosen.id)
        expected = sorted(stored, key=lambda i: (-drawn[i - 1][0], drawn[i - 1][1], i))
        assert order == expected
        assert all(e.status is QueueStatus.DONE and e.attempts == 1 for e in stored.values())

    @given(drawn=_entries, workers=st.integers(2, 6), seed=st.randoms())
    def test_no_entry_is_claimed_twice(
        self, drawn: list[tuple[int, int]], workers: int, seed: random.Random
    ) -> None:
        """Workers reading stale copies race to claim; the compare-and-set lets exactly one
        claim of each entry through."""
        storage = InMemoryStorage()
        for priority, at in drawn:
            storage.enqueue(QueueEntry.new("t", enqueued_at=at, enqueued_by="o", priority=priority))
        claims: dict[int, list[str]] = {}
        while storage.queue_entries("t", active=True):
            views = {f"w{n}": list(storage.queue_entries("t")) for n in range(workers)}
            for name in seed.sample(sorted(views), k=workers):
                queued = [e for e in views[name] if e.status is QueueStatus.QUEUED]
                if not queued:
                    continue
                chosen = seed.choice(queued)  # any entry, to stress the compare-and-set
                try:
                    storage.save_entry(
                        _queue.claim(chosen, name, 1), expected_version=chosen.version
                    )
                except ConcurrentUpdateError:
                    continue
                claims.setdefault(chosen.id, []).append(name)
            for running in storage.queue_entries("t", active=True):
                if running.status is QueueStatus.RUNNING:
                    done = _queue.finish(
                        running, worker=str(running.worker), at=2, outcome="completed"
                    )
                    storage.save_entry(done, expected_version=running.version)
        assert sorted(claims) == [e.id for e in storage.queue_entries()]
        assert all(len(names) == 1 for names in claims.values()), claims

    def test_other_targets_do_not_wait(self) -> None:
        """A running entry of one target does not hold back another target's queue."""
        running = _queue.claim(entry(1, target="a"), "w", 1)
        other = entry(2, target="b")
        assert _queue.next_entry([running, entry(3, target="a"), other], "b") == other
        assert _queue.next_entry([running, entry(3, target="a")], "a") is None

    def test_orphans_are_running_entries_without_a_live_worker(self) -> None:
        """Only running entries of the target whose worker is not alive are orphans."""
        a = _queue.claim(entry(1), "dead", 5)
        b = _queue.claim(entry(2), "alive", 4)
        assert _queue.orphans([a, b, entry(3)], "t", ["alive"]) == [a]


class TestTransitions:
    def test_claim_finish_and_release_bump_the_version(self) -> None:
        """Each change is a new entry one version up; release keeps priority and age."""
        queued = entry(4, priority=2)
        claimed = _queue.claim(queued, "w", 7)
        assert (claimed.status, claimed.worker, claimed.attempts, claimed.version) == (
            QueueStatus.RUNNING,
            "w",
            1,
            1,
        )
        again = _queue.release(claimed, detail="worker died")
        assert (again.status, again.worker, again.version) == (QueueStatus.QUEUED, None, 2)
        assert _queue.order_key(again) == _queue.order_key(queued)
        done = _queue.finish(
            _queue.claim(again, "v", 8), worker="v", at=9, outcome="completed", run_id="r"
        )
        assert (done.status, done.run_id, done.attempts, done.version) == (
            QueueStatus.DONE,
            "r",
            2,
            4,
        )

    def test_a_running_entry_cannot_be_cancelled_or_claimed(self) -> None:
        """Cancel refuses a running entry, naming its worker; a second claim is refused."""
        running = _queue.claim(entry(5), "host:1:abc", 20240101000001)
        with pytest.raises(DecisionError, match=r"entry 5 is running \(claimed by host:1:abc"):
            _queue.cancel(running, by="ops", at=2)
        with pytest.raises(DecisionError, match="entry 5 is running, not queued"):
            _queue.claim(running, "other", 2)

    def test_only_a_queued_entry_is_cancelled(self) -> None:
        """Cancel ends a queued entry; an ended one cannot be cancelled again."""
        cancelled = _queue.cancel(entry(6), by="ops", at=3)
        assert (cancelled.status, cancelled.finished_at, cancelled.detail) == (
            QueueStatus.CANCELLED,
            3,
            "cancelled by ops",
        )
        with pytest.raises(DecisionError, match="entry 6 is cancelled already"):
            _queue.cancel(cancelled, by="ops", at=4)

    def test_only_the_claiming_worker_finishes(self) -> None:
        """Finishing someone else's entry is a bug, reported as such."""
        running = _queue.claim(entry(7), "a", 1)
        with pytest.raises(InternalError, match="cannot be finished by b"):
            _queue.finish(running, worker="b", at=2, outcome="completed")

    @pytest.mark.parametrize("priority", [True, 1.5, 10**7])
    def test_priorities_are_bounded_whole_numbers(self, priority: object) -> None:
        """A priority that is not a whole number within bounds is refused."""
        with pytest.raises(InvalidArgumentError, match="priority"):
            QueueEntry.new("t", enqueued_at=1, enqueued_by="o", priority=priority)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the shell


def test_both_storages_meet_the_queue_contract(tmp_path: Path) -> None:
    """InMemoryStorage and SqlAlchemyStorage pass check_queue."""
    check_queue(InMemoryStorage)

    def make() -> SqlAlchemyStorage:
        storage = SqlAlchemyStorage(sa.create_engine("sqlite://"))
        storage.ensure_schema()
        return storage

    check_queue(make)


def test_queue_rows_are_not_runs() -> None:
    """Queue entries share migration_batches with runs, but run queries never see them."""
    storage = SqlAlchemyStorage(sa.create_engine("sqlite://"))
    storage.ensure_schema()
    storage.enqueue(QueueEntry.new("t", enqueued_at=1, enqueued_by="o"))
    assert storage.list_runs() == []
    assert storage.latest_run("t") is None


@attrs.define
class World:
    orchestrator: Orchestrator
    ephemeral: InMemoryEphemeral
    clock: ManualClock
    target: FakeTarget
    root: Path

    def steps(self) -> Any:
        return load_steps(self.root)

    def other(self, owner: str) -> Orchestrator:
        """Another orchestrator on the same storage and lock (another process)."""
        return attrs.evolve(self.orchestrator, owner=owner)


@pytest.fixture(name="world")
def _world(tmp_path: Path) -> World:
    root = tmp_path / "m"
    root.mkdir()
    for n in range(1, 6):
        # independent on purpose (not a chain), so entries may apply them in any order
        (root / f"V{n}__s{n}.sql").write_text(f"-- depends_on: []\nCREATE s{n}\n")
    clock = ManualClock()
    registry = HandlerRegistry()
    registry.register(LineHandler())
    target = FakeTarget()
    orchestrator = Orchestrator(
        storage=InMemoryStorage(),
        lock=InMemoryLock("t", clock),
        freeze=InMemoryFreeze(clock),
        clock=clock,
        registry=registry,
        target=target,
        root=root,
        target_name="t",
        owner="me",
        out_of_order=True,
    )
    return World(orchestrator, InMemoryEphemeral(clock), clock, target, root)


class TestDrain:
    def test_entries_run_by_priority_then_age_each_once(self, world: World) -> None:
        """Each entry runs once, in order; one with nothing left to do says so."""
        orch, steps = world.orchestrator, world.steps()
        low = orch.enqueue(steps, upto="V1__s1", priority=0, by="ann")
        world.clock.advance(timedelta(seconds=1))
        high = orch.enqueue(steps, upto="V3__s3", priority=5, by="bob")
        late = orch.enqueue(steps, upto="V2__s2", priority=5, by="cy")
        rest = orch.enqueue(steps, priority=-1)
        assert [e.id for e in orch.queue()] == [high.id, late.id, low.id, rest.id]
        assert high.steps == ("V3__s3",)
        report = orch.drain(steps, ephemeral=world.ephemeral)
        assert report.stopped is None
        assert [d.entry.id for d in report.drained] == [high.id, late.id, low.id, rest.id]
        assert [d.entry.outcome for d in report.drained] == ["completed"] * 4
        assert world.target.executed == ["CREATE s3", "CREATE s2", "CREATE s1", "CREATE s4",
                                         "CREATE s5"]  # fmt: skip
        runs = [r.id for r in orch.history()]
        assert [d.entry.run_id for d in report.drained] == runs
        assert orch.queue() == []
        assert world.ephemeral.lease("queue:t") is None  # given up
        assert world.ephemeral.jobs() == []

    def test_nothing_to_do_and_errors_end_the_entry(self, world: World) -> None:
        """An entry whose steps are applied ends nothing_to_do; one the run refuses ends in
        error and stops the drain, the next entry keeping its place."""
        orch, steps = world.orchestrator, world.steps()
        orch.apply(steps, upto="V1__s1")
        first = orch.enqueue(steps, upto="V1__s1")
        second = orch.enqueue(steps, upto="V2__s2")
        third = orch.enqueue(steps)
        (world.root / "V2__s2.sql").write_text("CREATE FAIL\n")  # the run rolls back
        report = orch.drain(world.steps(), ephemeral=world.ephemeral)
        assert [(d.entry.id, d.entry.outcome) for d in report.drained] == [
            (first.id, "nothing_to_do"),
            (second.id, "rolled_back"),
        ]
        assert report.stopped is not None
        assert "ended rolled_back" in report.stopped
        assert [e.id for e in orch.queue()] == [third.id]

    def test_a_dead_workers_entry_is_queued_again_first(self, world: World) -> None:
        """An entry left running by a worker whose job expired goes back to the queue and is
        the next to run, once."""
        orch, steps = world.orchestrator, world.steps()
        older = orch.enqueue(steps, upto="V1__s1", priority=1)
        newer = orch.enqueue(steps, upto="V2__s2", priority=1)
        # A worker claims `older`, records its job and dies (its lease and job expire).
        world.ephemeral.take("queue:t", "dead", ttl=timedelta(seconds=60))
        claimed = _queue.claim(older, "dead", 20240101000000)
        orch.storage.save_entry(claimed, expected_version=older.version)  # type: ignore[attr-defined]
        expires = 20240101000100
        world.ephemeral.start_job(Job(entry_id=older.id, target="t", worker="dead",
                                      claimed_at=20240101000000, expires=expires))  # fmt: skip
        with pytest.raises(LockHeldError, match="queue:t"):
            orch.drain(steps, ephemeral=world.ephemeral)
        assert [e.status for e in orch.queue()] == [QueueStatus.RUNNING, QueueStatus.QUEUED]
        world.clock.advance(timedelta(minutes=2))
        report = orch.drain(steps, ephemeral=world.ephemeral)
        assert [(d.entry.id, d.entry.attempts) for d in report.drained] == [
            (older.id, 2),
            (newer.id, 1),
        ]
        assert world.target.executed == ["CREATE s1", "CREATE s2"]

    def test_a_run_that_cannot_start_keeps_its_place(self, world: World) -> None:
        """When another run holds the target, the entry goes back to the queue unchanged in
        order and draining stops, saying why."""
        orch, steps = world.orchestrator, world.steps()
        queued = orch.enqueue(steps, priority=3)
        with orch.lock.acquire("someone else"):
            report = orch.drain(steps, ephemeral=world.ephemeral)
        assert report.stopped is not None
        assert "someone else" in report.stopped
        (left,) = orch.queue()
        assert (left.id, left.status, left.priority) == (queued.id, QueueStatus.QUEUED, 3)
        assert left.detail is not None
        assert "could not start" in left.detail
        assert orch.drain(steps, ephemeral=world.ephemeral).drained[0].entry.outcome == (
            "completed"
        )

    def test_limit_and_a_second_drainer(self, world: World) -> None:
        """limit stops after N entries; a second drainer waits for the first one's lease."""
        orch, steps = world.orchestrator, world.steps()
        for n in (1, 2, 3):
            orch.enqueue(steps, upto=f"V{n}__s{n}")
        assert len(orch.drain(steps, ephemeral=world.ephemeral, limit=1).drained) == 1
        world.ephemeral.take("queue:t", "other", ttl=timedelta(seconds=60))
        with pytest.raises(LockHeldError, match="held by other"):
            orch.drain(steps, ephemeral=world.ephemeral, wait=0.1)
        world.ephemeral.release("queue:t", "other")
        assert len(world.other("me2").drain(steps, ephemeral=world.ephemeral).drained) == 2

    def test_cancel_and_unknown_entries(self, world: World) -> None:
        """A queued entry is cancelled and never runs; unknown ids and steps are refused."""
        orch, steps = world.orchestrator, world.steps()
        entry = orch.enqueue(steps)
        cancelled = orch.cancel_queued(entry.id, by="ops")
        assert cancelled.status is QueueStatus.CANCELLED
        assert orch.queue() == []
        assert orch.queue(finished=True) == [cancelled]
        assert orch.drain(steps, ephemeral=world.ephemeral).drained == ()
        with pytest.raises(InvalidArgumentError, match="no queue entry 99 of target t"):
            orch.cancel_queued(99)
        with pytest.raises(UnknownTargetError):
            orch.enqueue(steps, upto="V9__nope")


# --------------------------------------------------------------------------- command line


def test_the_queue_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add, list, cancel and drain on SQLite, with their exit codes and messages."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    for n in (1, 2):
        (migrations / f"V{n}__t{n}.sql").write_text(f"CREATE TABLE t{n} (id INTEGER);\n")
    db = ["--db", f"sqlite:///{tmp_path / 'app.db'}"]
    assert main(["queue", "add", str(migrations), *db, "--upto", "V1__t1", "--by", "ann"]) == 0
    assert main(["queue", "add", str(migrations), *db, "--priority", "9", "--by", "bob"]) == 0
    assert main(["queue", "add", str(migrations), *db]) == 0
    out = capsys.readouterr().out
    assert "queued entry 1 for target default: priority 0, 1 step(s) pending now" in out
    assert main(["queue", "cancel", "3", *db, "--operator", "cy"]) == 0
    assert "cancelled queue entry 3 (cancelled by cy)" in capsys.readouterr().out
    assert main(["queue", "cancel", "3", *db]) == DecisionError.exit_code
    assert "entry 3 is cancelled already" in capsys.readouterr().err
    assert main(["queue", "list", *db]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in listed] == [
        ["2", "queued", "priority", "9"],
        ["1", "queued", "priority", "0"],
    ]
    assert main(["queue", "drain", str(migrations), *db]) == 0
    out = capsys.readouterr().out
    assert "2 queue entries run" in out
    assert "completed run" in out
    assert "nothing_to_do" in out
    assert main(["queue", "list", *db]) == 0
    assert "the queue of target default is empty" in capsys.readouterr().out


def test_a_running_entry_cannot_be_cancelled_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancelling a running entry exits with the decision error and says what to do."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["queue", "add", str(migrations), "--db", url]) == 0
    storage = SqlAlchemyStorage(sa.create_engine(f"sqlite:///{tmp_path / 'app.lupo.db'}"))
    (queued,) = storage.queue_entries()
    storage.save_entry(_queue.claim(queued, "host:9:x", 20240101000000), expected_version=0)
    capsys.readouterr()
    assert main(["queue", "cancel", str(queued.id), "--db", url]) == DecisionError.exit_code
    err = capsys.readouterr().err
    assert f"queue entry {queued.id} is running (claimed by host:9:x" in err
    assert "lupo-migrate rollback RUN" in err
    storage.engine.dispose()


# --------------------------------------------------------------------------- real databases


def _enqueue_and_drain(url: str, tmp_path: Path) -> None:
    """20 entries enqueued from 4 threads, drained by 4 threads: priority then age, once."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    for n in range(1, 21):
        # independent on purpose (not a chain): entries apply them in any order
        (migrations / f"V{n:02d}__t.sql").write_text(
            f"-- depends_on: []\nCREATE TABLE t{n:02d} (id INTEGER);\n"
        )
    settings = Settings(db=url, migrations=migrations, lock_timeout=30, out_of_order=True)
    with session(settings) as opened:  # creates the tables once, before the threads race
        assert opened.queue() == []
    rng = random.Random(6)
    plans = [
        [(f"V{n:02d}__t", rng.choice([0, 1, 2])) for n in range(k, 21, 4)] for k in range(1, 5)
    ]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def enqueuer(plan: list[tuple[str, int]]) -> None:
        try:
            with session(settings) as opened:
                start.wait()
                for upto, priority in plan:
                    opened.enqueue(upto=upto, priority=priority, by=threading.current_thread().name)
        except BaseException as exc:
            errors.append(exc)

    def drainer(name: str) -> None:
        try:
            with session(settings) as opened:
                start.wait()
                while opened.queue():
                    opened.drain(worker=name, limit=1, wait=60)
        except BaseException as exc:
            errors.append(exc)

    for work, args in ((enqueuer, plans), (drainer, [f"d{n}" for n in range(4)])):
        threads = [threading.Thread(target=work, args=(a,)) for a in args]  # type: ignore[arg-type]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not errors, errors

    with session(settings) as opened:
        entries = opened.queue(finished=True)
        runs = list(opened.history())
        applied = opened.applied()
        journal = [j for r in runs for j in opened.orchestrator.storage.journal(r.id)]
    assert len(entries) == 20
    assert all(e.status is QueueStatus.DONE and e.outcome == "completed" for e in entries)
    assert all(e.attempts == 1 for e in entries)
    expected = sorted(entries, key=_queue.order_key)
    assert [r.id for r in runs] == [e.run_id for e in expected]  # runs in drain order
    assert len({e.run_id for e in entries}) == 20
    assert [r.steps for r in runs] == [(e.upto,) for e in expected]  # each file in one run
    assert sorted(applied) == [f"V{n:02d}__t" for n in range(1, 21)]
    statements = [j.statement for j in journal]
    assert len(statements) == len(set(statements)) == 20  # no statement ran twice


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
)
def test_twenty_runs_from_four_threads_drain_in_order_once(kind: str, tmp_path: Path) -> None:
    """20 runs enqueued from 4 threads drain in priority-then-age order; none runs twice."""
    from databases import fresh_database

    with fresh_database(kind, tmp_path) as url:
        _enqueue_and_drain(url, tmp_path)
