"""Keeping a working run's run lock and write freeze alive (shell).

A run records its lock's heartbeat every ``HEARTBEAT`` seconds and extends its freeze's lease
once a third of it has gone: between steps, from the thread that drives the run, and during
long statements from a background thread. So a heartbeat older than a few periods means the
process stopped (hung, or its host is gone), never that it is busy in one long ALTER; and a
long statement does not outlive the freeze that keeps application writes away from it.

The thread never raises: when it finds the lock taken by someone else (or gone) it records
the loss, and the driving thread raises ``LockError`` at its next check, before another
statement runs. Failures it cannot tell from a loss (a busy SQLite file, a dropped
connection) are only logged; the next beat tries again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Final

import attrs

from lupo_migrate.core.errors import LockError, LupoMigrateError
from lupo_migrate.core.ports import Freeze, Lock

__all__ = ["HEARTBEAT", "KeepAlive"]

logger = logging.getLogger("lupo_migrate")

#: Seconds between two heartbeats of a working run's lock.
HEARTBEAT: Final = 10.0


@attrs.define
class KeepAlive:
    """The heartbeat and the lease renewals of one run, by *owner*.

    Args:
        lock: the run lock *owner* holds.
        freeze: the write gate *owner* froze.
        owner: the run's owner.
        ttl: the freeze's lease; renewed once a third of it has gone.
    """

    lock: Lock
    freeze: Freeze
    owner: str
    ttl: timedelta
    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _frozen_at: float | None = attrs.field(default=None, init=False)
    _beat_at: float = attrs.field(factory=time.monotonic, init=False)
    _lost: LockError | None = attrs.field(default=None, init=False)
    #: Called from the background thread too (a long statement makes no transitions): the
    #: escalation check. Must not raise; what it raises is logged.
    watch: Callable[[], None] | None = attrs.field(default=None, kw_only=True)

    def freeze_writes(self) -> None:
        """Freeze writes (or extend *owner*'s freeze) now."""
        with self._mutex:
            self._freeze()

    def thaw(self) -> None:
        """Lift *owner*'s freeze; the renewals stop with it."""
        with self._mutex:
            self.freeze.thaw(self.owner)
            self._frozen_at = None

    def tick(self) -> None:
        """Between steps: renew what is due.

        Raises:
            LockError: the lock is gone (found now, or by the background thread).
        """
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            self._renew()

    def _freeze(self) -> None:
        self.freeze.freeze(self.owner, ttl=self.ttl)
        self._frozen_at = time.monotonic()

    def _renew(self) -> None:
        now = time.monotonic()
        since = self._frozen_at
        if since is not None and now - since > self.ttl.total_seconds() / 3:
            self._freeze()
        if now - self._beat_at > HEARTBEAT:
            self.lock.heartbeat(self.owner)
            self._beat_at = now

    def _background_tick(self) -> None:
        with self._mutex:
            if self._lost is not None:
                return
            try:
                self._renew()
            except LockError as error:
                if self._is_lost():
                    self._lost = error
                    logger.error("the run lost its lock: %s", error)
                else:
                    logger.debug("heartbeat failed, trying again: %s", error)
            except (LupoMigrateError, OSError) as error:
                logger.debug("heartbeat or freeze renewal failed, trying again: %s", error)

    def _is_lost(self) -> bool:
        try:
            holder = self.lock.holder()
        except (LupoMigrateError, OSError):
            return False  # cannot tell: not a loss yet
        return holder is None or holder.owner != self.owner

    @contextlib.contextmanager
    def running(self, period: float = 1.0) -> Iterator[KeepAlive]:
        """Renew from a background thread every *period* seconds while the block runs."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(period):
                self._background_tick()
                if self.watch is not None:
                    try:
                        self.watch()
                    except Exception:  # observing never stops a run
                        logger.exception("the run's watch failed")

        thread = threading.Thread(target=loop, name=f"lupo-keepalive-{self.owner}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
