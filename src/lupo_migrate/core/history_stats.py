"""Run metrics, their Prometheus text, and history analytics (functional core: no I/O).

The shell counts (``lupo_migrate.observe``); this module turns counts into figures:

- :class:`Counts` -> :func:`snapshot` -> :class:`MetricsSnapshot` (progress percent, files per
  minute, validation success rate, errors by type, CPU, memory, database time);
- :func:`prometheus` renders snapshots in the Prometheus text exposition format (0.0.4);
- :func:`history_stats` reads finished runs (:class:`RunRecord`) for runs by outcome, rollback
  frequency, duration trends and failure patterns by error type and by file type;
- :func:`expected_seconds` estimates how long a run of N steps should take from that history
  (escalation fires when a run exceeds it).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

__all__ = [
    "Counts",
    "HistoryStats",
    "MetricsSnapshot",
    "RunRecord",
    "expected_seconds",
    "history_stats",
    "prometheus",
    "snapshot",
]

#: A run takes longer than expected when it exceeds the estimate by this factor.
SLACK: Final = 1.5
#: Runs of history an estimate needs before escalation trusts it.
MIN_HISTORY: Final = 3


@attrs.frozen(kw_only=True)
class Counts:
    """What the shell counted for one run so far.

    Attributes:
        run_id, target: which run.
        phase: its phase now.
        steps_total: the plan's steps.
        steps_done: steps applied (or undone, while rolling back).
        elapsed: seconds since the run started.
        validations, validations_passed: validation stages run, and passed.
        errors: failure kind (or error type) -> how many.
        cpu_seconds: the process's CPU time since the run started.
        memory_peak_bytes: the process's peak resident memory.
        database_seconds: time spent waiting for statements.
        statements: statements run.
        copy_rows_done, copy_rows_total, copy_eta: the online copy under way (MySQL/MariaDB,
            ``sql.online_copy``): rows copied, rows to copy (the catalog's estimate), seconds
            left (None: not known); 0, 0, None when none is.
    """

    run_id: str
    target: str
    phase: str
    steps_total: int = 0
    steps_done: int = 0
    elapsed: float = 0.0
    validations: int = 0
    validations_passed: int = 0
    errors: Mapping[str, int] = attrs.field(factory=dict)
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    database_seconds: float = 0.0
    statements: int = 0
    outcome: str | None = None
    copy_rows_done: int = 0
    copy_rows_total: int = 0
    copy_eta: float | None = None


@attrs.frozen(kw_only=True)
class MetricsSnapshot:
    """The figures of one run at one moment (see :func:`snapshot`)."""

    run_id: str
    target: str
    phase: str
    outcome: str | None
    progress_percent: float
    files_per_minute: float
    validation_success_rate: float | None
    errors_by_type: Mapping[str, int]
    cpu_seconds: float
    memory_peak_bytes: int
    database_seconds: float
    statements: int
    steps_done: int
    steps_total: int
    elapsed_seconds: float
    eta_seconds: float | None
    copy_rows_done: int = 0
    copy_rows_total: int = 0
    copy_eta_seconds: float | None = None


def snapshot(counts: Counts) -> MetricsSnapshot:
    """The figures of *counts*: a finished run is at 100 %, an empty plan too."""
    total, done = counts.steps_total, min(counts.steps_done, counts.steps_total)
    finished = counts.outcome is not None
    progress = 100.0 if finished or total == 0 else round(100.0 * done / total, 2)
    minutes = counts.elapsed / 60.0
    rate = done / minutes if minutes > 0 else 0.0
    eta = None
    if not finished and 0 < done < total and counts.elapsed > 0:
        eta = counts.elapsed / done * (total - done)
    success = counts.validations_passed / counts.validations if counts.validations else None
    return MetricsSnapshot(
        run_id=counts.run_id,
        target=counts.target,
        phase=counts.phase,
        outcome=counts.outcome,
        progress_percent=progress,
        files_per_minute=round(rate, 3),
        validation_success_rate=success,
        errors_by_type=dict(counts.errors),
        cpu_seconds=counts.cpu_seconds,
        memory_peak_bytes=counts.memory_peak_bytes,
        database_seconds=counts.database_seconds,
        statements=counts.statements,
        steps_done=done,
        steps_total=total,
        elapsed_seconds=counts.elapsed,
        eta_seconds=eta,
        copy_rows_done=counts.copy_rows_done,
        copy_rows_total=counts.copy_rows_total,
        copy_eta_seconds=counts.copy_eta,
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(shot: MetricsSnapshot) -> str:
    return f'target="{_label(shot.target)}",run="{_label(shot.run_id)}"'


_GAUGES: Final = (
    ("progress_percent", "Share of the plan's steps done (100 once the run ended)."),
    ("files_per_minute", "Steps done per minute since the run started."),
    ("validation_success_rate", "Validation stages passed / run (NaN before the first)."),
    ("cpu_seconds", "CPU time of the orchestrator process since the run started."),
    ("memory_peak_bytes", "Peak resident memory of the orchestrator process."),
    ("database_seconds", "Time spent waiting for the database's statements."),
    ("steps_done", "Steps applied (or undone while rolling back)."),
    ("steps_total", "Steps of the plan."),
    ("elapsed_seconds", "Seconds since the run started."),
    ("copy_rows_done", "Rows the online copy under way has copied (0: none is under way)."),
    ("copy_rows_total", "Rows the online copy under way has to copy (the catalog's estimate)."),
    ("copy_eta_seconds", "Seconds the online copy under way needs yet (NaN: not known)."),
)


def prometheus(snapshots: Iterable[MetricsSnapshot], *, prefix: str = "lupo_migrate") -> str:
    """*snapshots* in the Prometheus text format: one gauge per figure, labelled by target,
    run and phase; errors as ``<prefix>_errors_total{type=...}``."""
    shots = list(snapshots)
    lines: list[str] = []
    for name, help_text in _GAUGES:
        lines += [f"# HELP {prefix}_{name} {help_text}", f"# TYPE {prefix}_{name} gauge"]
        for shot in shots:
            value = getattr(shot, name)
            shown = "NaN" if value is None else repr(float(value))
            labels = f'{_labels(shot)},phase="{_label(shot.phase)}"'
            lines.append(f"{prefix}_{name}{{{labels}}} {shown}")
    lines += [
        f"# HELP {prefix}_errors_total Failures by type in the run.",
        f"# TYPE {prefix}_errors_total counter",
    ]
    for shot in shots:
        for kind, count in sorted(shot.errors_by_type.items()):
            labels = (
                f'target="{_label(shot.target)}",run="{_label(shot.run_id)}",type="{_label(kind)}"'
            )
            lines.append(f"{prefix}_errors_total{{{labels}}} {count}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ analytics


@attrs.frozen(kw_only=True)
class RunRecord:
    """A run as history analytics see it.

    Attributes:
        run_id: the run.
        outcome: ``completed``, ``rolled_back``, ``failed``, or None (not ended).
        started, ended: seconds since the epoch (ended None while it works).
        steps: the plan's step count.
        failure_kind: the failure that sent it rolling back, if any.
        failed_file_type: the file type of the step that failed, if one did.
        operator_rollback: it undid an earlier completed run (an operator's rollback).
    """

    run_id: str
    outcome: str | None
    started: float
    ended: float | None
    steps: int
    failure_kind: str | None = None
    failed_file_type: str | None = None
    operator_rollback: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else max(0.0, self.ended - self.started)


@attrs.frozen(kw_only=True)
class HistoryStats:
    """What the history of a target says (see :func:`history_stats`)."""

    runs: int
    by_outcome: Mapping[str, int]
    rollback_frequency: float
    operator_rollbacks: int
    durations: tuple[tuple[str, float], ...]
    median_seconds: float | None
    p90_seconds: float | None
    trend_seconds_per_run: float | None
    failures_by_type: Mapping[str, int]
    failures_by_file_type: Mapping[str, int]


def _slope(values: Sequence[float]) -> float | None:
    """Least-squares slope of *values* against their index (None for fewer than 2)."""
    if len(values) < 2:
        return None
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    den = sum((i - mean_x) ** 2 for i in range(n))
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / den


def history_stats(records: Iterable[RunRecord]) -> HistoryStats:
    """Runs by outcome, how often runs were rolled back (automatically or by an operator),
    the durations of ended runs (oldest first) with their median, 90th percentile and trend
    (seconds more per run, least squares), and failures by error type and file type."""
    ordered = sorted(records, key=lambda r: r.started)
    applying = [r for r in ordered if not r.operator_rollback]
    outcomes = Counter(r.outcome or "in progress" for r in ordered)
    rolled = sum(1 for r in applying if r.outcome in ("rolled_back", "failed"))
    durations = tuple((r.run_id, r.seconds) for r in ordered if r.seconds is not None)
    seconds = [s for _, s in durations]
    p90 = None
    if seconds:
        p90 = statistics.quantiles(seconds, n=10)[-1] if len(seconds) > 1 else seconds[0]
    return HistoryStats(
        runs=len(ordered),
        by_outcome=dict(outcomes),
        rollback_frequency=rolled / len(applying) if applying else 0.0,
        operator_rollbacks=sum(1 for r in ordered if r.operator_rollback),
        durations=durations,
        median_seconds=statistics.median(seconds) if seconds else None,
        p90_seconds=p90,
        trend_seconds_per_run=_slope(seconds),
        failures_by_type=dict(Counter(r.failure_kind for r in ordered if r.failure_kind)),
        failures_by_file_type=dict(
            Counter(r.failed_file_type for r in ordered if r.failed_file_type)
        ),
    )


def expected_seconds(records: Iterable[RunRecord], steps: int) -> tuple[float, int] | None:
    """How long a run of *steps* steps should take, from the completed runs: the median
    seconds per step times *steps*, times :data:`SLACK`; with how many runs it rests on.
    None with fewer than :data:`MIN_HISTORY` completed runs."""
    per_step = [
        r.seconds / max(r.steps, 1)
        for r in records
        if r.outcome == "completed" and r.seconds is not None and not r.operator_rollback
    ]
    if len(per_step) < MIN_HISTORY:
        return None
    return statistics.median(per_step) * max(steps, 1) * SLACK, len(per_step)
