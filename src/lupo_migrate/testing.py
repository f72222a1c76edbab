"""The contract every backend must pass, and hypothesis strategies for plugin authors.

A storage, lock, freeze, run queue or ephemeral backend, ours or a third party's, is correct
when these checks pass against it (:func:`check_queue` and :func:`check_ephemeral` for the
optional protocols)::

    from lupo_migrate.testing import check_freeze, check_lock, check_storage

    def test_my_storage_meets_the_contract():
        check_storage(lambda: MyStorage(fresh_database()))

    def test_my_lock_meets_the_contract():
        def make_pair(clock):
            db = fresh_database()
            return MyLock("target", clock, db), MyLock("target", clock, db)
        check_lock(make_pair)

    def test_my_freeze_meets_the_contract():
        check_freeze(lambda clock: MyFreeze(fresh_database(), clock))

Each check calls its factory several times and needs a fresh, empty backend every time. A
broken guarantee raises ``AssertionError`` saying which one and with what values; the checks
never rely on ``assert`` statements, so they also work under ``python -O``.

The strategies (:func:`st_steps`, :func:`st_findings`, :func:`st_runs`) import hypothesis only
when called, so importing this module does not need it.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from lupo_migrate._clock import to_stamp
from lupo_migrate._model import (
    AppliedStep,
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Phase,
    Run,
    Severity,
    Step,
)
from lupo_migrate._queue import Job, QueueEntry, QueueStatus
from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.errors import (
    ConcurrentUpdateError,
    LockError,
    LockHeldError,
    StorageError,
)
from lupo_migrate.typing import Ephemeral, Freeze, Lock, RunQueue, Storage

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "check_ephemeral",
    "check_freeze",
    "check_lock",
    "check_queue",
    "check_storage",
    "st_findings",
    "st_runs",
    "st_steps",
]

_E = TypeVar("_E", bound=BaseException)

#: Where the contract's manual clocks start.
_EPOCH = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _raises(exc_type: type[_E], call: Callable[[], object], what: str) -> _E:
    try:
        call()
    except exc_type as exc:
        return exc
    except AssertionError:
        raise  # a nested check already said what broke
    except BaseException as exc:
        raise AssertionError(
            f"{what}: expected {exc_type.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing was raised")


def _sample_run(run_id: str, target: str = "main") -> Run:
    """A run with every field set to something other than its default."""
    finding = Finding(
        severity=Severity.WARNING,
        message="column lacks a comment",
        path="core/001_users.sql",
        line=3,
        hint="add COMMENT '...'",
        code="L001",
        kind=FailureKind.LINT,
        step_id="001_users",
    )
    return Run(
        id=run_id,
        target=target,
        phase=Phase.ROLLING_BACK,
        steps=("001_users", "002_posts", "003_tags"),
        applied=("001_users",),
        in_flight="002_posts",
        undo=("002_posts", "001_users"),
        outcome=None,
        blocked=False,
        classification=Classification.A,
        failure=Failure(
            kind=FailureKind.STEP_FAILED_PARTWAY,
            message="statement 2 failed: duplicate column 'x'",
            step_id="002_posts",
            critical=True,
        ),
        findings=(finding,),
        pending=(Classification.C, Classification.D),
        holder="host-1:4242",
        version=0,
        rolls_back="r-earlier",
        rolls_back_scope=Classification.B,
    )


# --------------------------------------------------------------------------- storage


def check_storage(make_storage: Callable[[], Storage]) -> None:
    """Check every guarantee of :class:`lupo_migrate.typing.Storage` against an implementation.

    Args:
        make_storage: returns a new, empty storage each time it is called.

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (
        _storage_runs_round_trip,
        _storage_create_refuses_duplicates,
        _storage_save_is_compare_and_set,
        _storage_lists_in_creation_order,
        _storage_ledger,
        _storage_findings,
        _storage_journal,
    ):
        check(make_storage())


