"""Starting runs (imperative shell): a new one (:func:`start`: record it, drive it from its
first event) or one whose process died (:func:`recover`: take it over from what storage and
the live schema say, see :mod:`lupo_migrate.run.recover`); both kept on course by
:func:`guarded` when the connection drops mid-statement: it rolls the run back from there,
on fresh connections, never sending the statement again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from lupo_migrate.core import state as sm
from lupo_migrate.core.errors import ConnectionLostError, DecisionError, InternalError
from lupo_migrate.core.model import FailureKind, Finding, Outcome, Plan, Run, Severity, Step, StepId
from lupo_migrate.run import drive, observers, undo
from lupo_migrate.run.recover import plan_of, take_over
from lupo_migrate.run.shared import RunResult

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = ["guarded", "recover", "start"]

logger = logging.getLogger("lupo_migrate")


def start(orch: Wiring, run: Run, plan: Plan, by_id: Mapping[StepId, Step]) -> Run:
    """Record a new run and drive it from its start, the run lock held."""
    orch._stop = None  # a stop asked of an earlier run is not this one's
    orch.storage.create_run(run)
    observers.started(orch, run, plan)
    run = guarded(
        orch,
        lambda: drive.drive(orch, run, sm.LockAcquired(orch.owner), plan, by_id),
        run.id,
        plan,
        by_id,
    )
    observers.run_ended(orch, run)
    return run


def guarded(
    orch: Wiring,
    drive: Callable[[], Run],
    run_id: str,
    plan: Plan,
    by_id: Mapping[StepId, Step],
) -> Run:
    """Drive a run; when the connection drops during a statement, look at what the
    storage and the live schema say and roll the run back from there (never sending the
    statement again), on fresh connections. Up to three drops; then the run is left for
    ``recover``."""
    for attempt in range(3):
        try:
            return drive()
        except ConnectionLostError as lost:
            logger.error("run %s: %s", run_id, lost)
            discard = getattr(orch.target, "discard", None)
            if discard is not None:
                discard()
            orch._pre = None
            stored = orch.storage.get_run(run_id)
            if stored is None or stored.ended or attempt == 2:
                raise
            why = Finding(
                severity=Severity.ERROR,
                message=f"run {run_id}: {lost}",
                path=lost.path,
                code="connection-lost",
                kind=FailureKind.STEP_FAILED_PARTWAY,
                step_id=lost.step_id,
            )
            drive = functools.partial(
                take_over,
                orch,
                stored,
                plan,
                by_id,
                operator="lupo_migrate",
                resume=False,
                note=why,
            )
    raise InternalError("unreachable")  # pragma: no cover


def recover(
    orch: Wiring, steps: Sequence[Step], *, operator: str = "operator", resume: bool = False
) -> RunResult:
    """:meth:`Orchestrator.recover <lupo_migrate.Orchestrator.recover>` (documented there)."""
    dead = orch.crashed()
    if dead is None:
        with orch.lock.acquire(orch.owner, timeout=orch.lock_timeout):
            orphan = drive.lift_orphan_freeze(orch)
        if orphan is not None:  # died after freezing, before its run was recorded
            return RunResult(run=None, plan=Plan())
        raise DecisionError(f"no run of target {orch.target_name} died; nothing to recover")
    plan, by_id = plan_of(orch, dead, steps, resume=resume)
    with ExitStack() as stack:
        drive.hold(orch, stack)  # the dead run's freeze is an orphan now
        stack.callback(orch._flush)
        stack.callback(undo.close_pre_images, orch)
        run = guarded(
            orch,
            lambda: take_over(orch, dead, plan, by_id, operator=operator, resume=resume),
            dead.id,
            plan,
            by_id,
        )
    return RunResult(
        run=run,
        plan=plan,
        applied=run.applied if run.outcome is Outcome.COMPLETED else (),
        findings=tuple(orch.storage.findings(run.id)),
    )
