"""``SqlAlchemyLock``: the run lock on MySQL/MariaDB, PostgreSQL or SQLite.

One class; the engine's dialect picks the mechanism:

- MySQL/MariaDB: ``GET_LOCK`` on a dedicated connection, detached from the engine's pool (it is
  closed, never returned, when the ``with`` block ends). The server-side name is
  ``<database>:<name>`` (lock names are server-wide, so the orchestration database is part of
  it), replaced by ``'lupo:' + sha1`` hex when longer than 64 characters.
- PostgreSQL: ``pg_try_advisory_lock`` on a dedicated connection, with a signed 64-bit key
  hashed from ``<schema>:<name>`` (advisory locks are per database already).
- SQLite: a lease in ``migration_system_state``, taken by a conditional ``UPDATE`` that is the
  first write of its transaction (the write lock is taken at once, as ``BEGIN IMMEDIATE``
  does; SQLite waits for it up to its busy timeout, 5 s unless the engine sets another). The
  lease expires ``lease_ttl`` after the last heartbeat, so a crashed holder's lease can be
  taken over; on SQLite an expired lease is free. The lease token starts with the holder
  process's mark (see ``lupo_migrate.backends.liveness``): on the machine it ran on, in the same
  boot and pid namespace, a holder whose process is gone frees the lease at once (``recover``
  right after a crash); from anywhere else the lease runs its course.

Waiting polls every ``poll_interval`` seconds until ``timeout``. Holder, token, since and
heartbeat are recorded in the target's ``migration_system_state`` row, so another process can
name the holder (``GET_LOCK`` and advisory locks only know a connection). On MySQL and
PostgreSQL the recorded token starts with the holding connection's id, and :meth:`holder`
believes the row only while the server says that connection holds the lock: a holder whose
connection died shows as free at once. The lock creates its tables when first used.

The server-side names and keys, and the probes of a lock connection, are
:mod:`lupo_migrate.backends.sqlalchemy._lock_server`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.backends.liveness import certainly_dead, mark, mark_of
from lupo_migrate.backends.sqlalchemy._creating import ensure_schema
from lupo_migrate.backends.sqlalchemy._lock_server import (
    PG_HOLDER,
    mysql_lock_name,
    postgresql_lock_key,
    quiet,
)
from lupo_migrate.backends.sqlalchemy._tables import describe, ensure_state_row, make_tables, reason
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import InvalidArgumentError, LockError, LockHeldError, StorageError
from lupo_migrate.core.model import LockInfo
from lupo_migrate.core.ports import Clock

__all__ = ["SqlAlchemyLock", "mysql_lock_name", "postgresql_lock_key"]

#: Seconds a refused taker keeps looking for the holder's name when the server says the lock
#: is taken but no holder is recorded yet (the instant between the grant and the record).
HOLDER_GRACE: Final = 0.5

_KINDS = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql", "sqlite": "sqlite"}


class SqlAlchemyLock:
    """A non-reentrant run lock kept by the database, holder and heartbeat recorded.

    Args:
        engine: the orchestration database (its dialect picks the mechanism, see the module).
        name: the lock name.
        target: the ``migration_system_state`` row recording the holder; *name* by default.
        clock: where ``since``/``heartbeat`` stamps (and SQLite lease expiry) come from.
        schema: physical schema of the orchestration tables.
        heartbeat_table: record holder and heartbeat in ``migration_system_state``. Required
            on SQLite (the row is the lock). Without it (MySQL/PostgreSQL only) no table is
            touched, :meth:`holder` knows only this handle's own hold and ``LockHeldError``
            cannot name the holder.
        lease_ttl: SQLite only: how long a lease lasts after its last heartbeat.
        poll_interval: seconds between two attempts while waiting.
        metadata: ``MetaData`` to define the tables on (a private one by default).
    """

    def __init__(
        self,
        engine: sa.Engine,
        name: str,
        *,
        target: str | None = None,
        clock: Clock | None = None,
        schema: str | None = None,
        heartbeat_table: bool = True,
        lease_ttl: timedelta = timedelta(seconds=60),
        poll_interval: float = 0.05,
        metadata: sa.MetaData | None = None,
    ) -> None:
        if not isinstance(engine, sa.Engine):
            raise InvalidArgumentError(
                f"SqlAlchemyLock needs an sqlalchemy Engine, got {engine!r}."
            )
        for what, value in (("name", name), ("target", name if target is None else target)):
            if not isinstance(value, str) or not 0 < len(value) <= 191:
                raise InvalidArgumentError(
                    f"a lock {what} is a str of 1 to 191 characters, got {value!r}."
                )
        kind = _KINDS.get(engine.dialect.name)
        if kind is None:
            raise InvalidArgumentError(
                f"no run lock for the {engine.dialect.name} dialect; use MySQL/MariaDB,"
                " PostgreSQL or SQLite for the orchestration database."
            )
        if kind == "sqlite" and not heartbeat_table:
            raise InvalidArgumentError("on SQLite the lock is a table row: heartbeat_table=True.")
        if not isinstance(lease_ttl, timedelta) or lease_ttl <= timedelta(0):
            raise InvalidArgumentError(
                f"lease_ttl must be a positive timedelta, got {lease_ttl!r}."
            )
        self.engine = engine
        self.name = name
        self.target = name if target is None else target
        self.clock: Clock = SystemClock() if clock is None else clock
        self.kind = kind
        self.heartbeat_table = heartbeat_table
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.tables = make_tables(metadata, schema=schema)
        self._holding: sa.Connection | None = None
        space = schema or engine.url.database or ""
        self.server_name = mysql_lock_name(f"{space}:{name}")
        self.server_key = postgresql_lock_key(f"{schema or ''}:{name}")
        self._ready = not heartbeat_table
        self._mutex = threading.Lock()
        self._own: LockInfo | None = None  # this handle's hold, when no table records it

    def __repr__(self) -> str:
        return f"SqlAlchemyLock({describe(self.engine)!r}, {self.name!r})"

    # ----------------------------------------------------------------------- plumbing

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sa.exc.DBAPIError, StorageError) as exc:
            raise LockError(
                f"run lock {self.name!r}: {what} failed on {describe(self.engine)}: {reason(exc)}."
                " Check the database is reachable."
            ) from exc

    def _ensure(self) -> None:
        if not self._ready:
            with self._mutex, self._guard("creating the orchestration tables"):
                ensure_schema(self.engine, self.tables, at=to_stamp(self.clock.now()))
                self._ready = True

    def _row(self, conn: sa.Connection) -> Any:
        t = self.tables.system_state
        return conn.execute(sa.select(t).where(t.c.target == self.target)).first()

    def _user(self, conn: sa.Connection) -> int | None:
        """The server connection id holding the server-side lock, or None when it is free."""
        if self.kind == "mysql":
            used = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": self.server_name})
            value = used.scalar()
        else:
            key = self.server_key
            params = {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}
            value = conn.execute(PG_HOLDER, params).scalar()
        return None if value is None else int(value)

    def _live(self, conn: sa.Connection, row: Any, now: int) -> bool:
        """Whether the recorded holder in *row* holds the lock now."""
        if row is None or row.lock_holder is None:
            return False
        if self.kind == "sqlite":
            leased = row.lock_expires is not None and now < int(row.lock_expires)
            return leased and not certainly_dead(mark_of(row.lock_token))
        user = self._user(conn)
        return user is not None and str(row.lock_token or "").startswith(f"{user}/")

    def _stamps(self, now: int) -> dict[str, Any]:
        return {
            "heartbeat": now,
            "lock_expires": self._expires() if self.kind == "sqlite" else None,
        }

    def _expires(self) -> int:
        return to_stamp(self.clock.now() + self.lease_ttl)

    def _clear(self, conn: sa.Connection, token: str) -> None:
        t = self.tables.system_state
        free = dict.fromkeys(
            ("lock_holder", "lock_token", "lock_since", "heartbeat", "lock_expires")
        )
        conn.execute(
            t.update().where(t.c.target == self.target, t.c.lock_token == token).values(free)
        )

    # ----------------------------------------------------------------------- protocol

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the lock for the ``with`` block; released on exit, also on an exception.

        Args:
            owner: who takes it (recorded as the holder).
            timeout: seconds to wait for a holder to let go, polling; 0 tries once.

        Raises:
            LockHeldError: someone (maybe *owner* itself) holds it after *timeout* seconds.
            LockError: the database failed.
        """
        if not isinstance(owner, str) or not owner:
            raise InvalidArgumentError(f"a lock owner is a non-empty str, got {owner!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgumentError(f"timeout is seconds >= 0, got {timeout!r}.")
        return self._hold(owner, float(timeout))

    @contextmanager
    def _hold(self, owner: str, timeout: float) -> Iterator[LockInfo]:
        self._ensure()
        deadline = time.monotonic() + timeout
        conn = None
        if self.kind != "sqlite":
            with self._guard("opening its dedicated connection"):
                conn = self.engine.execution_options(isolation_level="AUTOCOMMIT").connect()
                conn.detach()  # closed, never pooled, when the hold ends
        try:
            while True:
                taken = self._try(conn, owner)
                if taken is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = self._held_error()
                    late = -remaining > HOLDER_GRACE
                    if error.holder is not None or not self.heartbeat_table or late:
                        raise error
                    # Held, but by nobody recorded: the holder records itself just after the
                    # server grants the lock (or has just let go). Look again shortly rather
                    # than report "another process".
                    remaining = HOLDER_GRACE + remaining
                time.sleep(min(self.poll_interval, remaining))
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        info, token = taken
        self._holding = conn
        try:
            yield info
        except BaseException:
            self._holding = None
            self._release(conn, token, quiet=True)
            raise
        self._holding = None
        self._release(conn, token, quiet=False)

    def alive(self) -> bool:
        """Whether the hold this handle took is still there: its dedicated connection answers
        (a connection killed server-side took the lock with it). SQLite leases are checked
        by :meth:`heartbeat` instead.

        Free while nothing arrived on the idle connection's socket: the server sends nothing
        unasked, except when it closes the connection (a kill, a timeout, a shutdown). Only
        then is the connection asked (one round trip), which tells for sure."""
        conn = self._holding
        if conn is None:
            return self.kind == "sqlite"
        if quiet(conn):
            return True
        try:
            conn.exec_driver_sql("SELECT 1").scalar()
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def _try(self, conn: sa.Connection | None, owner: str) -> tuple[LockInfo, str] | None:
        now = to_stamp(self.clock.now())
        info = LockInfo(name=self.name, owner=owner, since=now, heartbeat=now)
        t = self.tables.system_state
        values = {"lock_name": self.name, "lock_holder": owner, "lock_since": now}
        values.update(self._stamps(now))
        with self._guard("taking the lock"):
            if conn is None:  # SQLite lease
                token = f"{mark()}/{uuid.uuid4().hex}"
                with self.engine.begin() as tx:
                    ensure_state_row(tx, self.tables, self.target)  # the write lock first
                    free = t.c.lock_holder.is_(None) | (t.c.lock_expires <= now)
                    row = self._row(tx)
                    held = row is not None and row.lock_holder is not None
                    if held and not self._live(tx, row, now):  # expired, or its process gone
                        free = free | (t.c.lock_token == row.lock_token)
                    take = t.update().where(t.c.target == self.target, free)
                    if tx.execute(take.values({**values, "lock_token": token})).rowcount != 1:
                        return None
                return info, token
            if self.kind == "mysql":
                sql = "SELECT GET_LOCK(:n, 0), CONNECTION_ID()"
                got, ident = conn.execute(sa.text(sql), {"n": self.server_name}).one()
            else:
                sql = "SELECT pg_try_advisory_lock(:k), pg_backend_pid()"
                got, ident = conn.execute(sa.text(sql), {"k": self.server_key}).one()
            if not got:
                return None
            token = f"{ident}/{uuid.uuid4().hex}"
            if self.heartbeat_table:
                ensure_state_row(conn, self.tables, self.target)
                take = t.update().where(t.c.target == self.target)
                conn.execute(take.values({**values, "lock_token": token}))
            else:
                self._own = info
        return info, token

    def _held_error(self) -> LockHeldError:
        held = self.holder() if self.heartbeat_table else None
        return LockHeldError(self.name, *((held.owner, held.since) if held else (None, None)))

    def _release(self, conn: sa.Connection | None, token: str, *, quiet: bool) -> None:
        try:
            with self._guard("releasing the lock"):
                if conn is None:
                    with self.engine.begin() as tx:
                        self._clear(tx, token)
                    return
                self._own = None
                try:
                    if self.heartbeat_table:
                        self._clear(conn, token)
                    if self.kind == "mysql":
                        unlock = "SELECT RELEASE_LOCK(:n)"
                        conn.execute(sa.text(unlock), {"n": self.server_name})
                    else:
                        conn.execute(
                            sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.server_key}
                        )
                except sa.exc.SQLAlchemyError:
                    pass  # connection lost: the server freed the lock with it; the row says so
                finally:
                    conn.close()
        except LockError:
            if not quiet:
                raise

    def holder(self) -> LockInfo | None:
        """Who holds the lock now, or None when it is free (or its lease expired, on SQLite).

        On MySQL/PostgreSQL, also None in the instant between the server granting the lock
        and the holder recording itself.
        """
        if not self.heartbeat_table:
            with self._guard("reading the holder"), self.engine.connect() as conn:
                return self._own if self._user(conn) is not None else None
        self._ensure()
        now = to_stamp(self.clock.now())
        with self._guard("reading the holder"), self.engine.connect() as conn:
            row = self._row(conn)
            if not self._live(conn, row, now):
                return None
        return LockInfo(
            name=self.name,
            owner=row.lock_holder,
            since=int(row.lock_since),
            heartbeat=int(row.heartbeat),
        )

    def heartbeat(self, owner: str) -> None:
        """Record that *owner*, the holder, is alive (and renew the SQLite lease).

        Raises:
            LockError: *owner* does not hold the lock (never did, released it, its connection
                died, or its lease expired).
        """
        now = to_stamp(self.clock.now())
        if not self.heartbeat_table:
            own = self._own
            if own is None or own.owner != owner:
                raise self._lost(owner, None)
            self._own = LockInfo(name=self.name, owner=owner, since=own.since, heartbeat=now)
            return
        self._ensure()
        t = self.tables.system_state
        with self._guard("recording a heartbeat"), self.engine.begin() as conn:
            if self.kind == "sqlite":
                ensure_state_row(conn, self.tables, self.target)  # take the write lock first
            row = self._row(conn)
            live = self._live(conn, row, now)
            if not live or row.lock_holder != owner:
                raise self._lost(owner, row.lock_holder if live else None)
            beat = t.update().where(t.c.target == self.target, t.c.lock_token == row.lock_token)
            conn.execute(beat.values(self._stamps(now)))

    def _lost(self, owner: str, holder: str | None) -> LockError:
        who = "nobody" if holder is None else repr(holder)
        return LockError(
            f"heartbeat on run lock {self.name!r} by {owner!r}, but it is held by {who}."
            " The lock was lost: stop the run and let crash recovery take over."
        )
