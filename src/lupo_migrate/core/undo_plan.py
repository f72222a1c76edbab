"""What rolling back a completed run would do, as values: read before anything is touched.

A completed run's rollback undoes the run's own changes and keeps everything the application
wrote since (DESIGN.md, "Rollback classification"). Before it touches anything, the target's
pre-images say, for the run (:class:`RollbackPreview`): which rows of the run go back, which
tables keep the application's rows, which rows the application changed again since the run
(:class:`RowConflict`), what the rollback would destroy that the run did not make (rows written
since into a table the run created), and what changed its definition since (then the rollback
cannot be carried out as the run's inverse and is refused).

Pure: values and the policy that decides whether a rollback may go on (:func:`refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["CONFLICT_POLICIES", "RollbackPreview", "RowConflict", "StepUndo", "refusal"]

#: What an operator may say about conflicts: ``keep`` the application's version of each
#: conflicting row (the run's change to it stays), or ``undo`` the run's change anyway (the
#: application's later change to that row is lost).
CONFLICT_POLICIES: Final = ("keep", "undo")


@attrs.frozen
class RowConflict:
    """A row the run changed that the application changed again since.

    Attributes:
        table: the table's name.
        key: the row's key values, as text.
        before: the row before the run (None: the run inserted it).
        after: the row as the run left it (None: the run deleted it).
        now: the row now (None: it is gone).
    """

    table: str
    key: tuple[str, ...]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    now: Mapping[str, Any] | None

    def __str__(self) -> str:
        return (
            f"{self.table} [{', '.join(self.key)}]: before the run {_show(self.before)};"
            f" after it {_show(self.after)}; now {_show(self.now)}"
        )


def _show(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "(no row)"
    return "(" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + ")"


@attrs.frozen
class StepUndo:
    """One step of the run and how it is undone.

    Attributes:
        step_id: the step.
        source: ``down section``, ``down twin``, ``derived inverse``, ``pre-images`` or
            ``handler`` (its handler's own rollback).
        statements: the undo statements, when they are known beforehand.
    """

    step_id: str
    source: str
    statements: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RollbackPreview:
    """What rolling back a completed run would do.

    Attributes:
        run_id: the run rolled back.
        steps: its steps to undo, newest first.
        undo: per table, the run's rows that go back: ``inserted``, ``changed``, ``deleted``
            (and ``kept``: conflicts marked to stay as they are now).
        kept: tables whose other rows (the application's, written since) stay as they are.
        conflicts: rows the run changed that the application changed again (at most the
            number asked; ``more`` says how many beyond).
        more: further conflicts not listed.
        lost: what the rollback would destroy that the run did not write, one line each.
        changed: definitions that changed since the run (the rollback is refused).
        unfit: rows written since that a definition put back could not hold (NULL in a
            column that was NOT NULL, a value of another type): the rollback is refused.
        set_aside: what the run's drops set aside and the rollback brings back (a table
            moved into the backup schema, a column's values by key), one line each.
        verified: whether the pre-images are kept (False: undone by the steps' downs only).
    """

    run_id: str
    steps: tuple[StepUndo, ...] = ()
    undo: Mapping[str, Mapping[str, int]] = attrs.field(factory=dict)
    kept: tuple[str, ...] = ()
    conflicts: tuple[RowConflict, ...] = ()
    more: int = 0
    lost: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unfit: tuple[str, ...] = ()
    set_aside: tuple[str, ...] = ()
    verified: bool = True

    @property
    def conflicting(self) -> int:
        """How many conflicts there are in all."""
        return len(self.conflicts) + self.more


def refusal(preview: RollbackPreview, policy: str | None) -> str | None:
    """Why the rollback *preview* describes must not go on under *policy* (None: no policy
    given), or None when it may. Nothing is touched before this is asked."""
    if preview.changed:
        return (
            f"run {preview.run_id}: what it changed was changed again since (so its undo"
            f" statements no longer apply): {'; '.join(preview.changed[:10])}. Undo those"
            " changes first, or write a new migration instead of rolling back"
        )
    if preview.unfit:
        return (
            f"run {preview.run_id} cannot be rolled back without changing what was written"
            f" since: {'; '.join(preview.unfit[:10])}. Nothing was touched. Change those rows"
            " (or write a new migration instead of rolling back)"
        )
    if policy is None and (preview.conflicts or preview.more or preview.lost):
        parts = []
        if preview.conflicting:
            listed = "; ".join(str(c) for c in preview.conflicts[:10])
            more = preview.conflicting - min(len(preview.conflicts), 10)
            parts.append(
                f"{preview.conflicting} row(s) the run changed were changed again since:"
                f" {listed}" + (f" (and {more} more)" if more else "")
            )
        parts += list(preview.lost)
        return (
            f"rolling back run {preview.run_id} would overwrite or lose what was written"
            f" since the run: {' '.join(p.rstrip('.') + '.' for p in parts)} Nothing was"
            " touched. Say which side wins: --conflicts keep (the application's rows stay"
            " as they are now) or --conflicts undo (the run's changes are undone anyway);"
            " --dry-run shows the whole plan"
        )
    if policy == "keep" and preview.lost:
        return (
            f"run {preview.run_id}: --conflicts keep cannot keep "
            + "; ".join(preview.lost)
            + ". Nothing was touched; --conflicts undo rolls back anyway (and loses them)"
        )
    return None
