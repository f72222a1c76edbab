"""The in-memory ephemeral schema: expiring values, leases, jobs, purge."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import final

import attrs

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import InvalidArgumentError, LockError, LockHeldError
from lupo_migrate.core.ports import Clock
from lupo_migrate.core.queue import Job, Lease
from lupo_migrate.core.tables import EPHEMERAL_TABLES

# --------------------------------------------------------------------------- ephemeral

#: The ephemeral tables holding named values (``put``/``get``).


def _check_table(table: str) -> None:
    if table not in EPHEMERAL_TABLES:
        raise InvalidArgumentError(
            f"{table!r} is not an ephemeral table for values; use one of"
            f" {', '.join(EPHEMERAL_TABLES)} (leases and jobs have methods of their own)."
        )


def _ttl(ttl: object) -> timedelta:
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
    return ttl


@final
@attrs.define
class InMemoryEphemeral:
    """The ephemeral schema in memory: values, leases and jobs that expire by *clock*.

    Expired rows read as absent at once and stay until :meth:`purge` removes them, as in a
    database.

    Args:
        clock: where time comes from (expiry is judged by it).
    """

    clock: Clock = attrs.field(factory=SystemClock)
    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _values: dict[str, dict[str, tuple[str, int]]] = attrs.field(
        factory=lambda: {t: {} for t in EPHEMERAL_TABLES}, init=False
    )
    _leases: dict[str, Lease] = attrs.field(factory=dict, init=False)
    _jobs: dict[int, Job] = attrs.field(factory=dict, init=False)

    def _now(self) -> int:
        return to_stamp(self.clock.now())

    def _until(self, ttl: timedelta) -> int:
        return to_stamp(self.clock.now() + _ttl(ttl))

    def put(self, table: str, name: str, value: str, *, ttl: timedelta) -> int:
        """Keep *value* under *name* in *table* for *ttl*; returns its expiry stamp."""
        _check_table(table)
        expires = self._until(ttl)
        with self._mutex:
            self._values[table][name] = (value, expires)
        return expires

    def get(self, table: str, name: str) -> str | None:
        """The unexpired value under *name* in *table*, or None."""
        _check_table(table)
        now = self._now()
        with self._mutex:
            found = self._values[table].get(name)
        return found[0] if found is not None and found[1] > now else None

    def take(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Take (or, holding it, renew) the lease *name*; ``LockHeldError`` if another owner
        holds it unexpired."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            held = self._leases.get(name)
            if held is not None and held.expires > now and held.owner != owner:
                raise LockHeldError(name, held.owner, held.since)
            live = held is not None and held.expires > now
            since = held.since if live and held is not None else now
            lease = Lease(name=name, owner=owner, since=since, expires=expires)
            self._leases[name] = lease
            return lease

    def renew(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Extend *owner*'s lease; ``LockError`` if it does not hold it any more."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            held = self._leases.get(name)
            if held is None or held.owner != owner or held.expires <= now:
                raise LockError(
                    f"lease {name!r} of {owner!r} was lost (it expired and was taken over or"
                    " purged); stop the work it guarded."
                )
            lease = attrs.evolve(held, expires=expires)
            self._leases[name] = lease
            return lease

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if *owner* holds it."""
        with self._mutex:
            held = self._leases.get(name)
            if held is not None and held.owner == owner:
                del self._leases[name]

    def lease(self, name: str) -> Lease | None:
        """The unexpired lease *name*, or None."""
        now = self._now()
        with self._mutex:
            held = self._leases.get(name)
        return held if held is not None and held.expires > now else None

    def start_job(self, job: Job) -> None:
        """Record that ``job.worker`` works on ``job.entry_id``."""
        with self._mutex:
            self._jobs[job.entry_id] = job

    def renew_jobs(self, worker: str, *, ttl: timedelta) -> int:
        """Extend every unexpired job of *worker*; returns how many."""
        now, expires = self._now(), self._until(ttl)
        with self._mutex:
            mine = [j for j in self._jobs.values() if j.worker == worker and j.expires > now]
            for job in mine:
                self._jobs[job.entry_id] = attrs.evolve(job, expires=expires)
            return len(mine)

    def end_job(self, entry_id: int) -> None:
        """Forget the job of *entry_id*."""
        with self._mutex:
            self._jobs.pop(entry_id, None)

    def jobs(self, target: str | None = None) -> Sequence[Job]:
        """The unexpired jobs (of *target*, or all), by entry id."""
        now = self._now()
        with self._mutex:
            return sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.expires > now and (target is None or j.target == target)
                ),
                key=lambda j: j.entry_id,
            )

    def purge(self) -> Mapping[str, int]:
        """Delete every row expired now; the number deleted per table."""
        now = self._now()
        counts: dict[str, int] = {}
        with self._mutex:
            for table, values in self._values.items():
                gone = [k for k, (_, expires) in values.items() if expires <= now]
                for key in gone:
                    del values[key]
                counts[table] = len(gone)
            jobs = [k for k, j in self._jobs.items() if j.expires <= now]
            for entry_id in jobs:
                del self._jobs[entry_id]
            counts["job_queue"] = len(jobs)
            leases = [k for k, lease in self._leases.items() if lease.expires <= now]
            for key in leases:
                del self._leases[key]
            counts["locks"] = len(leases)
        return counts
