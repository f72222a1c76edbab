"""The doctrine's execution checklist for one run, ticked from what was recorded (functional
core: no I/O).

Fifteen items in three stages (pre, during, post), each ``done``, ``failed``, ``pending``
(not reached yet), ``skipped`` (does not apply to this run) or ``manual`` (an operator's to
tick: the system cannot know whether stakeholders read their mail), with the evidence it
rests on. The shell gathers :class:`RunFacts` from the storage (findings, journal, alerts,
decisions, the fingerprint recorded after the run); :func:`checklist` decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from lupo_migrate.core.model import WORKING_PHASES, FailureKind, Finding, Phase, Run

__all__ = ["DONE", "FAILED", "MANUAL", "PENDING", "SKIPPED", "Item", "RunFacts", "checklist"]

DONE: Final = "done"
FAILED: Final = "failed"
PENDING: Final = "pending"
SKIPPED: Final = "skipped"
MANUAL: Final = "manual"


@attrs.frozen(kw_only=True)
class RunFacts:
    """What was recorded about a run, for the checklist.

    Attributes:
        run: the run as stored.
        findings: its validation log.
        statements: statements its journal records as done.
        alerts: alerts recorded for it.
        backup: how its rollback material was kept (None: nothing was kept).
        freeze: the write freeze used (``lease``, ``read_only``...), None if none.
        heartbeat: whether its lock holder's heartbeat was recorded.
        probes: performance probes configured.
        baseline: whether the schema fingerprint was recorded after it (the next drift
            check's reference).
        observed: whether observers (metrics, a dashboard) followed it live, when known.
    """

    run: Run
    findings: Sequence[Finding] = ()
    statements: int = 0
    alerts: int = 0
    backup: str | None = None
    freeze: str | None = "lease"
    heartbeat: bool = True
    probes: int = 0
    baseline: bool = False
    observed: bool | None = None


@attrs.frozen(kw_only=True)
class Item:
    """One checklist line."""

    stage: str
    label: str
    state: str
    evidence: str

    @property
    def mark(self) -> str:
        """``[x]`` done, ``[!]`` failed, ``[ ]`` pending, ``[-]`` skipped, ``[?]`` manual."""
        return {DONE: "[x]", FAILED: "[!]", PENDING: "[ ]", SKIPPED: "[-]", MANUAL: "[?]"}[
            self.state
        ]


def _codes(findings: Sequence[Finding]) -> set[str]:
    return {f.code for f in findings}


def _reached(run: Run, phase: Phase) -> bool:
    """Whether the run got to *phase* (or past it) on its way."""
    order = [Phase.PREPARING, Phase.VALIDATING_PRE, Phase.MIGRATING, Phase.VALIDATING_POST]
    if run.ended:
        if phase is Phase.MIGRATING or phase is Phase.VALIDATING_PRE:
            return bool(run.applied) or run.failure is None or run.failure.step_id is not None
        return run.failure is None or (run.outcome is not None and bool(run.pending))
    if run.phase is Phase.ROLLING_BACK:
        return phase in (Phase.PREPARING, Phase.VALIDATING_PRE) or bool(run.applied)
    if run.phase in WORKING_PHASES and run.phase in order and phase in order:
        return order.index(run.phase) >= order.index(phase)
    return False


def checklist(facts: RunFacts) -> tuple[Item, ...]:
    """The fifteen items for *facts*' run, pre, during and post."""
    run, codes = facts.run, _codes(facts.findings)
    failing = [f for f in facts.findings if f.severity.fails]
    ended = run.ended
    migrated = _reached(run, Phase.MIGRATING)
    no_rollback = "no-rollback" in codes
    items: list[Item] = []

    def add(stage: str, label: str, state: str, evidence: str) -> None:
        items.append(Item(stage=stage, label=label, state=state, evidence=evidence))

    # Pre
    if facts.backup is not None:
        add("pre", "System backup completed", DONE, facts.backup)
    else:
        add(
            "pre",
            "System backup completed",
            PENDING if not ended else SKIPPED,
            "no rollback material was kept for this run",
        )
    add(
        "pre",
        "Migration plan reviewed",
        MANUAL,
        f"plan of {len(run.steps)} step(s) recorded before anything ran; `lupo-migrate plan`"
        " and `apply --dry-run` show it",
    )
    if no_rollback:
        add("pre", "Rollback plan tested", FAILED, "a step has no way back (no-rollback)")
    elif "rollback-verified" in codes:
        add("pre", "Rollback plan tested", DONE, "rolled back and verified against the pre-images")
    elif migrated or ended:
        add(
            "pre",
            "Rollback plan tested",
            DONE,
            "every step has a rollback (checked before the run)",
        )
    else:
        add("pre", "Rollback plan tested", PENDING, "checked at pre-validation")
    add(
        "pre",
        "Stakeholders notified",
        DONE if facts.alerts else MANUAL,
        f"{facts.alerts} alert(s) recorded and sent to the alert sinks"
        if facts.alerts
        else "no alert recorded yet: tell them yourself",
    )
    add(
        "pre",
        "Monitoring enabled",
        DONE if facts.heartbeat or facts.observed else FAILED,
        "heartbeats recorded" + (" and followed live" if facts.observed else ""),
    )

    # During
    if facts.freeze is None:
        add("during", "System freeze active", SKIPPED, "no write freeze configured")
    else:
        add(
            "during",
            "System freeze active",
            DONE if migrated or ended else PENDING,
            f"writes frozen ({facts.freeze}) while the run worked",
        )
    add(
        "during",
        "Progress monitoring active",
        DONE if facts.statements or ended else PENDING,
        f"{facts.statements} statement(s) journalled (intent, done)",
    )
    during_failed = (
        run.failure is not None
        and run.failure.kind
        in (
            FailureKind.CRITICAL_VALIDATION,
            FailureKind.DATA_INTEGRITY,
        )
        and run.failure.step_id is not None
    )
    add(
        "during",
        "Validation checks passing",
        FAILED if during_failed else (DONE if migrated else PENDING),
        run.failure.message if during_failed and run.failure else "every step checked after it ran",
    )
    add(
        "during",
        "Error handling ready",
        DONE,
        "write-ahead journal; a failure rolls the run back (class A)",
    )
    material = next(
        (
            f
            for f in facts.findings
            if f.code in ("rollback-capability", "rollback-material-missing")
        ),
        None,
    )
    if no_rollback or (material is not None and material.code != "rollback-capability"):
        state, evidence = (
            FAILED,
            material.message
            if material is not None and not no_rollback
            else "a step cannot be undone",
        )
    elif material is not None:
        state, evidence = DONE, material.message
    else:
        state = DONE if migrated or ended else PENDING
        evidence = "every applied step can be undone"
    add("during", "Rollback capability verified", state, evidence)

    # Post
    add(
        "post",
        "System thaw completed",
        DONE if ended else PENDING,
        "writes thawed when the run ended" if ended else f"the run is in {run.phase.value}",
    )
    post_reached = ended and (run.failure is None or bool(run.pending))
    if not ended:
        add("post", "Validation passed", PENDING, "post-validation has not run yet")
    elif not post_reached:
        add("post", "Validation passed", SKIPPED, "the run was rolled back before it")
    elif run.pending:
        classes = ", ".join(c.value for c in run.pending)
        add("post", "Validation passed", FAILED, f"findings of class {classes}: decisions pending")
    else:
        add("post", "Validation passed", DONE, f"{len(failing)} failing finding(s)")
    if not facts.probes:
        add("post", "Performance verified", SKIPPED, "no performance probes configured")
    elif "performance" in codes:
        add("post", "Performance verified", FAILED, "a probe got slower (class B)")
    else:
        add(
            "post",
            "Performance verified",
            DONE if post_reached else PENDING,
            f"{facts.probes} probe(s) timed before and after",
        )
    add(
        "post",
        "Documentation updated",
        DONE if ended else PENDING,
        "the run, its journal and its findings are in the history",
    )
    add(
        "post",
        "Monitoring baseline established",
        DONE if facts.baseline else (PENDING if not ended else SKIPPED),
        "schema fingerprint recorded for the next drift check"
        if facts.baseline
        else "no fingerprint recorded",
    )
    return tuple(items)
