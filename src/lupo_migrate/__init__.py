"""lupo_migrate: safe, observable and recoverable database schema migrations.

The public API is re-exported here; implementation lives in underscore modules. Public
submodules are extension points: :mod:`lupo_migrate.core.errors` (the exception tree),
:mod:`lupo_migrate.core.ports` (protocols), :mod:`lupo_migrate.state` (the transition function
with its events and effects, for property tests), :mod:`lupo_migrate.validators`,
:mod:`lupo_migrate.backends` and :mod:`lupo_migrate.testing` (contract checks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lupo_migrate.core.classifier import DEFAULT_WINDOWS, RollbackDecision, Scope, classify
    from lupo_migrate.core.decisions import DecisionRecord
    from lupo_migrate.core.errors import LupoMigrateError
    from lupo_migrate.core.fingerprint import Difference, Fingerprint, TableData, diff
    from lupo_migrate.core.model import (
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
    from lupo_migrate.core.planner import build_graph, descendants, plan, rollback_plan
    from lupo_migrate.core.state import transition
    from lupo_migrate.core.undo_plan import RollbackPreview, RowConflict, StepUndo
    from lupo_migrate.files.discover import Discovery, discover, load_steps
    from lupo_migrate.handlers.plugins import load_entry_points
    from lupo_migrate.handlers.registry import HandlerRegistry
    from lupo_migrate.run.orchestrator import Orchestrator, RunResult
    from lupo_migrate.session.api import CheckReport, PlanReport, check_directory, plan_directory

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
    "AppliedStep": "lupo_migrate.core.model",
    "CheckReport": "lupo_migrate.session.api",
    "Classification": "lupo_migrate.core.model",
    "DecisionRecord": "lupo_migrate.core.decisions",
    "Orchestrator": "lupo_migrate.run.orchestrator",
    "RunResult": "lupo_migrate.run.orchestrator",
    "DEFAULT_WINDOWS": "lupo_migrate.core.classifier",
    "Difference": "lupo_migrate.core.fingerprint",
    "Fingerprint": "lupo_migrate.core.fingerprint",
    "TableData": "lupo_migrate.core.fingerprint",
    "diff": "lupo_migrate.core.fingerprint",
    "Discovery": "lupo_migrate.files.discover",
    "Failure": "lupo_migrate.core.model",
    "FailureKind": "lupo_migrate.core.model",
    "Finding": "lupo_migrate.core.model",
    "FreezeInfo": "lupo_migrate.core.model",
    "HandlerRegistry": "lupo_migrate.handlers.registry",
    "JournalEntry": "lupo_migrate.core.model",
    "LockInfo": "lupo_migrate.core.model",
    "LupoMigrateError": "lupo_migrate.core.errors",
    "Outcome": "lupo_migrate.core.model",
    "Phase": "lupo_migrate.core.model",
    "Plan": "lupo_migrate.core.model",
    "PlanReport": "lupo_migrate.session.api",
    "RollbackDecision": "lupo_migrate.core.classifier",
    "RollbackPreview": "lupo_migrate.core.undo_plan",
    "RowConflict": "lupo_migrate.core.undo_plan",
    "StepUndo": "lupo_migrate.core.undo_plan",
    "Run": "lupo_migrate.core.model",
    "Scope": "lupo_migrate.core.classifier",
    "Severity": "lupo_migrate.core.model",
    "Stage": "lupo_migrate.core.model",
    "Step": "lupo_migrate.core.model",
    "ValidationContext": "lupo_migrate.core.model",
    "build_graph": "lupo_migrate.core.planner",
    "check_directory": "lupo_migrate.session.api",
    "classify": "lupo_migrate.core.classifier",
    "descendants": "lupo_migrate.core.planner",
    "discover": "lupo_migrate.files.discover",
    "load_entry_points": "lupo_migrate.handlers.plugins",
    "load_steps": "lupo_migrate.files.discover",
    "plan": "lupo_migrate.core.planner",
    "plan_directory": "lupo_migrate.session.api",
    "rollback_plan": "lupo_migrate.core.planner",
    "transition": "lupo_migrate.core.state",
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
