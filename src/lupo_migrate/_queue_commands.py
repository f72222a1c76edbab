"""The orchestrator's queue commands: enqueue, look at, cancel and drain queued runs.

Thin wrappers, a base class of :class:`~lupo_migrate._runner.Orchestrator` (which they are
part of): the queue's shell is :mod:`lupo_migrate._draining`, its decisions
:mod:`lupo_migrate._queue`. Apart from the runner so that it stays readable in one sitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from lupo_migrate._model import Step, StepId

if TYPE_CHECKING:
    from lupo_migrate._draining import DrainReport
    from lupo_migrate._queue import QueueEntry
    from lupo_migrate._runner import Orchestrator
    from lupo_migrate.typing import Ephemeral

__all__ = ["QueueCommands"]


class QueueCommands:
    """The queue commands of :class:`~lupo_migrate._runner.Orchestrator`."""

    __slots__ = ()

    @property
    def _orchestrator(self) -> Orchestrator:
        return cast("Orchestrator", self)  # the only subclass

    def enqueue(
        self,
        steps: Sequence[Step],
        *,
        priority: int = 0,
        upto: StepId | None = None,
        by: str = "operator",
    ) -> QueueEntry:
        """Queue a run of the pending steps (up to *upto*) on this target.

        The plan is checked now (an unknown *upto*, a cycle or an unknown dependency is
        refused) and computed again when the entry is drained. Higher *priority* runs first;
        within one priority the older entry.

        Raises:
            UnknownTargetError: *upto* names no step.
            InvalidArgumentError: *priority* is not a whole number within +-1,000,000.
            PlanError: the steps cannot be ordered.
        """
        from lupo_migrate import _draining

        return _draining.enqueue(self._orchestrator, steps, priority=priority, upto=upto, by=by)

    def queue(self, *, finished: bool = False) -> list[QueueEntry]:
        """This target's queue: the running entry, then the queued ones in the order they will
        run; with *finished*, the done and cancelled ones after them (oldest first)."""
        from lupo_migrate import _draining

        return _draining.entries(self._orchestrator, finished=finished)

    def cancel_queued(self, entry_id: int, *, by: str = "operator") -> QueueEntry:
        """Cancel a queued entry of this target.

        Raises:
            DecisionError: the entry is running (its run cannot be stopped from the queue) or
                already ended.
            InvalidArgumentError: this target has no such entry.
        """
        from lupo_migrate import _draining

        return _draining.cancel(self._orchestrator, entry_id, by=by)

    def drain(
        self,
        steps: Sequence[Step],
        *,
        ephemeral: Ephemeral,
        worker: str | None = None,
        limit: int | None = None,
        wait: float = 0.0,
        lease: timedelta = timedelta(seconds=60),
        keep_going: bool = False,
    ) -> DrainReport:
        """Run this target's queued entries one at a time, by priority then age.

        One drainer per target at a time: it holds the lease ``queue:<target>`` in the
        *ephemeral* ``locks`` table (renewed while it works). Each entry is claimed with a
        compare-and-set (never twice), recorded as a job in ``job_queue`` (renewed too) and
        run with :meth:`apply`; an entry a dead worker left running is queued again first.
        Draining stops when the queue is empty, after *limit* entries, when a run does not
        complete (unless *keep_going*), or when the target cannot run now (the entry then
        keeps its place). See ``lupo_migrate._draining``.

        Args:
            steps: the migration files, as for :meth:`apply`.
            ephemeral: the ephemeral schema every drainer of this target shares.
            worker: who drains (recorded; default: this orchestrator's owner).
            limit: the most entries to run (None: all).
            wait: seconds to wait for another drainer's lease.
            lease: how long the lease and job last unless renewed.
            keep_going: go on after a run that did not complete.

        Raises:
            LockHeldError: another drainer holds the lease after *wait* seconds.
        """
        from lupo_migrate import _draining

        return _draining.drain(
            self._orchestrator,
            steps,
            ephemeral=ephemeral,
            worker=worker,
            limit=limit,
            wait=wait,
            lease=lease,
            keep_going=keep_going,
        )
