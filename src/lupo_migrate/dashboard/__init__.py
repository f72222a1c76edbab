"""The web dashboard: one target's runs, lock, freeze, queue and decisions, served over HTTP
(:mod:`~lupo_migrate.dashboard.server`), with its page, sections and HTTP handling.

May import: :mod:`lupo_migrate.run` (it reads an ``Orchestrator``) and the layers below it.
"""

from __future__ import annotations

from lupo_migrate.dashboard.server import HOST, Dashboard, Mark, estimate, observe_phase

__all__ = ["HOST", "Dashboard", "Mark", "estimate", "observe_phase"]
