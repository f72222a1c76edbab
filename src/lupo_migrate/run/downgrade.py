"""Going back to a migration at any time, as Alembic's ``downgrade ID`` and Sqitch's ``revert
--to``: :func:`downgrade` (shell).

Unlike ``rollback RUN`` (a completed run's own changes, within its window, from what was kept
before it), a downgrade needs no window and no kept rows: it undoes the applied steps after
*to* (:func:`lupo_migrate.core.planner.downgrade_plan`), newest first, each by its down section,
its ``.down.sql`` twin or its derived inverse, as a run of its own (locked, writes frozen,
recorded in history, its steps' ledger rows removed). What it would lose comes first: the
rows of a table a down drops or empties, and the values of a column it drops, are counted
with writes frozen and before anything runs; any of them refuses the downgrade, naming what
and how many, unless the operator says they may go (``lose_data``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.decisions import ROLLED_BACK, is_open
from lupo_migrate.core.errors import DecisionError, LupoMigrateError
from lupo_migrate.core.model import Outcome, Plan, Run, Step, StepId
from lupo_migrate.core.planner import downgrade_plan
from lupo_migrate.run import checks, drive, launch
from lupo_migrate.run import undo as _undoing
from lupo_migrate.run.facts import inspect_step
from lupo_migrate.run.shared import Apply, RunResult, _family, _Rollback
from lupo_migrate.sql.lint import column_effects
from lupo_migrate.sql.touches import touches

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = ["DowngradePlan", "DowngradeResult", "downgrade", "plan_downgrade"]


class DowngradePlan:
    """What a downgrade to *to* would do: the steps undone (newest first), how, and what it
    would lose (table or column, and how many rows)."""

    def __init__(
        self,
        to: StepId,
        undo: Sequence[Step],
        statements: dict[StepId, tuple[str, ...]],
        losses: list[tuple[str, int]],
    ) -> None:
        self.to = to
        self.undo = tuple(undo)
        self.statements = statements
        self.losses = losses

    def loss_text(self) -> str:
        """The losses, as one line."""
        return ", ".join(f"{what} ({rows} row(s))" for what, rows in self.losses)


def _downs(orch: Wiring, step: Step) -> tuple[str, ...]:
    """The statements that undo *step* (down section, twin, derived inverse).

    Raises:
        DecisionError: the step has none (or is not a SQL step).
    """
    try:
        info = inspect_step(orch, step)
    except (LupoMigrateError, OSError, UnicodeDecodeError) as error:
        raise DecisionError(f"{step.path}: cannot read how to undo {step.id}: {error}") from None
    if info is None:
        raise DecisionError(
            f"{step.path}: {step.id} is a {step.file_type} step, whose undo records belong to"
            " the run that applied it: undo it with `lupo-migrate rollback RUN` within its"
            " window; a downgrade undoes SQL steps only"
        )
    if not info.invertible or info.down_source not in ("section", "twin", "derived"):
        why = "; ".join(getattr(info, "reasons", ())) or "no down section"
        raise DecisionError(
            f"{step.path}: {step.id} has no way back ({why}); give it a down section"
            " (-- lupo:down) or a .down.sql twin before downgrading past it"
        )
    return tuple(getattr(d, "text", str(d)) for d in info.down_statements)


def plan_downgrade(orch: Wiring, to: StepId, steps: Sequence[Step]) -> DowngradePlan:
    """What :func:`downgrade` would do, read now, touching nothing.

    Raises:
        DecisionError: *to* is not applied, a step to undo has no file or no way back.
    """
    applied = orch.storage.applied(orch.target_name)
    by_id = {step.id: step for step in steps}
    if to not in by_id:
        raise DecisionError(f"no migration {to!r} among the files; `lupo-migrate plan` lists them")
    if to not in applied:
        raise DecisionError(
            f"{to} is not applied, so there is nothing to go back to; `lupo-migrate status`"
            " lists what is applied (`apply --upto` goes forward)"
        )
    ids = downgrade_plan(steps, applied, to)
    gone = [sid for sid in ids if sid not in by_id]
    if gone:
        raise DecisionError(
            f"applied step(s) {', '.join(gone)} have no file any more, so they cannot be undone"
            " by their down; restore the files first"
        )
    undo = [by_id[sid] for sid in reversed(ids)]
    statements = {step.id: _downs(orch, step) for step in undo}
    family = _family(orch.target)
    core = orch.target.names.get("core")
    tables: dict[str, str] = {}  # table -> what is lost (the table, or a column of it)
    for step in undo:
        for sql in statements[step.id]:
            for touch in touches(sql, dialect=family):
                ours = touch.schema in (None, core)
                if touch.kind == "table" and touch.action == "drop" and ours:
                    tables[touch.name] = f"table {touch.name}"  # all of it: says the most
            for table, action, column, _new in column_effects(sql, family):
                if action == "drop":
                    tables.setdefault(table, f"column {table}.{column}")
            head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            if head in ("DELETE", "TRUNCATE") and " WHERE " not in f" {sql.upper()} ":
                for touch in touches(sql, dialect=family):
                    if touch.kind == "table":
                        tables.setdefault(touch.name, f"every row of {touch.name}")
    counts: dict[str, Any] = {}
    read_schema = getattr(orch.target, "fingerprint", None)
    read_rows = getattr(orch.target, "table_data", None)
    if tables and read_schema is not None and read_rows is not None:
        existing = [t for t in tables if f"table:{t}" in read_schema().objects]
        counts = dict(read_rows(existing)) if existing else {}
    losses = [
        (what, int(counts[table].rows))
        for table, what in tables.items()
        if table in counts and counts[table].rows
    ]
    return DowngradePlan(to, undo, statements, losses)


def downgrade(
    orch: Wiring,
    to: StepId,
    steps: Sequence[Step],
    *,
    apply: Apply,
    operator: str = "operator",
    lose_data: bool = False,
) -> RunResult:
    """Undo every applied step after *to* (see the module docstring); *apply* (the
    orchestrator's) applies again what a downgrade that stopped had undone.

    Raises:
        DecisionError: as :func:`plan_downgrade`, or the downgrade would lose rows or values
            (named, with how many) and *lose_data* is not set; nothing was touched.
        LockHeldError: another run holds the target.
    """
    with ExitStack() as stack:
        drive.hold(orch, stack)  # read what would be lost with writes frozen
        stack.callback(orch._flush)
        stack.callback(_undoing.close_pre_images, orch)
        stack.callback(setattr, orch, "_rolling", None)
        chosen = plan_downgrade(orch, to, steps)
        if not chosen.undo:
            return RunResult(run=None, plan=Plan(steps=()))
        if chosen.losses and not lose_data:
            raise DecisionError(
                f"downgrading to {to} would lose {chosen.loss_text()} written since; nothing"
                " was touched. Copy what you need first, then say so (--lose-data), or keep"
                " the steps applied"
            )
        applied_order = tuple(step.id for step in reversed(chosen.undo))
        plan = Plan(steps=tuple(reversed(chosen.undo)))
        # A run of its own whose "applied" steps are the ones to undo: the rollback
        # machinery then undoes them, newest first, by their downs.
        run = attrs.evolve(
            Run.new(uuid.uuid4().hex, plan, target=orch.target_name, started_by=operator),
            applied=applied_order,
        )
        orch._rolling = _Rollback(of=run, scope=None, operator=operator, downgrade=to)
        run = launch.start(orch, run, plan, {step.id: step for step in chosen.undo})
        stopped = run.outcome is Outcome.FAILED and not run.blocked  # nothing half-done
        # The schema as it ended is the next run's drift reference: all undone, or undone
        # as far as the down that failed.
        checks.record_schema(orch, run, when=run.outcome if stopped else Outcome.ROLLED_BACK)
        if run.outcome is Outcome.ROLLED_BACK or stopped:
            undone = [step_id for step_id in applied_order if step_id not in run.applied]
            _close_records(orch, undone, operator, run.id)
    findings = tuple(orch.storage.findings(run.id))
    if stopped:
        try:
            again = _apply_again(orch, apply, run, steps, operator)
        except LupoMigrateError as error:  # an edited file, a lock taken meanwhile...
            return DowngradeResult(run=run, plan=plan, findings=findings, refused=str(error))
        return DowngradeResult(run=run, plan=plan, findings=findings, again=again)
    return RunResult(run=run, plan=plan, findings=findings)


@attrs.frozen
class DowngradeResult(RunResult):
    """A downgrade that stopped at a down that failed, leaving nothing of it: *run* (failed,
    not blocked) and *again*, the ordinary run that applied once more the steps it had
    undone (None when it had undone none), so that the target is where the downgrade began
    unless *again* failed too (then it rolled back, and the target is where *run* stopped),
    or could not start (*refused* says why; the target is where *run* stopped)."""

    again: RunResult | None = None
    refused: str | None = None


def _apply_again(
    orch: Wiring, apply: Apply, run: Run, steps: Sequence[Step], operator: str
) -> RunResult | None:
    """Apply again, as a run of their own, the steps *run* undid before it stopped."""
    undone = set(run.steps) - set(run.applied)
    if not undone:
        return None
    wanted = undone | set(orch.storage.applied(orch.target_name))
    keep = orch.operator
    orch.operator = operator
    try:
        # Only the files applied before the downgrade: a file pending then stays pending.
        return apply([step for step in steps if step.id in wanted])
    finally:
        orch.operator = keep


def _close_records(orch: Wiring, undone: Sequence[StepId], operator: str, by: str) -> None:
    """The completed runs whose steps the downgrade undid can no longer be rolled back by
    their own records: those read rolled back (by this run)."""
    log = orch._decision_log
    if log is None:
        return
    now = to_stamp(orch.clock.now())
    gone = set(undone)
    for record in log.decisions():
        if is_open(record, now) and gone & set(record.scope):
            log.decide(
                record.id,
                status=ROLLED_BACK,
                operator=operator,
                at=now,
                detail=f"its steps were undone by downgrade run {by}",
            )
