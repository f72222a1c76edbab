"""lupo_migrate: safe, observable and recoverable database schema migrations.

The public API is re-exported here; implementation lives in underscore modules. Public
submodules are extension points: :mod:`lupo_migrate.errors` (the exception tree),
:mod:`lupo_migrate.typing` (protocols), :mod:`lupo_migrate.state` (the transition function
with its events and effects, for property tests), :mod:`lupo_migrate.validators`,
:mod:`lupo_migrate.backends` and :mod:`lupo_migrate.testing` (contract checks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lupo_migrate._api import CheckReport, PlanReport, check_directory, plan_directory
    from lupo_migrate._decisions import DecisionRecord
    from lupo_migrate._files import Discovery, discover, load_steps
    from lupo_migrate._fingerprint import Difference, Fingerprint, TableData, diff
    from lupo_migrate._model import (
        AppliedStep,
        Classification,
        Failure,
        FailureKind,
        Finding,
        FreezeInfo,
        JournalEntry,
        LockInfo,
        Outcome,
        Phase,
        Plan,
        Run,
        Severity,
        Stage,
        Step,
        ValidationContext,
    )
    from lupo_migrate._planner import build_graph, descendants, plan, rollback_plan
    from lupo_migrate._plugins import load_entry_points
    from lupo_migrate._registry import HandlerRegistry
    from lupo_migrate._rollback import DEFAULT_WINDOWS, RollbackDecision, Scope, classify
    from lupo_migrate._runner import Orchestrator, RunResult
    from lupo_migrate._state import transition
    from lupo_migrate._undo_plan import RollbackPreview, RowConflict, StepUndo
    from lupo_migrate.errors import LupoMigrateError

__all__ = [
    "DEFAULT_WINDOWS",
    "AppliedStep",
    "CheckReport",
    "Classification",
    "DecisionRecord",
    "Difference",
    "Discovery",
    "Failure",
    "FailureKind",
    "Finding",
    "Fingerprint",
    "FreezeInfo",
    "HandlerRegistry",
    "JournalEntry",
    "LockInfo",
    "LupoMigrateError",
    "Orchestrator",
    "Outcome",
    "Phase",
    "Plan",
    "PlanReport",
    "RollbackDecision",
    "RollbackPreview",
    "RowConflict",
    "Run",
    "RunResult",
    "Scope",
    "Severity",
    "Stage",
    "Step",
    "StepUndo",
    "TableData",
    "ValidationContext",
    "build_graph",
    "check_directory",
    "classify",
    "descendants",
    "diff",
    "discover",
    "load_entry_points",
    "load_steps",
    "plan",
    "plan_directory",
    "rollback_plan",
    "transition",
]

# Where each public name lives. Resolved on first use (PEP 562), so that ``import lupo_migrate``
# and the command line's start-up do not pay for networkx or jsonschema until they are needed.
_HOMES: dict[str, str] = {
    "AppliedStep": "lupo_migrate._model",
    "CheckReport": "lupo_migrate._api",
    "Classification": "lupo_migrate._model",
    "DecisionRecord": "lupo_migrate._decisions",
    "Orchestrator": "lupo_migrate._runner",
    "RunResult": "lupo_migrate._runner",
    "DEFAULT_WINDOWS": "lupo_migrate._rollback",
    "Difference": "lupo_migrate._fingerprint",
    "Fingerprint": "lupo_migrate._fingerprint",
    "TableData": "lupo_migrate._fingerprint",
    "diff": "lupo_migrate._fingerprint",
    "Discovery": "lupo_migrate._files",
    "Failure": "lupo_migrate._model",
    "FailureKind": "lupo_migrate._model",
    "Finding": "lupo_migrate._model",
    "FreezeInfo": "lupo_migrate._model",
    "HandlerRegistry": "lupo_migrate._registry",
    "JournalEntry": "lupo_migrate._model",
    "LockInfo": "lupo_migrate._model",
    "LupoMigrateError": "lupo_migrate.errors",
    "Outcome": "lupo_migrate._model",
    "Phase": "lupo_migrate._model",
    "Plan": "lupo_migrate._model",
    "PlanReport": "lupo_migrate._api",
    "RollbackDecision": "lupo_migrate._rollback",
    "RollbackPreview": "lupo_migrate._undo_plan",
    "RowConflict": "lupo_migrate._undo_plan",
    "StepUndo": "lupo_migrate._undo_plan",
    "Run": "lupo_migrate._model",
    "Scope": "lupo_migrate._rollback",
    "Severity": "lupo_migrate._model",
    "Stage": "lupo_migrate._model",
    "Step": "lupo_migrate._model",
    "ValidationContext": "lupo_migrate._model",
    "build_graph": "lupo_migrate._planner",
    "check_directory": "lupo_migrate._api",
    "classify": "lupo_migrate._rollback",
    "descendants": "lupo_migrate._planner",
    "discover": "lupo_migrate._files",
    "load_entry_points": "lupo_migrate._plugins",
    "load_steps": "lupo_migrate._files",
    "plan": "lupo_migrate._planner",
    "plan_directory": "lupo_migrate._api",
    "rollback_plan": "lupo_migrate._planner",
    "transition": "lupo_migrate._state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lupo_migrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
