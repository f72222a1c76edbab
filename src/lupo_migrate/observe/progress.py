"""Progress of a run on the command line's stderr: an observer of the run's events.

On a terminal one line is rewritten in place (phase, step n/N and its id, statements, ETA),
at most ten times a second, and cleared when the run ends; otherwise (a pipe, a CI log) plain
lines are written at the milestones only: the run starts, each phase, each step done, the
end. The library never uses this by itself: the command line attaches it to ``apply``,
``rollback`` and ``recover``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TextIO

from lupo_migrate.observe import Event

__all__ = ["Progress"]


class Progress:
    """Renders run events on *stream* (see the module docstring).

    Args:
        stream: where to write (the command line gives stderr).
        live: rewrite one line (a terminal) rather than print milestones.
        monotonic: the time source (tests inject one).
    """

    def __init__(
        self, stream: TextIO, *, live: bool, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.live = live
        self._monotonic = monotonic
        self._started = 0.0
        self._phase = ""
        self._done = 0
        self._total = 0
        self._step = ""
        self._statements = 0
        self._drawn = 0.0
        self._width = 0
        self._copying = ""  # the online copy under way, for the live line

    def __call__(self, event: Event) -> None:
        data = event.data
        phase = str(data.get("phase", self._phase))
        if event.name == "run.started":
            self._started = self._monotonic()
            self._total = int(data.get("steps_total", 0))
            self._done = 0
            self._milestone(f"run {event.run_id[:12]}: {self._total} step(s)")
        if event.name == "statement":
            self._statements += 1
        if event.name == "step.waiting":
            self._say(
                f"{data.get('step')}: statement {int(data.get('index') or 0) + 1} must wait for"
                f" {'; '.join(data.get('sessions') or ()) or 'another session'}; the step is"
                " rolled back meanwhile, so what it changed before is not held"
                f" (up to {float(data.get('until') or 0):g} s)"
            )
        if event.name == "step.lock_retry":
            self._say(
                f"{data.get('step')}: statement {int(data.get('index') or 0) + 1} gave up"
                f" waiting {float(data.get('waited') or 0):g} s for a lock"
                f" ({'; '.join(data.get('sessions') or ()) or 'held by another session'});"
                f" retry {data.get('attempt')} of {data.get('retries')}"
                f" in {float(data.get('pause') or 0):.1f} s"
            )
        if event.name == "step.copy":
            self._copy_said(data)
        if "steps_total" in data:
            self._total = int(data["steps_total"])
        done = int(data.get("steps_done", self._done))
        if event.name == "run.transition":
            step = str(data.get("step") or "")
            if done > self._done and self._step:
                verb = "undone" if phase == "rolling_back" else "applied"
                self._milestone(f"[{done}/{self._total}] {self._step} {verb}")
            self._step = step
        self._done = done
        if phase != self._phase and event.name != "run.ended":
            self._phase = phase
            if phase != "idle":  # a run starts and ends there: the first and last lines say so
                self._milestone(f"phase: {phase}")
        if event.name == "run.ended":
            self._clear()
            self._milestone(f"run {event.run_id[:12]}: {data.get('outcome')}")
            return
        self._draw(force=event.name != "statement")

    def _copy_said(self, data: Mapping[str, Any]) -> None:
        """An online copy's news (``step.copy``): its progress in the live line, or a line
        (at most one a second: the copy reports no more often); what holds it, always."""
        table, kind = data.get("table", "?"), data.get("event")
        if kind == "progress":
            total = max(int(data.get("total") or 0), 1)
            copied = int(data.get("copied") or 0)
            eta = data.get("eta")
            left = "" if eta is None else f", about {timedelta(seconds=round(float(eta)))} left"
            self._copying = f"copy {table} {100 * copied // total}%"
            self._milestone(f"online copy of {table}: {copied:,} of about {total:,} rows{left}")
        elif kind == "throttled":
            self._say(f"online copy of {table}: waiting: {data.get('reason')}")
        elif kind == "postponed":
            self._say(
                f"online copy of {table}: rows copied; the cut-over waits for"
                " `lupo-migrate cutover --now`"
            )
        elif kind == "cut_over":
            self._copying = ""
            self._milestone(f"online copy of {table}: cut over")
        elif kind == "tidy_failed":
            self._say(
                f"online copy of {table}: cut over, but its own tables and triggers could not"
                f" all be dropped ({data.get('reason')}); `lupo-migrate copies` lists them"
            )
        elif kind == "resumed":
            self._milestone(
                f"online copy of {table}: resumed after {int(data.get('copied') or 0):,} rows"
            )

    def _eta(self) -> str:
        elapsed = self._monotonic() - self._started
        if not 0 < self._done < self._total or elapsed <= 0:
            return "--:--"
        left = elapsed / self._done * (self._total - self._done)
        return str(timedelta(seconds=round(left)))

    def _draw(self, *, force: bool) -> None:
        if not self.live:
            return
        now = self._monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        line = (
            f"{self._phase:<15} {self._done}/{self._total}  {self._step[:40]:<40}"
            f"  {self._statements} stmt  ETA {self._eta()}"
        )
        if self._copying:
            line += f"  {self._copying}"
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def _say(self, text: str) -> None:
        """A line shown whether the progress is live or not (something the operator should
        see now: a retry after a lock wait)."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _milestone(self, text: str) -> None:
        if self.live:
            return
        self.stream.write(text + "\n")
        self.stream.flush()
