"""``SqlAlchemyEphemeral``: the ephemeral schema's five tables, whose rows expire.

========== ================================================================================
table      rows
========== ================================================================================
sessions   named values (``put``/``get``): hosts' sessions
cache      named values: hosts' caches
temp_data  named values: anything kept for a while
job_queue  the queue entries being worked on: entry, target, worker; renewed by the worker,
           so an entry whose worker died is told apart (its job expired)
locks      named leases (``take``/``renew``/``release``): ``queue:<target>`` is held by the
           one process draining that target's queue
========== ================================================================================

Every table has ``expires_at``, a BIGINT ``YYYYMMDDHHMMSS`` UTC stamp like every lupo_migrate
timestamp, indexed. An expired row reads as absent at once; :meth:`SqlAlchemyEphemeral.purge`
deletes it later (``lupo-migrate purge``). Purging is safe to run concurrently, with itself
and with everything else: each table is purged by ``DELETE ... WHERE expires_at <= :now``
(on MySQL/MariaDB in batches of :data:`PURGE_BATCH` rows, so no statement holds many row
locks), never by reading rows first and deleting them after; two purges delete each row at
most once between them, and a lease renewed meanwhile is no longer expired, so it stays.
Whoever takes an expired lease does not depend on the row being there either: a take is an
``UPDATE`` of an expired (or own) row, else an ``INSERT``.

The schema version is the ``locks`` row :data:`SCHEMA_LEASE` (it never expires).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final, TypeVar

import sqlalchemy as sa

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.backends.sqlalchemy._ephemeral_tables import (
    EphemeralTables,
    make_ephemeral_tables,
)
from lupo_migrate.backends.sqlalchemy._tables import describe, reason
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import InvalidArgumentError, LockError, LockHeldError, StorageError
from lupo_migrate.core.ports import Clock
from lupo_migrate.core.queue import Job, Lease
from lupo_migrate.core.tables import EPHEMERAL_TABLES

__all__ = [
    "EPHEMERAL_VERSION",
    "PURGE_BATCH",
    "SCHEMA_LEASE",
    "EphemeralTables",
    "SqlAlchemyEphemeral",
    "make_ephemeral_tables",
]

#: The layout of the ephemeral tables this code writes.
EPHEMERAL_VERSION: Final = 1
#: The ``locks`` row recording :data:`EPHEMERAL_VERSION` (owner ``lupo_migrate:<version>``).
SCHEMA_LEASE: Final = "__schema__"
#: Rows one purge statement deletes at most on MySQL/MariaDB.
PURGE_BATCH: Final = 1000
_NEVER: Final = 99991231235959
_CREATE_ATTEMPTS: Final = 10
#: Tries at a write that met a deadlock or a lock wait timeout (concurrent takers, purges).
_ATTEMPTS: Final = 6
#: Driver error codes that say "try again": MySQL deadlock and lock wait timeout, PostgreSQL
#: deadlock, serialization failure and lock timeout.
_TRANSIENT: Final = frozenset({1213, 1205, "40P01", "40001", "55P03"})

_T = TypeVar("_T")


def _transient(exc: BaseException | None) -> bool:
    """Whether *exc* (a driver error wrapped by SQLAlchemy) is worth another try."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    code = getattr(orig, "pgcode", None) or (getattr(orig, "args", None) or [None])[0]
    return code in _TRANSIENT or "database is locked" in str(orig)


def _ttl(ttl: object) -> timedelta:
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
    return ttl


