"""The optional protocols' contracts: :func:`check_queue` (run queue) and
:func:`check_ephemeral` (the ephemeral schema)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import attrs

from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import ConcurrentUpdateError, LockError, LockHeldError
from lupo_migrate.core.ports import Ephemeral, RunQueue
from lupo_migrate.core.queue import Job, QueueEntry, QueueStatus
from lupo_migrate.testing._common import _EPOCH, _equal, _expect, _raises

# --------------------------------------------------------------------------- queue


def check_queue(make_queue: Callable[[], RunQueue]) -> None:
    """Check every guarantee of :class:`lupo_migrate.core.ports.RunQueue` against an
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
    """Check every guarantee of :class:`lupo_migrate.core.ports.Ephemeral` against an
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
