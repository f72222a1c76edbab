"""The run being watched (for observers and escalation): when it started, how long it should
take, which observers were dropped."""

from __future__ import annotations

import threading

import attrs

from lupo_migrate.core.model import Run

__all__ = ["Watch"]


@attrs.define
class Watch:
    """The run being watched: when it started, how long it should take, what was dropped."""

    run_id: str
    steps: int
    started: float
    expected: float | None = None
    basis: int = 0
    escalated: bool = False
    dropped: set[int] = attrs.field(factory=set)
    #: The run as last persisted (for the background escalation check).
    run: Run | None = None
    guard: threading.Lock = attrs.field(factory=threading.Lock)
