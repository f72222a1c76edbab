"""Observing runs: events and metrics (:mod:`~lupo_migrate.observe.events`), alerts and
their sinks (:mod:`~lupo_migrate.observe.alerts`), progress on a terminal
(:mod:`~lupo_migrate.observe.progress`), the run being watched for escalation
(:mod:`~lupo_migrate.observe.watch`).

May import: :mod:`lupo_migrate.core`.

``Event``, ``Metrics``, ``Observer`` and ``serve_prometheus`` are importable from here.
"""

from __future__ import annotations

from lupo_migrate.observe.events import Event, Metrics, Observer, serve_prometheus

__all__ = ["Event", "Metrics", "Observer", "serve_prometheus"]
