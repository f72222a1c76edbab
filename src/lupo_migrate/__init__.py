"""lupo_migrate: safe, observable and recoverable database schema migrations.

The public API is re-exported here; implementation lives in underscore modules. Public
submodules are extension points: :mod:`lupo_migrate.errors` (the exception tree),
:mod:`lupo_migrate.typing` (protocols), :mod:`lupo_migrate.state` (the transition function
with its events and effects, for property tests), :mod:`lupo_migrate.validators`,
:mod:`lupo_migrate.backends` and :mod:`lupo_migrate.testing` (contract checks).
"""

from __future__ import annotations

from lupo_migrate._api import CheckReport, PlanReport, check_directory, plan_directory
from lupo_migrate._files import Discovery, discover, load_steps
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
from lupo_migrate._state import transition
from lupo_migrate.errors import LupoMigrateError

__all__ = [
    "DEFAULT_WINDOWS",
    "AppliedStep",
    "CheckReport",
    "Classification",
    "Discovery",
    "Failure",
    "FailureKind",
    "Finding",
    "FreezeInfo",
    "HandlerRegistry",
    "JournalEntry",
    "LockInfo",
    "LupoMigrateError",
    "Outcome",
    "Phase",
    "Plan",
    "PlanReport",
    "RollbackDecision",
    "Run",
    "Scope",
    "Severity",
    "Stage",
    "Step",
    "ValidationContext",
    "build_graph",
    "check_directory",
    "classify",
    "descendants",
    "discover",
    "load_entry_points",
    "load_steps",
    "plan",
    "plan_directory",
    "rollback_plan",
    "transition",
]
