"""The dashboard: a read-only web page on 127.0.0.1 showing what a target's runs are doing.

``lupo-migrate dashboard`` serves it; hosts may embed it too::

    with session(settings, files=False) as opened:
        with Dashboard(opened.orchestrator).serve(port=0) as url:
            ...  # the page is at url until the block ends

The dashboard is usually a process of its own, so it cannot hear a run's events
(:mod:`lupo_migrate.observe` is in-process): it **polls the storage**. The storage keeps only
a run's current phase, so the phase timeline is made of the changes the dashboard saw while
it polled (with the run's start from the storage where it records it), kept in memory.

Threads: one poller reads the database (the only thread that uses the orchestrator and its
connections) and publishes a JSON-able snapshot; the HTTP handler threads only read that
snapshot. Every read is guarded on its own: a database hiccup shows as an error line on the
page (the section keeps its last good value) and the next poll tries again; nothing stops the
server but the end of :meth:`Dashboard.serve`.

Served: ``GET /`` (the page, self-contained: no CDN), ``GET /api/state`` (the snapshot as
JSON); any other path is 404, any other method 405, and a request naming another host than
127.0.0.1 or localhost 403 (a web site re-pointing its name at 127.0.0.1 cannot read it).
The sections of the snapshot are read by :mod:`lupo_migrate.dashboard.sections`, the HTTP
side is :mod:`lupo_migrate.dashboard.http`.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from lupo_migrate.core.clock import from_stamp
from lupo_migrate.core.errors import ConfigurationError, InvalidArgumentError
from lupo_migrate.core.history_stats import SLACK, RunRecord, expected_seconds
from lupo_migrate.core.model import Phase, Run
from lupo_migrate.dashboard import sections as sections
from lupo_migrate.dashboard.http import HOST, handler

if TYPE_CHECKING:
    from lupo_migrate.core.ports import Clock
    from lupo_migrate.run.orchestrator import Orchestrator

__all__ = ["HOST", "Dashboard", "Mark", "estimate", "observe_phase"]

logger = logging.getLogger("lupo_migrate")
logger.addHandler(logging.NullHandler())

#: Runs whose observed timelines are kept in memory.
_TIMELINES: Final = 50

# ------------------------------------------------------------------ pure helpers


@attrs.frozen
class Mark:
    """One point of a run's phase timeline.

    Attributes:
        phase: the phase (``started`` for the run's start; without it the timeline begins
            with the phase the run was in when first seen).
        at: when, seconds since the epoch.
        observed: seen by the dashboard while polling (False: read from the storage).
        outcome: how the run ended, on its final ``idle`` mark.
    """

    phase: str
    at: float
    observed: bool = True
    outcome: str | None = None


def observe_phase(
    marks: tuple[Mark, ...], phase: str, at: float, *, outcome: str | None = None
) -> tuple[Mark, ...]:
    """*marks* with *phase* seen at *at* appended, unless it is the phase already shown."""
    if marks and (marks[-1].phase, marks[-1].outcome) == (phase, outcome):
        return marks
    return (*marks, Mark(phase, at, observed=True, outcome=outcome))


def estimate(
    *, done: int, total: int, elapsed: float, expected: float | None, basis: int = 0
) -> tuple[float | None, str | None]:
    """Seconds left of a working run and what the estimate rests on.

    From the history when it has one (*expected*: how long a run of *total* steps usually
    takes), else from this run's own pace (elapsed per step done); (None, None) before the
    first step is done without history.
    """
    if expected is not None:
        return max(expected - elapsed, 0.0), f"history of {basis} run(s)"
    if 0 < done < total and elapsed > 0:
        return elapsed / done * (total - done), "this run's pace"
    return None, None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------ the dashboard


class Dashboard:
    """Polls a target's orchestration tables and serves what it read as a page.

    Args:
        orchestrator: the target's orchestrator (``open_session(...).orchestrator``); only
            its reading methods are used, and only from one thread at a time.
        poll: seconds between two reads of the database.
        clock: the time source (default: the orchestrator's).
        slow_every: seconds between two reads of the checklist and the history charts while
            the latest run does not change (they are read again at once when it does).
    """

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        poll: float = 0.5,
        clock: Clock | None = None,
        slow_every: float = 5.0,
    ) -> None:
        if not poll > 0 or not slow_every >= 0:
            raise InvalidArgumentError(
                f"poll must be > 0 and slow_every >= 0 seconds, got {poll!r}, {slow_every!r}"
            )
        self.orchestrator = orchestrator
        self.poll = poll
        self.clock = clock or orchestrator.clock
        self.slow_every = slow_every
        self._timelines: OrderedDict[str, tuple[Mark, ...]] = OrderedDict()
        self._last: dict[str, Any] = {}
        self._slow_key: object = None
        self._slow_at = float("-inf")
        self._dead_seen: tuple[str, int] | None = None
        self._guard = threading.Lock()
        self._published: dict[str, Any] = {}

    # -------------------------------------------------------------- reading

    def state(self) -> dict[str, Any]:
        """The last snapshot read (empty before the first :meth:`refresh`)."""
        with self._guard:
            return self._published

    def state_json(self) -> bytes:
        """The last snapshot as UTF-8 JSON, with ``served``: the time now (the page sets its
        countdowns by the server's clock; ``now`` is when the snapshot was read)."""
        state = {**self.state(), "served": self.clock.now().timestamp()}
        return json.dumps(state, separators=(",", ":"), default=str).encode()

    def refresh(self) -> dict[str, Any]:
        """Read the database once and publish the snapshot; returns it.

        Call it from one thread at a time (:meth:`serve` calls it from its poller only). A
        section whose read fails keeps its last good value and adds a line to ``errors``.
        """
        now = self.clock.now()
        errors: list[str] = []
        orch = self.orchestrator

        def read(name: str, how: Callable[[], Any], default: Any) -> Any:
            try:
                value = how()
            except Exception as exc:  # a hiccup is shown, never fatal
                logger.warning("dashboard: reading %s failed", name, exc_info=True)
                errors.append(f"{name}: {_one_line(exc)}")
                return self._last.get(name, default)
            self._last[name] = value
            return value

        times: Mapping[str, tuple[int, int | None]] = read("run times", self._run_times, {})
        run: Run | None = read("latest run", orch.status, None)
        lock: dict[str, Any] | None = read("lock", lambda: sections.lock(orch, now), None)
        key = None if run is None else (run.id, run.version)
        records: list[RunRecord]
        if key != self._slow_key or time.monotonic() - self._slow_at >= self.slow_every:
            # The history and the checklist change with the runs: read again when the latest
            # run moved, and now and then (an alert or a decision changes its checklist). A
            # failed read is tried again at the next poll.
            failed = len(errors)
            records = read("history", lambda: sections.records(orch, times), [])
            read("history charts", lambda: sections.history(records, times), None)
            if run is not None:
                read("checklist", lambda: sections.checklist(orch, run), None)
            self._slow_key = key
            self._slow_at = time.monotonic() if len(errors) == failed else float("-inf")
        else:
            records = self._last.get("history", [])
        checklist = self._last.get("checklist")
        state: dict[str, Any] = {
            "target": orch.target_name,
            "now": now.timestamp(),
            "poll_seconds": self.poll,
            "run": None if run is None else self._run(run, now, times.get(run.id), records),
            "timeline": [] if run is None else [attrs.asdict(m) for m in self._timelines[run.id]],
            "lock": lock,
            "freeze": read("freeze", lambda: sections.freeze(orch, now), None),
            "queue": read("queue", lambda: sections.queue(orch), []),
            "copies": read("online copies", lambda: sections.copies(orch), []),
            "decisions": read("decisions", lambda: sections.decisions(orch, now), []),
            "checklist": checklist if run is not None else None,
            "history": self._last.get("history charts"),
            "dead": self._dead(run, lock),
            "errors": errors,
        }
        self._publish(state)
        return state

    def _publish(self, state: dict[str, Any]) -> None:
        with self._guard:
            self._published = state

    def _run_times(self) -> Mapping[str, tuple[int, int | None]]:
        times = getattr(self.orchestrator.storage, "run_times", None)
        return {} if times is None else dict(times(self.orchestrator.target_name))

    def _run(
        self,
        run: Run,
        now: datetime,
        times: tuple[int, int | None] | None,
        records: Sequence[RunRecord],
    ) -> dict[str, Any]:
        """The latest run as the page shows it; its timeline updated."""
        stamp_start = sections.epoch(times[0]) if times else None
        marks = self._timelines.get(run.id)
        if marks is None:  # first seen: its start (and end) from the storage, if it keeps them
            marks = ()
            if stamp_start is not None:
                marks = (Mark("started", stamp_start, observed=False),)
            if run.ended and times and times[1] is not None:
                marks += (
                    Mark("idle", from_stamp(times[1]).timestamp(), False, sections.outcome(run)),
                )
        marks = observe_phase(
            marks, run.phase.value, now.timestamp(), outcome=sections.outcome(run)
        )
        self._timelines[run.id] = marks
        self._timelines.move_to_end(run.id)
        while len(self._timelines) > _TIMELINES:
            self._timelines.popitem(last=False)
        started = stamp_start or marks[0].at
        elapsed = max(now.timestamp() - started, 0.0)
        eta, basis = None, None
        if not run.ended and run.phase is not Phase.ROLLING_BACK:
            # expected_seconds is the escalation bound (the usual time with slack): the
            # usual time is that without the slack.
            usual = expected_seconds(records, len(run.steps))
            expected, runs = (usual[0] / SLACK, usual[1]) if usual else (None, 0)
            eta, basis = estimate(
                done=len(run.applied),
                total=len(run.steps),
                elapsed=elapsed,
                expected=expected,
                basis=runs,
            )
        return {
            "id": run.id,
            "phase": run.phase.value,
            "outcome": sections.outcome(run),
            "ended": run.ended,
            "blocked": run.blocked,
            "classification": None if run.classification is None else run.classification.value,
            "failure": None if run.failure is None else run.failure.message,
            "steps_total": len(run.steps),
            "steps_done": len(run.applied),
            "undo_left": len(run.undo),
            "in_flight": run.in_flight,
            "holder": run.holder,
            "started": started,
            "elapsed_seconds": elapsed,
            "eta_seconds": eta,
            "eta_basis": basis,
            "pending": [c.value for c in run.pending],
        }

    def _dead(self, run: Run | None, lock: dict[str, Any] | None) -> str | None:
        """A run that died (not ended, lock free), once seen so on two polls in a row: the
        run and the lock are read apart, so one poll may fall between a run's end and its
        lock's release."""
        if run is None or run.ended or lock is not None:
            self._dead_seen = None
            return None
        seen, self._dead_seen = self._dead_seen, (run.id, run.version)
        if seen != self._dead_seen:
            return None
        where = f" at step {run.in_flight}" if run.in_flight else ""
        return (
            f"run {run.id} died in {run.phase.value}{where} (its lock is free);"
            " `lupo-migrate recover` rolls it back"
        )

    # -------------------------------------------------------------- serving

    def _poll_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll):
            self._safe_refresh()

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a bug in a view must not stop the page either
            logger.exception("dashboard: refresh failed")
            state = dict(self.state())
            state["errors"] = [f"dashboard: {_one_line(exc)}"]
            self._publish(state)

    @contextlib.contextmanager
    def serve(self, *, port: int = 0) -> Iterator[str]:
        """Serve the page on 127.0.0.1:*port* (0: any free port) while the block runs, the
        database polled every :attr:`poll` seconds; yields the page's URL.

        Raises:
            ConfigurationError: the port cannot be listened on (in use, or privileged).
        """
        try:
            server = http.server.ThreadingHTTPServer((HOST, port), handler(self.state_json))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve the dashboard on {HOST}:{port}: {exc.strerror or exc};"
                " choose another --port (0: any free one)"
            ) from None
        server.daemon_threads = True
        self._safe_refresh()  # the first snapshot, before the first request
        stop = threading.Event()
        poller = threading.Thread(
            target=self._poll_until, args=(stop,), name="lupo-dashboard-poll", daemon=True
        )
        serving = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="lupo-dashboard-http",
            daemon=True,
        )
        poller.start()
        serving.start()
        try:
            yield f"http://{HOST}:{server.server_address[1]}/"
        finally:
            stop.set()
            server.shutdown()
            server.server_close()
            poller.join(timeout=30)
