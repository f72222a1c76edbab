"""Observing runs: structured events, live metrics, Prometheus text and OpenTelemetry.

The orchestrator publishes an :class:`Event` to each of its ``observers`` (any callable taking
one) as a run moves: ``run.started``, ``run.transition`` (every persisted transition, with the
phase and progress), ``step.finished``, ``statement`` (with its database time),
``validation``, ``alert`` and ``run.ended``. An observer that raises is logged and dropped
for the rest of the run: observing never breaks a run. The library itself prints nothing.

:class:`Metrics` is an observer that keeps the figures of the doctrine (progress percent,
files per minute, validation success rate, errors by type, CPU time, memory, database time)
for the current and the last runs, readable at any time from any thread
(:meth:`Metrics.snapshot`), as Prometheus text (:meth:`Metrics.prometheus`, or served on
127.0.0.1 by :func:`serve_prometheus`), and through the OpenTelemetry metrics API
(:meth:`Metrics.bind_opentelemetry`: observable gauges on the global or a given meter
provider; inert unless the application installed an SDK).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

import attrs

from lupo_migrate.core.history_stats import Counts, MetricsSnapshot, prometheus, snapshot

__all__ = ["Event", "Metrics", "Observer", "serve_prometheus"]

logger = logging.getLogger("lupo_migrate")


@attrs.frozen(kw_only=True)
class Event:
    """Something that happened in a run.

    Attributes:
        name: ``run.started``, ``run.transition``, ``step.finished``, ``statement``,
            ``validation``, ``alert`` or ``run.ended``.
        run_id: the run.
        target: the target's name.
        at: when (the orchestrator's clock, UTC).
        data: the details; every event has ``phase``; see the module docstring.
    """

    name: str
    run_id: str
    target: str
    at: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)


class Observer(Protocol):
    """Anything called with each :class:`Event`."""

    def __call__(self, event: Event) -> None:
        """Take note of *event*; should return quickly."""
        ...


def _peak_memory() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


@attrs.define
class _Live:
    counts: Counts
    started: float
    cpu: float


class Metrics:
    """Keeps each run's figures from its events (an :class:`Observer`); thread-safe.

    Args:
        keep: how many ended runs stay in :meth:`snapshots` beside the current one.
        monotonic: the time source for elapsed seconds (tests inject one).
    """

    def __init__(self, *, keep: int = 5, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._keep = keep
        self._monotonic = monotonic
        self._guard = threading.Lock()
        self._runs: dict[str, _Live] = {}
        self._order: list[str] = []

    def __call__(self, event: Event) -> None:
        with self._guard:
            live = self._runs.get(event.run_id)
            if live is None or event.name == "run.started":
                live = _Live(
                    Counts(run_id=event.run_id, target=event.target, phase="preparing"),
                    self._monotonic(),
                    time.process_time(),
                )
                self._runs[event.run_id] = live
                self._order = [r for r in self._order if r != event.run_id] + [event.run_id]
                for old in self._order[: -self._keep - 1]:
                    self._runs.pop(old, None)
                self._order = self._order[-self._keep - 1 :]
            if event.name == "run.ended":
                self._refresh(live)  # the figures stop here
            live.counts = self._update(live.counts, event)

    @staticmethod
    def _update(counts: Counts, event: Event) -> Counts:
        data = event.data
        changes: dict[str, Any] = {"phase": str(data.get("phase", counts.phase))}
        if "steps_total" in data:
            changes["steps_total"] = int(data["steps_total"])
        if "steps_done" in data:
            changes["steps_done"] = int(data["steps_done"])
        if event.name == "statement":
            changes["statements"] = counts.statements + 1
            changes["database_seconds"] = counts.database_seconds + float(data.get("seconds", 0))
        elif event.name == "validation":
            changes["validations"] = counts.validations + 1
            changes["validations_passed"] = counts.validations_passed + bool(data.get("passed"))
        elif event.name == "run.transition" and data.get("failure"):
            errors = dict(counts.errors)
            kind = str(data["failure"])
            errors[kind] = errors.get(kind, 0) + 1
            changes["errors"] = errors
        elif event.name == "run.ended":
            changes["outcome"] = str(data.get("outcome"))
        elif event.name == "step.copy" and data.get("event") == "progress":
            changes["copy_rows_done"] = int(data.get("copied") or 0)
            changes["copy_rows_total"] = int(data.get("total") or 0)
            eta = data.get("eta")
            changes["copy_eta"] = None if eta is None else float(eta)
        elif event.name == "step.copy" and data.get("event") == "cut_over":
            changes["copy_eta"] = 0.0
        return attrs.evolve(counts, **changes)

    def _refresh(self, live: _Live) -> None:
        live.counts = attrs.evolve(
            live.counts,
            elapsed=self._monotonic() - live.started,
            cpu_seconds=time.process_time() - live.cpu,
            memory_peak_bytes=_peak_memory(),
        )

    def _shot(self, live: _Live) -> MetricsSnapshot:
        if live.counts.outcome is None:
            self._refresh(live)
        return snapshot(live.counts)

    def snapshot(self, run_id: str | None = None) -> MetricsSnapshot | None:
        """The figures of *run_id* (default: the latest run), or None before any run."""
        with self._guard:
            key = run_id or (self._order[-1] if self._order else None)
            live = self._runs.get(key) if key is not None else None
            return None if live is None else self._shot(live)

    def snapshots(self) -> list[MetricsSnapshot]:
        """The figures of the runs kept, oldest first."""
        with self._guard:
            return [self._shot(self._runs[r]) for r in self._order if r in self._runs]

    def prometheus(self) -> str:
        """The kept runs' figures in the Prometheus text format."""
        return prometheus(self.snapshots())

    def bind_opentelemetry(self, meter_provider: Any = None) -> None:
        """Publish the latest run's figures as observable gauges ``lupo_migrate.<figure>``
        through the OpenTelemetry metrics API (the global meter provider unless one is
        given). Inert unless the application installed an OpenTelemetry SDK.

        Raises:
            ImportError: ``opentelemetry-api`` is not installed (``pip install
                lupo-migrate[otel]``).
        """
        from opentelemetry import metrics as otel

        provider = meter_provider or otel.get_meter_provider()
        meter = provider.get_meter("lupo_migrate")

        def gauge(name: str) -> Callable[[Any], Iterator[Any]]:
            def observe(_options: Any) -> Iterator[Any]:
                shot = self.snapshot()
                value = None if shot is None else getattr(shot, name)
                if value is not None:
                    yield otel.Observation(
                        float(value),
                        {"target": shot.target, "run": shot.run_id},  # type: ignore[union-attr]
                    )

            return observe

        for name in (
            "progress_percent",
            "files_per_minute",
            "validation_success_rate",
            "cpu_seconds",
            "memory_peak_bytes",
            "database_seconds",
        ):
            meter.create_observable_gauge(f"lupo_migrate.{name}", callbacks=[gauge(name)])


@contextlib.contextmanager
def serve_prometheus(metrics: Metrics, *, port: int = 0) -> Iterator[int]:
    """Serve ``GET /metrics`` (Prometheus text) on 127.0.0.1:*port* while the block runs;
    yields the port (0: any free one)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            body = metrics.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the library prints nothing

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="lupo-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
