"""The in-memory run lock (:class:`InMemoryLock` on an :class:`InMemoryLockTable`) and write
freeze (:class:`InMemoryFreeze`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import final

import attrs

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import InvalidArgumentError, LockError, LockHeldError
from lupo_migrate.core.model import FreezeInfo, LockInfo
from lupo_migrate.core.ports import Clock

#: How long a waiting ``acquire`` sleeps between two looks at the lock, at most (seconds).
_POLL_INTERVAL = 0.01


# --------------------------------------------------------------------------- lock


@final
@attrs.define
class InMemoryLockTable:
    """The shared state of in-memory locks: who holds which lock name.

    Give one table to several :class:`InMemoryLock` handles to make them contend, as two
    processes contend for one database lock.
    """

    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    #: lock name -> (holder, token of that acquisition)
    _held: dict[str, tuple[LockInfo, object]] = attrs.field(factory=dict, init=False)

    def try_take(self, name: str, owner: str, at: int) -> tuple[LockInfo, object] | LockInfo:
        """Take *name* for *owner* if free: ``(info, token)``; else the current holder."""
        with self._mutex:
            held = self._held.get(name)
            if held is not None:
                return held[0]
            taken = (LockInfo(name=name, owner=owner, since=at, heartbeat=at), object())
            self._held[name] = taken
            return taken

    def release(self, name: str, token: object) -> None:
        """Free *name* if it is still held by the acquisition *token* stands for."""
        with self._mutex:
            held = self._held.get(name)
            if held is not None and held[1] is token:
                del self._held[name]

    def holder(self, name: str) -> LockInfo | None:
        """Who holds *name*, or None."""
        with self._mutex:
            held = self._held.get(name)
            return None if held is None else held[0]

    def beat(self, name: str, owner: str, at: int) -> None:
        """Record a heartbeat of *owner* on *name*; ``LockError`` if it is not the holder."""
        with self._mutex:
            held = self._held.get(name)
            if held is None or held[0].owner != owner:
                who = "nobody" if held is None else repr(held[0].owner)
                raise LockError(
                    f"heartbeat on run lock {name!r} by {owner!r}, but it is held by {who}."
                    " The lock was lost: stop the run and let crash recovery take over."
                )
            self._held[name] = (attrs.evolve(held[0], heartbeat=at), held[1])

    def break_lock(self, name: str) -> LockInfo | None:
        """Free *name* whoever holds it (an operator override); returns who held it."""
        with self._mutex:
            held = self._held.pop(name, None)
            return None if held is None else held[0]


@final
@attrs.define
class InMemoryLock:
    """A non-reentrant run lock kept in memory.

    A second ``acquire`` while the lock is held fails even for the same owner: one run, one
    lock. Time stamps (``since``, ``heartbeat``) come from *clock*; waiting uses real time.

    Args:
        name: the lock name (one per target).
        clock: where stamps come from.
        table: shared state; handles built on the same table contend. A fresh one by default.
    """

    name: str
    clock: Clock = attrs.field(factory=SystemClock)
    table: InMemoryLockTable = attrs.field(factory=InMemoryLockTable, kw_only=True)

    def acquire(self, owner: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the lock for the ``with`` block; released on exit, also on an exception.

        Args:
            owner: who takes it (recorded as the holder).
            timeout: seconds to wait for a holder to let go, polling; 0 tries once.

        Raises:
            LockHeldError: someone (maybe *owner* itself) holds it after *timeout* seconds.
        """
        if not isinstance(owner, str) or not owner:
            raise InvalidArgumentError(f"a lock owner is a non-empty str, got {owner!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgumentError(f"timeout is seconds >= 0, got {timeout!r}.")
        return self._held(owner, float(timeout))

    @contextmanager
    def _held(self, owner: str, timeout: float) -> Iterator[LockInfo]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.table.try_take(self.name, owner, to_stamp(self.clock.now()))
            if isinstance(got, tuple):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeldError(self.name, got.owner, got.since)
            time.sleep(min(_POLL_INTERVAL, remaining))
        info, token = got
        try:
            yield info
        finally:
            self.table.release(self.name, token)

    def holder(self) -> LockInfo | None:
        """Who holds the lock now, or None when it is free."""
        return self.table.holder(self.name)

    def heartbeat(self, owner: str) -> None:
        """Record that *owner*, the holder, is alive; ``LockError`` if it is not the holder."""
        self.table.beat(self.name, owner, to_stamp(self.clock.now()))

    def break_lock(self) -> LockInfo | None:
        """Free the lock whoever holds it (crash repair by an operator); returns the holder."""
        return self.table.break_lock(self.name)


# --------------------------------------------------------------------------- freeze


@attrs.frozen(kw_only=True)
class FreezeOverride:
    """A record of an emergency thaw: who, why, when, and what freeze it lifted."""

    operator: str
    reason: str
    at: int
    lifted: FreezeInfo | None


@final
@attrs.define
class InMemoryFreeze:
    """The application write gate, kept in memory, expiring by the injected clock.

    One owner at a time: :meth:`freeze` by another owner while a freeze is active raises
    :class:`~lupo_migrate.core.errors.LockHeldError` (``name`` is ``"write freeze"``).

    Attributes:
        clock: where time comes from (expiry is judged by it).
        overrides: every emergency thaw, oldest first.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    overrides: list[FreezeOverride] = attrs.field(factory=list, init=False)
    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _current: FreezeInfo | None = attrs.field(default=None, init=False)

    def _active(self, now: int) -> FreezeInfo | None:
        current = self._current
        if current is not None and now >= current.expires:
            self._current = current = None
        return current

    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        """Block writes until :meth:`thaw` or until *ttl* passes; re-freezing extends it.

        Raises:
            InvalidArgumentError: *ttl* is not a positive timedelta.
            LockHeldError: another owner's freeze is active.
        """
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
        now = self.clock.now()
        stamp = to_stamp(now)
        with self._mutex:
            current = self._active(stamp)
            if current is not None and current.owner != owner:
                raise LockHeldError("write freeze", current.owner, current.since)
            since = stamp if current is None else current.since
            self._current = FreezeInfo(owner=owner, since=since, expires=to_stamp(now + ttl))
            return self._current

    def thaw(self, owner: str) -> None:
        """Lift *owner*'s freeze; no error if there is none (another owner's stays)."""
        with self._mutex:
            if self._current is not None and self._current.owner == owner:
                self._current = None

    def status(self) -> FreezeInfo | None:
        """The active (unexpired) freeze, or None."""
        stamp = to_stamp(self.clock.now())
        with self._mutex:
            return self._active(stamp)

    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        """Lift any freeze, recording who and why in :attr:`overrides`; returns what was lifted."""
        stamp = to_stamp(self.clock.now())
        with self._mutex:
            lifted = self._active(stamp)
            self._current = None
            self.overrides.append(
                FreezeOverride(operator=operator, reason=reason, at=stamp, lifted=lifted)
            )
            return lifted
