"""The protocols a host implements to embed lupo_migrate: storage, run lock, write freeze,
clock, validators, the target that runs statements... (the public path; they are defined in
:mod:`lupo_migrate.core.ports`, the functional core's ports).
"""

from __future__ import annotations

from lupo_migrate.core.ports import (
    Clock,
    DecisionLog,
    Ephemeral,
    Freeze,
    Handler,
    Lock,
    RunQueue,
    StepContext,
    Storage,
    Target,
    Validator,
)

__all__ = [
    "Clock",
    "DecisionLog",
    "Ephemeral",
    "Freeze",
    "Handler",
    "Lock",
    "RunQueue",
    "StepContext",
    "Storage",
    "Target",
    "Validator",
]
