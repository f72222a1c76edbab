"""The orchestrator's own tables: the plan, alerts, rollback decisions and the target's state.

Part of :class:`~lupo_migrate.backends.sqlalchemy.storage.SqlAlchemyStorage` (mixed into it): the
plan (``migration_dependencies``), alerts (``migration_alerts``), the rollback log with the
operators' decisions (``migration_rollback_log``), and per target its phase, current run and
schema fingerprint (``migration_system_state``). Apart because none of it is the ``Storage``
protocol: these are records the orchestrator and operators keep beside the runs, written with
plain Core statements, never on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _codec as codec
from lupo_migrate.backends.sqlalchemy._storage_base import StorageBase
from lupo_migrate.backends.sqlalchemy._tables import ensure_state_row
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.model import Phase, RunId, Step, StepId

__all__ = ["OrchestratorMixin"]


class OrchestratorMixin(StorageBase):
    """The plan, alert, rollback-log and system-state methods of ``SqlAlchemyStorage``."""

    # ----------------------------------------------------------------------- plan, alerts

    def record_plan(self, run_id: RunId, steps: Sequence[Step]) -> None:
        """Write a run's plan to ``migration_dependencies`` (replacing any earlier one).

        One row per dependency edge, and one with ``depends_on`` NULL for a step without
        dependencies, so the rows hold every step in plan order (``position``).
        """
        t = self.tables.dependencies
        rows = [
            {"run_id": run_id, "position": pos, "step_id": step.id, "depends_on": dep}
            for pos, step in enumerate(steps)
            for dep in (step.depends_on or (None,))
        ]
        with self._tx(f"record_plan({run_id!r})") as conn:
            conn.execute(t.delete().where(t.c.run_id == run_id))
            for row in rows:
                conn.execute(t.insert().values(row))

    def planned(self, run_id: RunId) -> Mapping[StepId, tuple[StepId, ...]]:
        """The plan :meth:`record_plan` wrote: step id -> its dependencies, in plan order."""
        t = self.tables.dependencies
        query = sa.select(t).where(t.c.run_id == run_id).order_by(t.c.position, t.c.id)
        rows = self._rows(f"planned({run_id!r})", query)
        plan: dict[StepId, tuple[StepId, ...]] = {}
        for row in rows:
            edge = () if row.depends_on is None else (row.depends_on,)
            plan[row.step_id] = plan.get(row.step_id, ()) + edge
        return plan

    def record_alert(self, run_id: RunId | None, level: str, message: str, at: int) -> codec.Alert:
        """Add an alert (``level``: info, warning, critical...); returns it with its id.

        An ``info`` alert is news, with nothing for anyone to do: it is recorded resolved, so
        open alerts are only those that ask for attention.
        """
        resolved = at if level == "info" else None
        values = {
            "run_id": run_id,
            "level": level,
            "message": message,
            "created_at": at,
            "resolved_at": resolved,
        }
        with self._tx("record_alert()") as conn:
            alert_id = codec.new_id(conn.execute(self.tables.alerts.insert().values(values)))
        return codec.Alert(
            id=alert_id,
            run_id=run_id,
            level=level,
            message=message,
            created_at=at,
            resolved_at=resolved,
        )

    def alerts(self, run_id: RunId | None = None, *, unresolved: bool = False) -> list[codec.Alert]:
        """Alerts (of *run_id*, or all; only unresolved ones if asked), oldest first."""
        t = self.tables.alerts
        query = self._of_run(t, run_id)
        if unresolved:
            query = query.where(t.c.resolved_at.is_(None))
        return [codec.alert_from_row(row) for row in self._rows("alerts()", query)]

    def close_alert(self, alert_id: int, at: int, *, resolved: bool = True) -> None:
        """Mark an alert resolved (or only acknowledged, with ``resolved=False``)."""
        t = self.tables.alerts
        column = "resolved_at" if resolved else "acknowledged_at"
        self._change(
            f"close_alert({alert_id})", t.update().where(t.c.id == alert_id).values({column: at})
        )

    # ----------------------------------------------------------------------- rollback log

    def record_decision(self, decision: codec.RollbackDecision) -> codec.RollbackDecision:
        """Add *decision* to ``migration_rollback_log``; returns it with the id given to it."""
        insert = self.tables.rollback_log.insert().values(codec.decision_to_row(decision))
        with self._tx(f"record_decision({decision.run_id!r})") as conn:
            return attrs.evolve(decision, id=codec.new_id(conn.execute(insert)))

    def decide(
        self, decision_id: int, *, status: str, operator: str, at: int, detail: str | None = None
    ) -> None:
        """Record an operator's decision on a rollback-log row (``StorageError`` if absent)."""
        t = self.tables.rollback_log
        values: dict[str, Any] = {"status": status, "decided_by": operator, "decided_at": at}
        if detail is not None:
            values["detail"] = detail
        if not self._change(
            f"decide({decision_id})", t.update().where(t.c.id == decision_id).values(values)
        ):
            raise StorageError(f"migration_rollback_log: no decision {decision_id}.")

    def decisions(self, run_id: RunId | None = None) -> list[codec.RollbackDecision]:
        """Rollback-log rows (of *run_id*, or all), oldest first."""
        query = self._of_run(self.tables.rollback_log, run_id)
        return [codec.decision_from_row(row) for row in self._rows("decisions()", query)]

    # ----------------------------------------------------------------------- system state

    def system_state(self, target: str) -> codec.SystemState | None:
        """The ``migration_system_state`` row of *target* (phase, lock, freeze), or None."""
        t = self.tables.system_state
        rows = self._rows(f"system_state({target!r})", sa.select(t).where(t.c.target == target))
        return codec.state_from_row(rows[0]) if rows else None

    def set_phase(self, target: str, phase: Phase | None, run_id: RunId | None, at: int) -> None:
        """Record *target*'s phase and current run (None, None when no run works on it)."""
        t = self.tables.system_state
        values = {"phase": None if phase is None else Phase(phase).value, "run_id": run_id}
        with self._tx(f"set_phase({target!r})") as conn:
            ensure_state_row(conn, self.tables, target)
            conn.execute(
                t.update().where(t.c.target == target).values({**values, "updated_at": at})
            )

    def record_fingerprint(self, target: str, text: str, at: int) -> None:
        """Keep *target*'s schema fingerprint (JSON) as a run left it: the drift reference."""
        t = self.tables.system_state
        with self._tx(f"record_fingerprint({target!r})") as conn:
            ensure_state_row(conn, self.tables, target)
            conn.execute(
                t.update().where(t.c.target == target).values(fingerprint=text, updated_at=at)
            )

    def fingerprint(self, target: str) -> str | None:
        """The fingerprint :meth:`record_fingerprint` kept for *target*, or None."""
        t = self.tables.system_state
        rows = self._rows(
            f"fingerprint({target!r})", sa.select(t.c.fingerprint).where(t.c.target == target)
        )
        return None if not rows or rows[0][0] is None else str(rows[0][0])