class SqlAlchemyEphemeral:
    """The :class:`~lupo_migrate.core.ports.Ephemeral` protocol on a database.

    The constructor does no I/O; call :meth:`ensure_schema` once (idempotent, one query when
    the tables exist).

    Args:
        engine: the database holding the ephemeral schema.
        schema: its physical schema (MySQL database, PostgreSQL schema); None: the default.
        clock: where time comes from (expiry is judged by it).
        metadata: ``MetaData`` to define the tables on (a private one by default).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        metadata: sa.MetaData | None = None,
    ) -> None:
        if not isinstance(engine, sa.Engine):
            raise InvalidArgumentError(f"SqlAlchemyEphemeral needs an Engine, got {engine!r}.")
        self.engine = engine
        self.schema = schema
        self.clock: Clock = SystemClock() if clock is None else clock
        self.tables = make_ephemeral_tables(metadata, schema=schema)

    def __repr__(self) -> str:
        where = f", schema={self.schema!r}" if self.schema else ""
        return f"SqlAlchemyEphemeral({describe(self.engine)!r}{where})"

    # ----------------------------------------------------------------------- plumbing

    def _now(self) -> int:
        return to_stamp(self.clock.now())

    def _until(self, ttl: timedelta) -> int:
        return to_stamp(self.clock.now() + _ttl(ttl))

    @contextmanager
    def _tx(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StorageError(
                f"ephemeral {what} failed on {describe(self.engine)}: {reason(exc)}. Check the"
                " database is reachable and holds the ephemeral tables"
                " (SqlAlchemyEphemeral.ensure_schema())."
            ) from exc

    def _retried(self, call: Callable[[], _T]) -> _T:
        """*call* again (with a short pause) when it met a deadlock or a lock wait timeout:
        InnoDB reports one when concurrent takers insert and delete the same lease row."""
        for attempt in range(_ATTEMPTS):
            try:
                return call()
            except StorageError as exc:
                if attempt + 1 >= _ATTEMPTS or not _transient(exc.__cause__):
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _table(self, table: str) -> sa.Table:
        if table not in EPHEMERAL_TABLES:
            raise InvalidArgumentError(
                f"{table!r} is not an ephemeral table for values; use one of"
                f" {', '.join(EPHEMERAL_TABLES)} (leases and jobs have methods of their own)."
            )
        found: sa.Table = getattr(self.tables, table)
        return found

    def ensure_schema(self) -> int:
        """Create the missing ephemeral tables and record their version; returns it.

        Raises:
            StorageError: unreachable database, DDL refused, or a newer layout.
        """
        locks = self.tables.locks
        probe = sa.select(locks.c.owner).where(locks.c.name == SCHEMA_LEASE)
        attempt = 0
        while True:
            try:
                with self.engine.connect() as conn:
                    owner = conn.execute(probe).scalar_one_or_none()
                if owner is not None:
                    break
            except sa.exc.DBAPIError:
                pass  # no table yet
            try:
                with self.engine.begin() as conn:
                    self.tables.metadata.create_all(conn, tables=list(self.tables.all))
                    row: dict[str, Any] = {
                        "name": SCHEMA_LEASE,
                        "owner": f"lupo_migrate:{EPHEMERAL_VERSION}",
                        "since": self._now(),
                        "expires_at": _NEVER,
                    }
                    conn.execute(locks.insert().values(row))
            except sa.exc.SQLAlchemyError as exc:
                attempt += 1  # another process may be creating them: look again
                if attempt >= _CREATE_ATTEMPTS:
                    raise StorageError(
                        f"cannot create the ephemeral tables in {describe(self.engine)}"
                        f"{f' (schema {self.schema})' if self.schema else ''}: {reason(exc)}."
                        " Check the user may create tables there."
                    ) from exc
                time.sleep(0.05 * attempt)
        version = int(str(owner).rpartition(":")[2] or 0)
        if version > EPHEMERAL_VERSION:
            raise StorageError(
                f"the ephemeral tables in {describe(self.engine)} are version {version}, newer"
                f" than version {EPHEMERAL_VERSION} which this lupo_migrate understands."
                " Upgrade lupo_migrate."
            )
        return version

    # ----------------------------------------------------------------------- values

    def put(self, table: str, name: str, value: str, *, ttl: timedelta) -> int:
        """Keep *value* under *name* in ``sessions``, ``cache`` or ``temp_data`` for *ttl*
        (replacing what was there); returns its expiry stamp."""
        return self._retried(lambda: self._put(table, name, value, ttl=ttl))

    def _put(self, table: str, name: str, value: str, *, ttl: timedelta) -> int:
        t = self._table(table)
        now, expires = self._now(), self._until(ttl)
        with self._tx(f"put({table!r}, {name!r})") as conn:
            change = t.update().where(t.c.name == name)
            done = conn.execute(change.values(value=value, created_at=now, expires_at=expires))
            if not done.rowcount:
                row = {"name": name, "value": value, "created_at": now, "expires_at": expires}
                conn.execute(t.insert().values(row))
        return expires

    def get(self, table: str, name: str) -> str | None:
        """The unexpired value under *name* in *table*, or None."""
        t = self._table(table)
        query = sa.select(t.c.value).where(t.c.name == name, t.c.expires_at > self._now())
        with self._tx(f"get({table!r}, {name!r})") as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else str(found)

    # ----------------------------------------------------------------------- leases

    def _lease(self, conn: sa.Connection, name: str) -> Lease | None:
        t = self.tables.locks
        row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            return None
        return Lease(name=name, owner=row.owner, since=int(row.since), expires=int(row.expires_at))

    def take(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Take the lease *name* for *ttl*, or renew it if *owner* holds it.

        Raises:
            LockHeldError: another owner holds it, unexpired.
        """
        return self._retried(lambda: self._take(name, owner, ttl=ttl))

    def _take(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        if name == SCHEMA_LEASE:
            raise InvalidArgumentError(f"{SCHEMA_LEASE!r} is the schema version's row.")
        t = self.tables.locks
        now, expires = self._now(), self._until(ttl)
        own_live = sa.and_(t.c.owner == owner, t.c.expires_at > now)
        since = sa.case((own_live, t.c.since), else_=now)
        free = sa.or_(t.c.expires_at <= now, t.c.owner == owner)
        take = t.update().where(t.c.name == name, free)
        with self._tx(f"take({name!r})") as conn:
            taken = conn.execute(take.values(owner=owner, since=since, expires_at=expires))
            if taken.rowcount:
                lease = self._lease(conn, name)
                if lease is not None and lease.owner == owner:
                    return lease
        try:
            row = {"name": name, "owner": owner, "since": now, "expires_at": expires}
            with self.engine.begin() as conn:
                conn.execute(t.insert().values(row))
            return Lease(name=name, owner=owner, since=now, expires=expires)
        except sa.exc.IntegrityError:
            pass  # someone holds it (or just took it)
        except sa.exc.DBAPIError as exc:
            raise StorageError(
                f"ephemeral take({name!r}) failed on {describe(self.engine)}: {reason(exc)}."
            ) from exc
        with self._tx(f"take({name!r})") as conn:
            held = self._lease(conn, name)
        raise LockHeldError(name, held.owner if held else None, held.since if held else None)

    def renew(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        """Extend *owner*'s lease by *ttl* from now.

        Raises:
            LockError: *owner* does not hold it any more.
        """
        return self._retried(lambda: self._renew(name, owner, ttl=ttl))

    def _renew(self, name: str, owner: str, *, ttl: timedelta) -> Lease:
        t = self.tables.locks
        now, expires = self._now(), self._until(ttl)
        mine = t.update().where(t.c.name == name, t.c.owner == owner, t.c.expires_at > now)
        with self._tx(f"renew({name!r})") as conn:
            if conn.execute(mine.values(expires_at=expires)).rowcount:
                lease = self._lease(conn, name)
                if lease is not None:
                    return lease
        raise LockError(
            f"lease {name!r} of {owner!r} was lost (it expired and was taken over or purged);"
            " stop the work it guarded."
        )

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if *owner* holds it; no error otherwise."""
        return self._retried(lambda: self._release(name, owner))

    def _release(self, name: str, owner: str) -> None:
        t = self.tables.locks
        with self._tx(f"release({name!r})") as conn:
            conn.execute(t.delete().where(t.c.name == name, t.c.owner == owner))

    def lease(self, name: str) -> Lease | None:
        """The unexpired lease *name*, or None."""
        with self._tx(f"lease({name!r})") as conn:
            held = self._lease(conn, name)
        return held if held is not None and held.expires > self._now() else None

    # ----------------------------------------------------------------------- jobs

    def start_job(self, job: Job) -> None:
        """Record that ``job.worker`` works on queue entry ``job.entry_id``."""
        return self._retried(lambda: self._start_job(job))

    def _start_job(self, job: Job) -> None:
        t = self.tables.job_queue
        row = {
            "entry_id": job.entry_id,
            "target": job.target,
            "worker": job.worker,
            "claimed_at": job.claimed_at,
            "expires_at": job.expires,
        }
        with self._tx(f"start_job({job.entry_id})") as conn:
            conn.execute(t.delete().where(t.c.entry_id == job.entry_id))
            conn.execute(t.insert().values(row))

    def renew_jobs(self, worker: str, *, ttl: timedelta) -> int:
        """Extend every unexpired job of *worker* by *ttl* from now; returns how many."""
        return self._retried(lambda: self._renew_jobs(worker, ttl=ttl))

    def _renew_jobs(self, worker: str, *, ttl: timedelta) -> int:
        t = self.tables.job_queue
        now, expires = self._now(), self._until(ttl)
        mine = t.update().where(t.c.worker == worker, t.c.expires_at > now)
        with self._tx("renew_jobs()") as conn:
            return int(conn.execute(mine.values(expires_at=expires)).rowcount)

    def end_job(self, entry_id: int) -> None:
        """Forget the job of *entry_id*; no error if there is none."""
        return self._retried(lambda: self._end_job(entry_id))

    def _end_job(self, entry_id: int) -> None:
        t = self.tables.job_queue
        with self._tx(f"end_job({entry_id})") as conn:
            conn.execute(t.delete().where(t.c.entry_id == entry_id))

    def jobs(self, target: str | None = None) -> Sequence[Job]:
        """The unexpired jobs (of *target*, or all), by entry id."""
        t = self.tables.job_queue
        query = sa.select(t).where(t.c.expires_at > self._now()).order_by(t.c.entry_id)
        if target is not None:
            query = query.where(t.c.target == target)
        with self._tx("jobs()") as conn:
            rows = conn.execute(query).all()
        return [
            Job(
                entry_id=int(r.entry_id),
                target=r.target,
                worker=r.worker,
                claimed_at=int(r.claimed_at),
                expires=int(r.expires_at),
            )
            for r in rows
        ]

    # ----------------------------------------------------------------------- purge

    def purge(self) -> Mapping[str, int]:
        """Delete every row expired now; returns the number deleted per table.

        Safe to run concurrently (see the module docstring): one ``DELETE`` by expiry per
        table (batches on MySQL/MariaDB), each in its own transaction.
        """
        now = self._now()
        batched = self.engine.dialect.name == "mysql"
        counts: dict[str, int] = {}
        for table in self.tables.all:
            expired = table.delete().where(table.c.expires_at <= now)
            total = 0
            statement: Any = expired.with_dialect_options(mysql_limit=PURGE_BATCH)
            batch = functools.partial(self._delete, table.name, statement if batched else expired)
            while True:
                deleted = self._retried(batch)
                total += deleted
                if not batched or deleted < PURGE_BATCH:
                    break
            counts[table.name] = total
        return counts

    def _delete(self, name: str, statement: Any) -> int:
        with self._tx(f"purge of {name}") as conn:
            return int(conn.execute(statement).rowcount)
