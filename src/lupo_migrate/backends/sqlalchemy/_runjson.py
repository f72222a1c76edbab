"""A run as JSON, and back: the layout of ``migration_batches.state`` and ``steps``.

Apart from :mod:`lupo_migrate.backends.sqlalchemy._codec` (the other tables' rows) because a run's
layout is versioned on its own (:data:`_RUN_FORMAT`) and is the one format a run read back must
decode to an equal ``Run``: enums by value, nested ``Failure`` and ``Finding`` as objects,
tuples as lists, ASCII-escaped so any Python string survives any column charset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.model import (
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Phase,
    Run,
    Severity,
)

__all__ = [
    "enum_value",
    "finding_dict",
    "finding_from_dict",
    "run_columns",
    "run_from_json",
    "run_to_json",
    "steps_to_json",
]

#: Layout version of the JSON in ``migration_batches.state``.
_RUN_FORMAT = 2


def enum_value(value: Any) -> Any:
    """An enum member as its stored value; None stays None."""
    return None if value is None else value.value


def finding_dict(finding: Finding) -> dict[str, Any]:
    """A finding's fields as stored (in a run's JSON and in ``migration_validation_log``)."""
    return {
        "severity": finding.severity.value,
        "message": finding.message,
        "path": finding.path,
        "line": finding.line,
        "hint": finding.hint,
        "code": finding.code,
        "kind": enum_value(finding.kind),
        "step_id": finding.step_id,
    }


def finding_from_dict(data: Mapping[str, Any]) -> Finding:
    """The finding stored as :func:`finding_dict` wrote it."""
    kind = data["kind"]
    return Finding(
        severity=Severity(data["severity"]),
        message=data["message"],
        path=data["path"],
        line=None if data["line"] is None else int(data["line"]),
        hint=data["hint"],
        code=data["code"],
        kind=None if kind is None else FailureKind(kind),
        step_id=data["step_id"],
    )


def run_to_json(run: Run) -> str:
    """The whole *run* as JSON text (keys sorted, ASCII only)."""
    failure = run.failure
    data = {
        "format": _RUN_FORMAT,
        "id": run.id,
        "target": run.target,
        "phase": run.phase.value,
        # Applied steps are nearly always a prefix of the plan: then their count says it all.
        "applied": _applied(run),
        "in_flight": run.in_flight,
        "undo": list(run.undo),
        "outcome": enum_value(run.outcome),
        "blocked": run.blocked,
        "classification": enum_value(run.classification),
        "failure": None
        if failure is None
        else {
            "kind": failure.kind.value,
            "message": failure.message,
            "step_id": failure.step_id,
            "critical": failure.critical,
        },
        "findings": [finding_dict(f) for f in run.findings],
        "pending": [c.value for c in run.pending],
        "holder": run.holder,
        "version": run.version,
    }
    if run.rolls_back is not None:  # an operator's rollback only: other runs omit the keys
        data["rolls_back"] = run.rolls_back
        data["rolls_back_scope"] = enum_value(run.rolls_back_scope)
    if run.started_by is not None:  # runs recorded before it was kept have no key
        data["started_by"] = run.started_by
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _applied(run: Run) -> int | list[str]:
    count = len(run.applied)
    return count if run.steps[:count] == run.applied else list(run.applied)


def steps_to_json(run: Run) -> str:
    """The run's step ids as JSON (the ``steps`` column, written once)."""
    return json.dumps(list(run.steps), separators=(",", ":"), ensure_ascii=True)


def run_from_json(text: str, steps_text: str) -> Run:
    """The run that :func:`run_to_json` and :func:`steps_to_json` wrote.

    Raises:
        StorageError: the text is not a run this code can read.
    """
    try:
        data = json.loads(text)
        steps = json.loads(steps_text)
        applied = data["applied"]
        if isinstance(applied, int):
            applied = steps[:applied]
        if data.get("format") != _RUN_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        failure = data["failure"]
        outcome, classification = data["outcome"], data["classification"]
        return Run(
            id=data["id"],
            target=data["target"],
            phase=Phase(data["phase"]),
            steps=tuple(steps),
            applied=tuple(applied),
            in_flight=data["in_flight"],
            undo=data["undo"],
            outcome=None if outcome is None else Outcome(outcome),
            blocked=bool(data["blocked"]),
            classification=None if classification is None else Classification(classification),
            failure=None
            if failure is None
            else Failure(
                kind=FailureKind(failure["kind"]),
                message=failure["message"],
                step_id=failure["step_id"],
                critical=bool(failure["critical"]),
            ),
            findings=[finding_from_dict(f) for f in data["findings"]],
            pending=[Classification(c) for c in data["pending"]],
            holder=data["holder"],
            version=int(data["version"]),
            rolls_back=data.get("rolls_back"),
            started_by=data.get("started_by"),
            rolls_back_scope=None
            if data.get("rolls_back_scope") is None
            else Classification(data["rolls_back_scope"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"migration_batches: a stored run cannot be read ({exc}); it was written by another"
            " version of lupo_migrate, or edited by hand. Restore the row, or upgrade."
        ) from exc


def run_columns(run: Run, *, steps: bool = True) -> dict[str, Any]:
    """The ``migration_batches`` columns of *run* (all but ``id`` and the stamps).

    Without *steps*, the ``steps`` column is left out (a run's plan is written once; encoding
    a long plan again for every state change costs more than the write).
    """
    columns = {
        "run_id": run.id,
        "target": run.target,
        "phase": run.phase.value,
        "outcome": enum_value(run.outcome),
        "version": run.version,
        "blocked": run.blocked,
        "holder": run.holder,
        "state": run_to_json(run),
    }
    if steps:
        columns["steps"] = steps_to_json(run)
    return columns
