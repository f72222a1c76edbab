"""The write freeze as a lease row, and a guard that makes a host engine honour it.

:class:`SqlAlchemyFreeze` keeps the freeze in the target's row of ``migration_system_state``
(``freeze_owner``, ``freeze_since``, ``freeze_expires``): a lease with an expiry, so an
orchestrator that dies while frozen cannot keep writes blocked for longer than its lease. One
owner at a time; the owner extends it by freezing again. An emergency thaw lifts any freeze
and is recorded in ``migration_alerts`` (level ``override``: who, why, what was lifted).

:func:`guard` makes a host application's SQLAlchemy engine refuse writes while a freeze is
active: every statement that is not a read raises ``WritesFrozenError``
before it is sent, so no write is lost silently: the application sees the error and can retry
after the thaw. What a statement does is decided by
:func:`lupo_migrate.sql.effects.effect`, not by its first word: leading comments (``--``,
``#``, ``/* */``) are skipped, MySQL executable comments (``/*! INSERT ... */``) are code,
``WITH ... INSERT/UPDATE/DELETE`` writes, every statement of a multi-statement text counts, and a
statement whose effect cannot be told from its text (``CALL``, ``EXECUTE``, PostgreSQL ``DO``,
anything not recognised) is refused too. Reads, session ``SET``, transaction control and locks
(``SELECT ... FOR UPDATE``, ``LOCK TABLES``) pass, and so does a ``SELECT`` of a function that
writes: the text does not say what a function does. Hosts that do not use SQLAlchemy read
:meth:`SqlAlchemyFreeze.status` (or the row) themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.backends.sqlalchemy._tables import ensure_state_row, make_tables
from lupo_migrate.core.clock import shown, to_stamp
from lupo_migrate.core.errors import InvalidArgumentError, LockHeldError, WritesFrozenError
from lupo_migrate.core.model import FreezeInfo
from lupo_migrate.core.ports import Clock, Freeze
from lupo_migrate.sql.effects import Effect, effect

__all__ = ["SqlAlchemyFreeze", "guard"]


class SqlAlchemyFreeze:
    """The ``Freeze`` protocol on the orchestration database.

    Args:
        engine: the orchestration database (where ``migration_system_state`` lives).
        target: the name runs are recorded under (one freeze per target).
        clock: where time comes from (expiry is judged by it).
        schema: the orchestration schema, when apart.
        leases: the ephemeral ``locks`` table (or a function making it ready, called at the
            first freeze or thaw), when it is reachable through *engine*: the freeze then
            also holds the lease ``freeze:<target>`` there, written in the same transaction
            as the row above (which stays what hosts read).
    """

    def __init__(
        self,
        engine: sa.Engine,
        target: str = "default",
        *,
        clock: Clock | None = None,
        schema: str | None = None,
        leases: sa.Table | Callable[[], sa.Table | None] | None = None,
    ) -> None:
        if not isinstance(engine, sa.Engine):
            raise InvalidArgumentError(f"SqlAlchemyFreeze needs an Engine, got {engine!r}.")
        self.engine = engine
        self.target = target
        self.clock: Clock = SystemClock() if clock is None else clock
        self.tables = make_tables(schema=schema)
        self.leases = leases
        self.lease_name = f"freeze:{target}"

    def _lease_table(self) -> sa.Table | None:
        """The ``locks`` table, made ready the first time it is needed (before the freeze's
        own transaction: its schema may have to be created first)."""
        if self.leases is not None and not isinstance(self.leases, sa.Table):
            self.leases = self.leases()
        return self.leases

    def _hold_lease(self, conn: sa.Connection, current: FreezeInfo | None) -> None:
        """The ephemeral ``locks`` row of the freeze, in the transaction that changed it:
        the write gate's lease among the other expiring leases (``purge`` clears it once
        expired); removed when *current* is None."""
        t = self.leases
        if not isinstance(t, sa.Table):
            return
        conn.execute(t.delete().where(t.c.name == self.lease_name))
        if current is not None:
            conn.execute(
                t.insert().values(
                    name=self.lease_name,
                    owner=current.owner,
                    since=current.since,
                    expires_at=current.expires,
                )
            )

    def __repr__(self) -> str:
        return f"SqlAlchemyFreeze(target={self.target!r})"

    def _row(self, conn: sa.Connection) -> FreezeInfo | None:
        t = self.tables.system_state
        row = conn.execute(
            sa.select(t.c.freeze_owner, t.c.freeze_since, t.c.freeze_expires).where(
                t.c.target == self.target
            )
        ).first()
        if row is None or row[0] is None:
            return None
        return FreezeInfo(owner=str(row[0]), since=int(row[1]), expires=int(row[2]))

    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        """Block writes until :meth:`thaw` or until *ttl* passes; re-freezing extends it.

        Raises:
            InvalidArgumentError: *ttl* is not a positive timedelta.
            LockHeldError: another owner's freeze is active (``name`` ``"write freeze"``).
        """
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
        self._lease_table()
        now = self.clock.now()
        stamp, expires = to_stamp(now), to_stamp(now + ttl)
        t = self.tables.system_state
        free = sa.or_(
            t.c.freeze_owner.is_(None), t.c.freeze_owner == owner, t.c.freeze_expires <= stamp
        )
        keep_since = sa.case(
            (sa.and_(t.c.freeze_owner == owner, t.c.freeze_expires > stamp), t.c.freeze_since),
            else_=stamp,
        )
        with self.engine.begin() as conn:
            ensure_state_row(conn, self.tables, self.target)
            taken = conn.execute(
                t.update()
                .where(t.c.target == self.target, free)
                .values(freeze_owner=owner, freeze_since=keep_since, freeze_expires=expires)
            ).rowcount
            current = self._row(conn)
            if taken and current is not None and current.owner == owner:
                self._hold_lease(conn, current)
        if not taken or current is None or current.owner != owner:
            holder = current.owner if current is not None else None
            raise LockHeldError("write freeze", holder, current.since if current else None)
        return current

    def thaw(self, owner: str) -> None:
        """Lift *owner*'s freeze; no error if there is none (another owner's stays)."""
        self._lease_table()
        t = self.tables.system_state
        with self.engine.begin() as conn:
            lifted = conn.execute(
                t.update()
                .where(t.c.target == self.target, t.c.freeze_owner == owner)
                .values(freeze_owner=None, freeze_since=None, freeze_expires=None)
            ).rowcount
            if lifted:
                self._hold_lease(conn, None)

    def status(self) -> FreezeInfo | None:
        """The active (unexpired) freeze, or None."""
        with self.engine.connect() as conn:
            current = self._row(conn)
        if current is None or to_stamp(self.clock.now()) >= current.expires:
            return None
        return current

    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        """Lift any freeze whoever holds it, recorded in ``migration_alerts``; returns what
        was lifted (None when nothing was frozen)."""
        self._lease_table()
        stamp = to_stamp(self.clock.now())
        t = self.tables.system_state
        with self.engine.begin() as conn:
            current = self._row(conn)
            lifted = current if current is not None and stamp < current.expires else None
            conn.execute(
                t.update()
                .where(t.c.target == self.target)
                .values(freeze_owner=None, freeze_since=None, freeze_expires=None)
            )
            self._hold_lease(conn, None)
            what = (
                f"the freeze of {lifted.owner} since {shown(lifted.since)}" if lifted else "nothing"
            )
            conn.execute(
                self.tables.alerts.insert().values(
                    run_id=None,
                    level="override",
                    message=f"emergency thaw of target {self.target} by {operator}: {reason}"
                    f" (lifted {what})",
                    created_at=stamp,
                )
            )
        return lifted


def guard(engine: sa.Engine, freeze: Freeze, *, cache: float = 0.0) -> None:
    """Make *engine* refuse writes while *freeze* is active.

    Every text the engine sends is classified first (see the module docstring); only one that
    is not a read consults *freeze*, so a read costs no query (its classification, remembered
    per text, about 0.2 µs). While frozen, a refused text is not sent at all: none of its
    statements runs.

    Args:
        engine: the host application's engine (any database).
        freeze: the gate to consult (a :class:`SqlAlchemyFreeze` on the orchestration
            database, or any ``Freeze``).
        cache: seconds a status read is reused (0: read before every write). A cache makes
            writes cheaper and lets through writes for up to that long after a freeze begins.

    Raises (from the engine's writes):
        WritesFrozenError: a write was attempted while frozen; nothing was sent.
    """
    if cache < 0:
        raise InvalidArgumentError(f"cache must be >= 0 seconds, got {cache!r}")
    seen: list[Any] = [0.0, None]  # (when read, what was read)
    dialect = engine.dialect.name
    read = Effect.READ

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _refuse_writes(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: Any
    ) -> tuple[str, Any]:
        if effect(statement, dialect=dialect) is not read:
            now = time.monotonic()
            if cache <= 0 or now - seen[0] > cache:
                seen[0], seen[1] = now, freeze.status()
            if seen[1] is not None:
                raise WritesFrozenError(seen[1].owner, seen[1].expires)
        return statement, parameters
