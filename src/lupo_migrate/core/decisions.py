"""Decisions after a run: the rollback-log record, its window, and the steps a scope undoes.

A completed run leaves records in ``migration_rollback_log``:

- one **material** record (``classification`` None): the run as a whole may be rolled back
  (``rollback RUN``) until its deadline, with the pre-images and backups kept for it;
- one record per pending B/C/D **decision**: its class, the steps its scope covers, the window
  and the deadline by which an operator rolls them back or accepts them.

A record is *open* while its status is ``pending`` or ``available`` and its deadline has not
passed; after the deadline it is **final** (whatever the stored status says until ``purge``
writes it). Pure: the time comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

import attrs

from lupo_migrate.core.clock import from_stamp
from lupo_migrate.core.model import Classification, Step, StepId

__all__ = [
    "ACCEPTED",
    "AVAILABLE",
    "FINAL",
    "OPEN",
    "PENDING",
    "PURGED",
    "ROLLED_BACK",
    "DecisionRecord",
    "is_open",
    "scope_steps",
    "status_at",
    "time_left",
]

#: A B/C/D decision waiting for an operator.
PENDING: Final = "pending"
#: A completed run's own rollback material, usable until the deadline.
AVAILABLE: Final = "available"
#: The operator kept the run's changes; final.
ACCEPTED: Final = "accepted"
#: The scope was rolled back.
ROLLED_BACK: Final = "rolled_back"
#: The window closed without a decision; the run's changes stay.
FINAL: Final = "final"
#: The window closed and the backups were dropped.
PURGED: Final = "purged"
#: Statuses that still allow a rollback (before the deadline).
OPEN: Final = frozenset({PENDING, AVAILABLE})


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class DecisionRecord:
    """A row of ``migration_rollback_log``.

    Attributes:
        run_id: the run the record is about.
        classification: B, C or D for a decision; None for the run's own rollback material.
        scope: the step ids a rollback of this record undoes, in the order they were applied.
        recorded_at: ``YYYYMMDDHHMMSS`` when the row was written.
        id: the row id (0 until recorded).
        window_seconds: the length of the window (None: no window).
        deadline: ``YYYYMMDDHHMMSS`` after which the record is final (None: never).
        status: ``pending``, ``available``, ``accepted``, ``rolled_back``, ``final``, ``purged``.
        decided_by: who decided (an operator, or ``window`` when the deadline passed).
        decided_at: when.
        detail: why, and what was done.
    """

    run_id: str
    classification: Classification | None
    scope: tuple[str, ...] = attrs.field(converter=_str_tuple)
    recorded_at: int
    id: int = 0
    window_seconds: int | None = None
    deadline: int | None = None
    status: str = PENDING
    decided_by: str | None = None
    decided_at: int | None = None
    detail: str | None = None

    @property
    def label(self) -> str:
        """``B``, ``C``, ``D``, or ``run`` for the material record."""
        return "run" if self.classification is None else self.classification.value


def status_at(record: DecisionRecord, now: int) -> str:
    """The record's status at *now* (a stamp): an open record past its deadline is final."""
    if record.status in OPEN and record.deadline is not None and now > record.deadline:
        return FINAL
    return record.status


def is_open(record: DecisionRecord, now: int) -> bool:
    """Whether a rollback of *record* is still possible at *now*."""
    return status_at(record, now) in OPEN


def time_left(record: DecisionRecord, now: datetime) -> timedelta | None:
    """How long the window stays open after *now* (zero once closed; None: no deadline)."""
    if record.deadline is None:
        return None
    return max(from_stamp(record.deadline) - now, timedelta(0))


def _dependants(steps: Sequence[Step], roots: Iterable[StepId]) -> set[StepId]:
    """*roots* and every step of *steps* that depends on one of them, transitively."""
    children: dict[StepId, list[StepId]] = {}
    for step in steps:
        for parent in step.depends_on:
            children.setdefault(parent, []).append(step.id)
    found: set[StepId] = set()
    todo = list(roots)
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found


#: The file type each class's scope is about (B: any).
_TYPES: Final[Mapping[Classification, str | None]] = {
    Classification.A: None,
    Classification.B: None,
    Classification.C: "doctrine",
    Classification.D: "documentation",
}


def scope_steps(
    classification: Classification | None, affected: Iterable[StepId], steps: Sequence[Step]
) -> tuple[StepId, ...]:
    """The steps a rollback of *classification* undoes, in the order of *steps*.

    - A (or None): every step;
    - B: the affected steps and every step that depends on them;
    - C: the affected doctrine steps and every step that depends on them;
    - D: the affected documentation steps only.

    Findings that name no step concern every step of the class's file type.

    Args:
        classification: the class, or None for the whole run.
        affected: the steps the findings name.
        steps: the run's applied steps, in the order they were applied.
    """
    if classification is None or classification is Classification.A:
        return tuple(s.id for s in steps)
    kind = _TYPES[classification]
    of_kind = [s.id for s in steps if kind is None or s.file_type == kind]
    named = set(affected) & set(of_kind)
    roots = named or set(of_kind)
    chosen = roots if classification is Classification.D else _dependants(steps, roots)
    return tuple(s.id for s in steps if s.id in chosen)
