"""Alert sinks: where the orchestrator's alerts go besides ``migration_alerts``.

Levels follow the rollback classes: ``critical`` (class A: the run is being rolled back),
``warning`` (B and C decisions, and escalation: a run over its expected duration), ``info``
(milestones: a run started, completed, rolled back as asked). Every alert is recorded in
``migration_alerts`` (acknowledge and resolve it there: ``lupo-migrate alerts``) and sent to
each sink of the orchestrator's ``alert_sinks``:

- :class:`LoggingSink`: the ``lupo_migrate.observe.alerts`` logger (error/warning/info);
- :class:`CallableSink`: any function of an :class:`Alert`;
- :class:`WebhookSink`: an HTTP POST of the alert as JSON, retried, from a background
  thread: :meth:`WebhookSink.send` never waits, and :meth:`WebhookSink.close` (called when a
  run ends) waits for what is still queued at most ``timeout`` seconds, so a slow or dead
  webhook never holds a run up by more than that.

A sink that raises is logged; it never stops a run.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol

import attrs

__all__ = ["Alert", "AlertSink", "CallableSink", "LoggingSink", "WebhookSink"]

logger = logging.getLogger("lupo_migrate.observe.alerts")

LEVELS: Final = ("critical", "warning", "info")


@attrs.frozen(kw_only=True)
class Alert:
    """One alert.

    Attributes:
        level: ``critical``, ``warning`` or ``info``.
        message: what happened, with the values.
        target: the target's name.
        run_id: the run it is about, if any.
        at: when (UTC).
        id: its row in ``migration_alerts``, when recorded.
    """

    level: str
    message: str
    target: str
    run_id: str | None = None
    at: datetime | None = None
    id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The alert as the webhook posts it."""
        return {
            "level": self.level,
            "message": self.message,
            "target": self.target,
            "run": self.run_id,
            "at": None if self.at is None else self.at.isoformat(),
            "id": self.id,
            "source": "lupo_migrate",
        }


class AlertSink(Protocol):
    """Anything with ``send(alert)``; ``close(timeout)`` too, if it delivers later."""

    def send(self, alert: Alert) -> None:
        """Deliver (or queue) *alert*; return quickly."""
        ...


@attrs.frozen
class LoggingSink:
    """Alerts as log records of the ``lupo_migrate.observe.alerts`` logger (or *name*)."""

    name: str = "lupo_migrate.observe.alerts"

    def send(self, alert: Alert) -> None:
        """Log *alert* at error (critical), warning or info level."""
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(
            alert.level, logging.INFO
        )
        where = (
            f"run {alert.run_id}: " if alert.run_id and alert.run_id not in alert.message else ""
        )
        logging.getLogger(self.name).log(level, "[%s] %s%s", alert.level, where, alert.message)


@attrs.frozen
class CallableSink:
    """Alerts handed to a function."""

    function: Callable[[Alert], object]

    def send(self, alert: Alert) -> None:
        """Call the function with *alert*."""
        self.function(alert)


class WebhookSink:
    """Alerts POSTed as JSON to *url* from a background thread, retried.

    Args:
        url: where to POST (``http://`` or ``https://``).
        timeout: the most a run waits for this sink, in seconds: each attempt's timeout is
            what is left of it, and :meth:`close` waits no longer.
        retries: attempts after the first for an alert that failed (connection refused, a
            5xx answer, a timeout), with *backoff* seconds doubling between them.
        levels: the levels sent (default: all).
        headers: extra request headers (an ``Authorization``, say).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        levels: tuple[str, ...] = LEVELS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL starts with http:// or https://, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.levels = levels
        self.headers = dict(headers or {})
        self.delivered: list[Alert] = []
        self.failed: list[tuple[Alert, str]] = []
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r}, timeout={self.timeout})"

    def send(self, alert: Alert) -> None:
        """Queue *alert* for delivery; returns at once."""
        if alert.level not in self.levels:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="lupo-webhook", daemon=True)
                self._thread.start()
        self._queue.put(alert)

    def close(self, timeout: float | None = None) -> bool:
        """Wait until what is queued is delivered (or given up), at most *timeout* seconds
        (default: the sink's). Returns whether everything queued was handled."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _work(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is not None:
                    self._deliver(alert)
            finally:
                self._queue.task_done()

    def _deliver(self, alert: Alert) -> None:
        import urllib.error
        import urllib.request

        body = json.dumps(alert.as_json()).encode()
        began = time.monotonic()
        wait = self.backoff
        problem = ""
        for attempt in range(self.retries + 1):
            left = self.timeout - (time.monotonic() - began)
            if left <= 0:
                problem = problem or "timed out"
                break
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", **self.headers},
            )
            try:
                with urllib.request.urlopen(request, timeout=left) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered.append(alert)
                        return
                    problem = f"HTTP {answer.status}"
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
                if error.code < 500 and error.code != 429:
                    break  # the request is wrong: sending it again will not help
            except (OSError, ValueError) as error:
                problem = str(getattr(error, "reason", error))
            if attempt < self.retries:
                time.sleep(min(wait, max(0.0, self.timeout - (time.monotonic() - began))))
                wait *= 2
        self.failed.append((alert, problem))
        logger.warning("webhook %s: alert not delivered (%s): %s", self.url, problem, alert.message)
