"""The run lock and write freeze contracts: :func:`check_lock`, :func:`check_freeze`."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import LockError, LockHeldError
from lupo_migrate.core.ports import Freeze, Lock
from lupo_migrate.testing._common import _EPOCH, _equal, _expect, _raises

# --------------------------------------------------------------------------- lock


def check_lock(
    make_lock_pair: Callable[[ManualClock], tuple[Lock, Lock]], *, wait: float = 0.2
) -> None:
    """Check every guarantee of :class:`lupo_migrate.core.ports.Lock` against an implementation.

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
    """Check every guarantee of :class:`lupo_migrate.core.ports.Freeze` against an implementation.

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