def _storage_runs_round_trip(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(storage.get_run("nope"), None, f"{name}.get_run() of an unknown id")
    plain = Run(id="r-plain")
    rich = _sample_run("r-rich")
    ended = Run(id="r-ended", outcome=Outcome.FAILED, blocked=True, version=7)
    for run in (plain, rich, ended):
        storage.create_run(run)
    for run in (plain, rich, ended):
        _equal(storage.get_run(run.id), run, f"{name}.get_run({run.id!r}) after create_run()")


def _storage_create_refuses_duplicates(storage: Storage) -> None:
    name = type(storage).__name__
    first = Run(id="dup", target="a")
    storage.create_run(first)
    _raises(
        StorageError,
        lambda: storage.create_run(Run(id="dup", target="b")),
        f"{name}.create_run() of an id that exists",
    )
    _equal(storage.get_run("dup"), first, f"{name}: the run after a refused create_run()")


def _storage_save_is_compare_and_set(storage: Storage) -> None:
    name = type(storage).__name__
    run = _sample_run("cas")
    storage.create_run(run)
    moved = Run(id="cas", target="main", phase=Phase.IDLE, outcome=Outcome.ROLLED_BACK, version=1)
    storage.save_run(moved, expected_version=0)
    _equal(storage.get_run("cas"), moved, f"{name}.get_run() after save_run()")

    stale = Run(id="cas", target="main", phase=Phase.PREPARING, version=1)
    err = _raises(
        ConcurrentUpdateError,
        lambda: storage.save_run(stale, expected_version=0),
        f"{name}.save_run() with a stale expected_version",
    )
    _equal(err.table, "migration_batches", "ConcurrentUpdateError.table")
    _equal(err.run_id, "cas", "ConcurrentUpdateError.run_id")
    _equal(err.expected, 0, "ConcurrentUpdateError.expected")
    _equal(err.found, 1, "ConcurrentUpdateError.found")
    _expect(isinstance(err, StorageError), "ConcurrentUpdateError must be a StorageError")
    _equal(storage.get_run("cas"), moved, f"{name}: the run after a refused save_run()")

    missing = Run(id="ghost", version=1)
    err = _raises(
        ConcurrentUpdateError,
        lambda: storage.save_run(missing, expected_version=0),
        f"{name}.save_run() of a run never created",
    )
    _equal(err.found, None, "ConcurrentUpdateError.found for a missing run")
    _equal(storage.get_run("ghost"), None, f"{name}: save_run() must not create runs")


def _storage_lists_in_creation_order(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(list(storage.list_runs()), [], f"{name}.list_runs() when empty")
    _equal(storage.latest_run("a"), None, f"{name}.latest_run() when empty")
    # Ids deliberately not in creation order, so sorting by id would be caught.
    r1, r2, r3 = Run(id="z1", target="a"), Run(id="m2", target="b"), Run(id="a3", target="a")
    for run in (r1, r2, r3):
        storage.create_run(run)
    _equal(list(storage.list_runs()), [r1, r2, r3], f"{name}.list_runs() (oldest first)")
    _equal(list(storage.list_runs("a")), [r1, r3], f"{name}.list_runs('a')")
    _equal(list(storage.list_runs("nobody")), [], f"{name}.list_runs() of an unknown target")
    r1_saved = Run(id="z1", target="a", phase=Phase.PREPARING, version=1)
    storage.save_run(r1_saved, expected_version=0)
    _equal(
        list(storage.list_runs()),
        [r1_saved, r2, r3],
        f"{name}.list_runs() after save_run() of the oldest (order is creation order)",
    )
    _equal(storage.latest_run("a"), r3, f"{name}.latest_run('a')")
    _equal(storage.latest_run("b"), r2, f"{name}.latest_run('b')")
    _equal(storage.latest_run("nobody"), None, f"{name}.latest_run() of an unknown target")
    listed = storage.list_runs()
    if isinstance(listed, list):
        listed.clear()
        _equal(len(storage.list_runs()), 3, f"{name}.list_runs() must return a copy")


def _storage_ledger(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(dict(storage.applied("t")), {}, f"{name}.applied() of an empty ledger")

    def row(step_id: str, checksum: str, target: str = "t") -> AppliedStep:
        return AppliedStep(
            step_id=step_id,
            target=target,
            checksum=checksum,
            run_id="r1",
            applied_at=20240301120000,
            path=f"core/{step_id}.sql",
            file_type="doctrine",
        )

    b, a, c = row("b", "11"), row("a", "22"), row("c", "33")
    for entry in (b, a, c):
        storage.record_applied(entry)
    other = row("a", "99", target="u")
    storage.record_applied(other)
    ledger = storage.applied("t")
    _equal(list(ledger), ["b", "a", "c"], f"{name}.applied() keys (in recording order)")
    _equal(dict(ledger), {"b": b, "a": a, "c": c}, f"{name}.applied() values")
    _equal(dict(storage.applied("u")), {"a": other}, f"{name}.applied() of another target")

    a2 = row("a", "44")
    storage.record_applied(a2)
    ledger = storage.applied("t")
    _equal(dict(ledger), {"b": b, "a": a2, "c": c}, f"{name}.record_applied() of a recorded step")
    _expect(
        list(ledger) == ["b", "a", "c"],
        f"{name}.record_applied() of a recorded step must replace it in place;"
        f" order became {list(ledger)!r}",
    )

    storage.remove_applied("t", "a")
    _equal(dict(storage.applied("t")), {"b": b, "c": c}, f"{name}.remove_applied()")
    storage.remove_applied("t", "a")  # absent: no error
    storage.remove_applied("nobody", "a")
    _equal(dict(storage.applied("u")), {"a": other}, f"{name}.remove_applied() of another target")


def _storage_findings(storage: Storage) -> None:
    name = type(storage).__name__
    storage.create_run(Run(id="f1"))
    storage.create_run(Run(id="f2"))
    _equal(list(storage.findings("f1")), [], f"{name}.findings() before any")
    first = [
        Finding(severity=Severity.ERROR, message="drift in users", path="core/a.sql", line=1),
        Finding(severity=Severity.INFO, message="ok"),
    ]
    second = [
        Finding(
            severity=Severity.CRITICAL,
            message="row count changed",
            hint="restore from backup",
            code="V9",
            kind=FailureKind.DATA_INTEGRITY,
            step_id="s1",
        )
    ]
    storage.record_findings("f1", first)
    storage.record_findings("f2", [Finding(severity=Severity.WARNING, message="other run")])
    storage.record_findings("f1", second)
    storage.record_findings("f1", [])
    _equal(list(storage.findings("f1")), first + second, f"{name}.findings() (in recording order)")
    _equal(len(storage.findings("f2")), 1, f"{name}.findings() of another run")


def _storage_journal(storage: Storage) -> None:
    name = type(storage).__name__
    storage.create_run(Run(id="j1"))
    storage.create_run(Run(id="j2"))
    _equal(list(storage.journal("j1")), [], f"{name}.journal() before any")
    e1 = storage.journal_intent("j1", "s1", 0, "CREATE TABLE t (id INT)", 20240301120000)
    e2 = storage.journal_intent("j2", "s9", 0, "SELECT 1", 20240301120001)
    e3 = storage.journal_intent("j1", "s1", 1, "ALTER TABLE t ADD x INT", 20240301120002)
    ids = [e1.id, e2.id, e3.id]
    _expect(
        ids == sorted(ids) and len(set(ids)) == 3 and ids[0] >= 1,
        f"{name}.journal_intent() ids must be positive and increase; got {ids!r}",
    )
    _equal(
        (e1.run_id, e1.step_id, e1.index, e1.statement, e1.started_at, e1.done_at),
        ("j1", "s1", 0, "CREATE TABLE t (id INT)", 20240301120000, None),
        f"{name}.journal_intent() entry fields",
    )
    _equal(list(storage.journal("j1")), [e1, e3], f"{name}.journal('j1') (in order)")
    storage.journal_done(e1.id, 20240301120005)
    journal = list(storage.journal("j1"))
    _equal(
        journal[0].done_at if journal else None,
        20240301120005,
        f"{name}.journal() done_at after journal_done()",
    )
    _equal(journal[1:], [e3], f"{name}.journal_done() must not touch other entries")
    _equal(list(storage.journal("j2")), [e2], f"{name}.journal('j2')")
    e4 = storage.journal_intent(
        "j2", "s9", 1, "INSERT INTO t VALUES (1)", 20240301120006, done_at=20240301120007
    )
    _equal(
        [(e.index, e.started_at, e.done_at) for e in storage.journal("j2")][1:],
        [(1, 20240301120006, 20240301120007)],
        f"{name}.journal_intent(done_at=...) must write the entry finished",
    )
    _expect(e4.id > e3.id, f"{name}.journal_intent(done_at=...) id {e4.id} after {e3.id}")


# --------------------------------------------------------------------------- lock


def check_lock(
    make_lock_pair: Callable[[ManualClock], tuple[Lock, Lock]], *, wait: float = 0.2
) -> None:
    """Check every guarantee of :class:`lupo_migrate.typing.Lock` against an implementation.

    Args:
        make_lock_pair: called with a :class:`ManualClock`, returns two handles on one new, free
            lock, as two processes would hold them (same ``name``, shared state, each stamping
            time from the given clock). Handles may be used from two threads, one each.
        wait: seconds used for the timeout checks; raise it for slow backends.

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (
        _lock_exclusive,
        _lock_released_on_exception,
        _lock_timeout,
        _lock_heartbeat,
    ):
        clock = ManualClock(_EPOCH)
        first, second = make_lock_pair(clock)
        check(first, second, clock, wait)


def _held_error(lock: Lock, owner: str, timeout: float, what: str) -> LockHeldError:
    def attempt() -> None:
        with lock.acquire(owner, timeout=timeout):
            raise AssertionError(f"{what}: the lock was granted")

    return _raises(LockHeldError, attempt, what)


def _lock_exclusive(a: Lock, b: Lock, clock: ManualClock, wait: float) -> None:
    name = type(a).__name__
    _equal(a.name, b.name, f"{name}: both handles name the same lock")
    _equal(a.holder(), None, f"{name}.holder() of a free lock")
    stamp = to_stamp(clock.now())
    with a.acquire("alice") as info:
        _equal(
            (info.name, info.owner, info.since, info.heartbeat),
            (a.name, "alice", stamp, stamp),
            f"{name}.acquire() LockInfo (name, owner, since, heartbeat from the clock)",
        )
        _equal(a.holder(), info, f"{name}.holder() on the acquiring handle")
        _equal(b.holder(), info, f"{name}.holder() on the other handle")
        clock.advance(timedelta(seconds=5))

        err = _held_error(b, "bob", 0.0, f"{name}.acquire() by bob while alice holds it")
        _equal((err.name, err.holder, err.since), (a.name, "alice", stamp), "LockHeldError facts")
        _expect(isinstance(err, TimeoutError), "LockHeldError must be a TimeoutError")
        _expect(isinstance(err, LockError), "LockHeldError must be a LockError")
        copy = pickle.loads(pickle.dumps(err))
        _equal(
            (type(copy), copy.name, copy.holder, copy.since, str(copy)),
            (type(err), err.name, err.holder, err.since, str(err)),
            "LockHeldError after a pickle round trip",
        )
        _held_error(b, "alice", 0.0, f"{name}.acquire() by the holder on the other handle")
        _held_error(a, "alice", 0.0, f"{name}.acquire() again by the holder (non-reentrant)")
        _equal(a.holder(), info, f"{name}.holder() after refused acquires")
    _equal(a.holder(), None, f"{name}.holder() after the with block")
    _equal(b.holder(), None, f"{name}.holder() on the other handle after the with block")
    with b.acquire("bob") as info:
        _equal(info.owner, "bob", f"{name}.acquire() by bob once alice let go")
        _equal(a.holder(), info, f"{name}.holder() while bob holds it")
    _equal(a.holder(), None, f"{name}.holder() at the end")


class _Boom(Exception):
    pass


def _lock_released_on_exception(a: Lock, b: Lock, clock: ManualClock, wait: float) -> None:
    name = type(a).__name__

    def fail_inside() -> None:
        with a.acquire("alice"):
            raise _Boom("inside")

    _raises(_Boom, fail_inside, f"{name}: an exception inside the with block must propagate")
    _equal(a.holder(), None, f"{name}.holder() after an exception in the with block")
    with b.acquire("bob") as info:
        _equal(info.owner, "bob", f"{name}.acquire() after an exception released the lock")


def _lock_timeout(a: Lock, b: Lock, clock: ManualClock, wait: float) -> None:
    name = type(a).__name__
    with a.acquire("alice"):
        started = time.monotonic()
        _held_error(b, "bob", wait, f"{name}.acquire(timeout={wait}) while alice holds it")
        elapsed = time.monotonic() - started
        _expect(
            elapsed >= wait * 0.9,
            f"{name}.acquire(timeout={wait}) gave up after {elapsed:.3f}s; it must wait",
        )
    # A holder letting go while someone waits: the waiter gets the lock.
    taken, go = threading.Event(), threading.Event()
    problems: list[BaseException] = []

    def hold_then_release() -> None:
        try:
            with a.acquire("alice"):
                taken.set()
                go.wait(10)
                time.sleep(wait / 4)
        except BaseException as exc:  # reported in the main thread
            problems.append(exc)
            taken.set()

    thread = threading.Thread(target=hold_then_release, daemon=True)
    thread.start()
    taken.wait(10)
    go.set()
    try:
        with b.acquire("bob", timeout=max(wait * 10, 2.0)) as info:
            _equal(info.owner, "bob", f"{name}.acquire() waiting for a holder to let go")
    except LockHeldError as exc:
        raise AssertionError(
            f"{name}.acquire(timeout=...) did not get the lock after its holder let go: {exc}"
        ) from exc
    finally:
        thread.join(10)
    if problems:
        raise AssertionError(f"{name}: the holding thread failed: {problems[0]!r}")


def _lock_heartbeat(a: Lock, b: Lock, clock: ManualClock, wait: float) -> None:
    name = type(a).__name__
    _raises(LockError, lambda: a.heartbeat("alice"), f"{name}.heartbeat() on a free lock")
    with a.acquire("alice") as info:
        clock.advance(timedelta(seconds=30))
        a.heartbeat("alice")
        beat = a.holder()
        _expect(beat is not None, f"{name}.holder() after heartbeat() is None")
        assert beat is not None  # for the type checker
        _equal(
            (beat.owner, beat.since, beat.heartbeat),
            (info.owner, info.since, to_stamp(clock.now())),
            f"{name}.holder() after heartbeat() (owner, since unchanged; heartbeat from clock)",
        )
        _equal(b.holder(), beat, f"{name}.holder() on the other handle after heartbeat()")
        _raises(
            LockError, lambda: b.heartbeat("bob"), f"{name}.heartbeat() by someone not holding it"
        )
        _equal(a.holder(), beat, f"{name}.holder() after a refused heartbeat()")
    _raises(LockError, lambda: a.heartbeat("alice"), f"{name}.heartbeat() after release")


# --------------------------------------------------------------------------- freeze


def check_freeze(make_freeze: Callable[[ManualClock], Freeze]) -> None:
    """Check every guarantee of :class:`lupo_migrate.typing.Freeze` against an implementation.

    Args:
        make_freeze: called with a :class:`ManualClock`, returns a new, thawed write gate that
            takes its time from that clock (expiry is judged by it).

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (_freeze_expires_by_clock, _freeze_thaw, _freeze_emergency_thaw):
        clock = ManualClock(_EPOCH)
        check(make_freeze(clock), clock)


def _freeze_expires_by_clock(gate: Freeze, clock: ManualClock) -> None:
    name = type(gate).__name__
    _equal(gate.status(), None, f"{name}.status() before any freeze")
    start = clock.now()
    info = gate.freeze("run-1", ttl=timedelta(minutes=10))
    _equal(
        (info.owner, info.since, info.expires),
        ("run-1", to_stamp(start), to_stamp(start + timedelta(minutes=10))),
        f"{name}.freeze() FreezeInfo (owner, since, expires from the clock)",
    )
    _equal(gate.status(), info, f"{name}.status() while frozen")
    clock.advance(timedelta(minutes=6))
    _equal(gate.status(), info, f"{name}.status() before the ttl passed")
    again = gate.freeze("run-1", ttl=timedelta(minutes=10))
    _equal(
        (again.owner, again.expires),
        ("run-1", to_stamp(clock.now() + timedelta(minutes=10))),
        f"{name}.freeze() again by the owner extends the expiry",
    )
    clock.advance(timedelta(minutes=6))
    _equal(gate.status(), again, f"{name}.status() after the first ttl, within the extension")
    clock.advance(timedelta(minutes=5))
    _equal(gate.status(), None, f"{name}.status() once the clock passed the expiry")
    later = gate.freeze("run-2", ttl=timedelta(minutes=1))
    _equal(later.owner, "run-2", f"{name}.freeze() by someone else after an expired freeze")
    _equal(gate.status(), later, f"{name}.status() after a new freeze")


def _freeze_thaw(gate: Freeze, clock: ManualClock) -> None:
    name = type(gate).__name__
    gate.thaw("nobody")  # nothing frozen: no error
    info = gate.freeze("run-1", ttl=timedelta(hours=1))
    gate.thaw("someone-else")
    _equal(gate.status(), info, f"{name}.thaw() by another owner must leave the freeze")
    gate.thaw("run-1")
    _equal(gate.status(), None, f"{name}.status() after thaw() by the owner")
    gate.thaw("run-1")  # already thawed: no error


def _freeze_emergency_thaw(gate: Freeze, clock: ManualClock) -> None:
    name = type(gate).__name__
    _equal(
        gate.emergency_thaw("ops", "nothing frozen"),
        None,
        f"{name}.emergency_thaw() with no freeze",
    )
    info = gate.freeze("run-1", ttl=timedelta(hours=1))
    lifted = gate.emergency_thaw("ops", "orchestrator host is gone")
    _equal(lifted, info, f"{name}.emergency_thaw() returns the freeze it lifted")
    _equal(gate.status(), None, f"{name}.status() after emergency_thaw()")
    info = gate.freeze("run-2", ttl=timedelta(seconds=30))
    clock.advance(timedelta(minutes=1))
    _equal(
        gate.emergency_thaw("ops", "late"),
        None,
        f"{name}.emergency_thaw() after the freeze expired lifts nothing",
    )


# --------------------------------------------------------------------------- queue


def check_queue(make_queue: Callable[[], RunQueue]) -> None:
    """Check every guarantee of :class:`lupo_migrate.typing.RunQueue` against an
    implementation.

    Args:
        make_queue: returns a new, empty storage with the queue methods each time.

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (_queue_round_trip, _queue_save_is_compare_and_set, _queue_filters):
        check(make_queue())


def _entry(target: str = "main", priority: int = 0, at: int = 20240301120000) -> QueueEntry:
    return QueueEntry.new(
        target,
        enqueued_at=at,
        enqueued_by="ops",
        priority=priority,
        upto="003_tags",
        steps=("001_users", "003_tags"),
    )


def _queue_round_trip(queue: RunQueue) -> None:
    name = type(queue).__name__
    first = queue.enqueue(_entry(priority=5))
    second = queue.enqueue(_entry(priority=-2))
    _expect(first.id > 0, f"{name}.enqueue() must give the entry an id > 0, got {first.id}")
    _expect(second.id > first.id, f"{name}.enqueue(): ids must grow ({first.id}, {second.id})")
    _equal(first, attrs.evolve(_entry(priority=5), id=first.id), f"{name}.enqueue() result")
    _equal(queue.queue_entry(first.id), first, f"{name}.queue_entry() of a new entry")
    _equal(queue.queue_entry(10**9), None, f"{name}.queue_entry() of an unknown id")
    done = attrs.evolve(
        first,
        status=QueueStatus.DONE,
        version=1,
        worker="host:1",
        claimed_at=20240301120005,
        finished_at=20240301120009,
        run_id="r1",
        outcome="completed",
        detail="-",
        attempts=1,
    )
    queue.save_entry(done, expected_version=0)
    _equal(queue.queue_entry(first.id), done, f"{name}.queue_entry() after save_entry()")


def _queue_save_is_compare_and_set(queue: RunQueue) -> None:
    name = type(queue).__name__
    entry = queue.enqueue(_entry())
    claimed = attrs.evolve(entry, status=QueueStatus.RUNNING, version=1, worker="a")
    queue.save_entry(claimed, expected_version=0)
    stale = attrs.evolve(entry, status=QueueStatus.RUNNING, version=1, worker="b")
    err = _raises(
        ConcurrentUpdateError,
        lambda: queue.save_entry(stale, expected_version=0),
        f"{name}.save_entry() with a stale version (a second claim of one entry)",
    )
    _equal((err.expected, err.found), (0, 1), "ConcurrentUpdateError (expected, found)")
    _equal(queue.queue_entry(entry.id), claimed, f"{name}: a refused save must change nothing")
    missing = attrs.evolve(entry, id=10**9)
    _raises(
        ConcurrentUpdateError,
        lambda: queue.save_entry(missing, expected_version=0),
        f"{name}.save_entry() of an entry never enqueued",
    )


def _queue_filters(queue: RunQueue) -> None:
    name = type(queue).__name__
    a = queue.enqueue(_entry("a"))
    b = queue.enqueue(_entry("b"))
    c = queue.enqueue(_entry("a"))
    queue.save_entry(attrs.evolve(c, status=QueueStatus.CANCELLED, version=1), expected_version=0)
    _equal(
        [e.id for e in queue.queue_entries()],
        [a.id, b.id, c.id],
        f"{name}.queue_entries() lists every entry by id",
    )
    _equal([e.id for e in queue.queue_entries("a")], [a.id, c.id], f"{name}.queue_entries('a')")
    _equal(
        [e.id for e in queue.queue_entries("a", active=True)],
        [a.id],
        f"{name}.queue_entries('a', active=True) leaves ended entries out",
    )


# --------------------------------------------------------------------------- ephemeral


def check_ephemeral(make_ephemeral: Callable[[ManualClock], Ephemeral]) -> None:
    """Check every guarantee of :class:`lupo_migrate.typing.Ephemeral` against an
    implementation.

    Args:
        make_ephemeral: called with a :class:`ManualClock`, returns a new, empty ephemeral
            store that takes its time from that clock.

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (_ephemeral_values, _ephemeral_leases, _ephemeral_jobs):
        clock = ManualClock(_EPOCH)
        check(make_ephemeral(clock), clock)


def _ephemeral_values(store: Ephemeral, clock: ManualClock) -> None:
    name = type(store).__name__
    for table in ("sessions", "cache", "temp_data"):
        _equal(store.get(table, "k"), None, f"{name}.get({table!r}) of nothing")
        expires = store.put(table, "k", "v1", ttl=timedelta(minutes=5))
        _equal(expires, to_stamp(clock.now() + timedelta(minutes=5)), f"{name}.put() expiry")
        store.put(table, "k", "v2", ttl=timedelta(minutes=5))
        _equal(store.get(table, "k"), "v2", f"{name}.get({table!r}) after put() replaced it")
    store.put("cache", "short", "x", ttl=timedelta(minutes=1))
    clock.advance(timedelta(minutes=2))
    _equal(store.get("cache", "short"), None, f"{name}.get() of an expired value")
    _equal(store.get("cache", "k"), "v2", f"{name}.get() of a value not expired yet")
    counts = store.purge()
    _equal(counts.get("cache"), 1, f"{name}.purge() count for cache (one value expired)")
    _equal(counts.get("sessions"), 0, f"{name}.purge() count for sessions (none expired)")
    clock.advance(timedelta(minutes=5))
    counts = store.purge()
    _equal(
        [counts.get(t) for t in ("sessions", "cache", "temp_data")],
        [1, 1, 1],
        f"{name}.purge() counts once every value expired",
    )
    _equal(sum(store.purge().values()), 0, f"{name}.purge() again deletes nothing")
    _raises(
        Exception,
        lambda: store.put("migration_batches", "k", "v", ttl=timedelta(minutes=1)),
        f"{name}.put() into a table that holds no values",
    )


def _ephemeral_leases(store: Ephemeral, clock: ManualClock) -> None:
    name = type(store).__name__
    _equal(store.lease("queue:t"), None, f"{name}.lease() of nothing")
    start = to_stamp(clock.now())
    lease = store.take("queue:t", "a", ttl=timedelta(minutes=1))
    _equal(
        (lease.owner, lease.since, lease.expires),
        ("a", start, to_stamp(clock.now() + timedelta(minutes=1))),
        f"{name}.take() Lease (owner, since, expires)",
    )
    err = _raises(
        LockHeldError,
        lambda: store.take("queue:t", "b", ttl=timedelta(minutes=1)),
        f"{name}.take() of a lease another owner holds",
    )
    _equal((err.holder, err.since), ("a", start), "LockHeldError (holder, since)")
    clock.advance(timedelta(seconds=40))
    again = store.take("queue:t", "a", ttl=timedelta(minutes=1))
    _equal(again.since, start, f"{name}.take() by the holder keeps since")
    clock.advance(timedelta(seconds=40))
    renewed = store.renew("queue:t", "a", ttl=timedelta(minutes=1))
    _equal(
        renewed.expires,
        to_stamp(clock.now() + timedelta(minutes=1)),
        f"{name}.renew() expiry",
    )
    _equal(store.lease("queue:t"), renewed, f"{name}.lease() while held")
    clock.advance(timedelta(minutes=2))
    _equal(store.lease("queue:t"), None, f"{name}.lease() once expired")
    _raises(LockError, lambda: store.renew("queue:t", "a", ttl=timedelta(minutes=1)), "renew")
    taken = store.take("queue:t", "b", ttl=timedelta(minutes=1))
    _equal(taken.owner, "b", f"{name}.take() of an expired lease by another owner")
    store.release("queue:t", "a")  # not the holder: nothing happens
    _equal(store.lease("queue:t"), taken, f"{name}.release() by another owner")
    store.release("queue:t", "b")
    _equal(store.lease("queue:t"), None, f"{name}.lease() after release()")
    store.take("queue:u", "c", ttl=timedelta(minutes=1))
    clock.advance(timedelta(minutes=2))
    _equal(store.purge().get("locks"), 1, f"{name}.purge() of an expired lease")
    _equal(store.take("queue:u", "d", ttl=timedelta(minutes=1)).owner, "d", "take after purge")


def _ephemeral_jobs(store: Ephemeral, clock: ManualClock) -> None:
    name = type(store).__name__
    now = to_stamp(clock.now())
    soon = to_stamp(clock.now() + timedelta(minutes=1))
    a = Job(entry_id=7, target="t", worker="w1", claimed_at=now, expires=soon)
    b = Job(entry_id=3, target="u", worker="w2", claimed_at=now, expires=soon)
    store.start_job(a)
    store.start_job(b)
    _equal(list(store.jobs()), [b, a], f"{name}.jobs() by entry id")
    _equal(list(store.jobs("t")), [a], f"{name}.jobs('t')")
    clock.advance(timedelta(seconds=50))
    _equal(store.renew_jobs("w1", ttl=timedelta(minutes=1)), 1, f"{name}.renew_jobs('w1')")
    clock.advance(timedelta(seconds=20))
    _equal(
        [j.entry_id for j in store.jobs()],
        [7],
        f"{name}.jobs(): the renewed job lives, the other expired",
    )
    _equal(store.purge().get("job_queue"), 1, f"{name}.purge() of the expired job")
    store.end_job(7)
    store.end_job(7)  # already gone: no error
    _equal(list(store.jobs()), [], f"{name}.jobs() after end_job()")


# --------------------------------------------------------------------------- strategies


def _names() -> SearchStrategy[str]:
    from hypothesis import strategies as st

    return st.text(alphabet="abcdefghij0123456789_", min_size=1, max_size=8)


def st_steps() -> SearchStrategy[Step]:
    """Steps with small ids, paths and dependencies (``meta`` left empty)."""
    from hypothesis import strategies as st

    return st.builds(
        Step,
        id=_names(),
        path=_names().map(lambda n: f"core/{n}.sql"),
        file_type=st.sampled_from(["doctrine", "module", "agent", "documentation"]),
        checksum=st.text(alphabet="0123456789abcdef", max_size=8),
        depends_on=st.lists(_names(), max_size=3, unique=True),
        version=st.text(alphabet="0123456789.", max_size=5),
        module=st.none() | _names(),
    )


def st_findings() -> SearchStrategy[Finding]:
    """Findings of any severity, with small texts and optional location, hint and kind."""
    from hypothesis import strategies as st

    small = st.text(max_size=12)
    return st.builds(
        Finding,
        severity=st.sampled_from(Severity),
        message=small,
        path=st.none() | _names().map(lambda n: f"core/{n}.sql"),
        line=st.none() | st.integers(min_value=1, max_value=10_000),
        hint=st.none() | small,
        code=st.text(alphabet="ABCDEFGHIJ0123456789", max_size=5),
        kind=st.none() | st.sampled_from(FailureKind),
        step_id=st.none() | _names(),
    )


def st_runs() -> SearchStrategy[Run]:
    """Runs in any phase; ``applied`` is a prefix of ``steps`` as in real runs."""
    from hypothesis import strategies as st

    @st.composite
    def runs(draw: Any) -> Run:
        steps = draw(st.lists(_names(), max_size=5, unique=True))
        applied = steps[: draw(st.integers(min_value=0, max_value=len(steps)))]
        rolls_back = draw(st.none() | _names())
        return Run(
            id=draw(_names()),
            target=draw(st.sampled_from(["default", "main", "reports"])),
            phase=draw(st.sampled_from(Phase)),
            steps=steps,
            applied=applied,
            in_flight=draw(st.none() | st.sampled_from(steps)) if steps else None,
            undo=list(reversed(applied)) if draw(st.booleans()) else (),
            outcome=draw(st.none() | st.sampled_from(Outcome)),
            blocked=draw(st.booleans()),
            classification=draw(st.none() | st.sampled_from(Classification)),
            failure=draw(
                st.none()
                | st.builds(
                    Failure,
                    kind=st.sampled_from(FailureKind),
                    message=st.text(max_size=12),
                    step_id=st.none() | _names(),
                    critical=st.booleans(),
                )
            ),
            findings=draw(st.lists(st_findings(), max_size=3)),
            pending=draw(st.lists(st.sampled_from(Classification), max_size=3)),
            holder=draw(st.none() | _names()),
            version=draw(st.integers(min_value=0, max_value=1_000)),
            rolls_back=rolls_back,
            rolls_back_scope=None
            if rolls_back is None
            else draw(st.none() | st.sampled_from(Classification)),
        )

    strategy: SearchStrategy[Run] = runs()
    return strategy
