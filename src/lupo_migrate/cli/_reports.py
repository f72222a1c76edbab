"""``lupo-migrate status``, ``history``, ``show``, ``alerts`` and ``decisions``: what the
orchestration tables say."""

from __future__ import annotations

from typing import Any

import click

from lupo_migrate.cli._common import (
    _EPILOG,
    _db_only_options,
    _db_options,
    _duration,
    _report_crash,
    _settings,
    _when,
    cli,
)
from lupo_migrate.core import errors


@cli.command("status", epilog=_EPILOG)
@_db_options
def status_command(**opts: Any) -> None:
    """Show the latest run of the target and what is applied and pending."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        _report_crash(opened.orchestrator)
        latest = opened.status()
        applied = opened.applied()
        pending = opened.pending()
        click.echo(f"target {opened.target}: {len(applied)} applied, {len(pending)} pending")
        if latest is None:
            click.echo("no run yet")
        else:
            outcome = latest.outcome.value if latest.outcome else "in progress"
            blocked = (
                " (BLOCKED: run lupo-migrate resolve after a manual fix)" if latest.blocked else ""
            )
            click.echo(f"latest run {latest.id}: {latest.phase.value}, {outcome}{blocked}")
        frozen = opened.orchestrator.freeze.status()
        if frozen is not None:
            click.echo(
                f"writes frozen by {frozen.owner} since {_when(frozen.since)},"
                f" until {_when(frozen.expires)} at the latest"
            )
        _print_applied(opened, applied)
        for step in pending.steps:
            click.echo(f"pending  {step.id}  {step.path}")
        for finding in opened.missing_files():
            click.echo(f"missing  {finding.step_id}  {finding.message}")


def _print_applied(opened: Any, applied: dict[str, Any]) -> None:
    """One line per applied step, in the order they were applied (Flyway's ``info``): when,
    how long its statements took, who ran it, the run that applied it, its file; an accepted
    edit is marked."""
    from lupo_migrate.core.clock import from_stamp

    storage = opened.orchestrator.storage
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    users: dict[str, str] = {}
    for run_id in {entry.run_id for entry in applied.values()}:
        run = storage.get_run(run_id)
        # "-": a run recorded before its user was kept (or a baseline's ledger rows)
        users[run_id] = (run.started_by if run is not None else None) or "-"
        for row in storage.journal(run_id):
            first, last = spans.get((run_id, row.step_id), (row.started_at, row.started_at))
            end = row.done_at if row.done_at is not None else row.started_at
            spans[(run_id, row.step_id)] = (min(first, row.started_at), max(last, end))
    from lupo_migrate.core.planner import plan

    try:
        order = {step.id: n for n, step in enumerate(plan(opened.steps).steps)}
    except errors.LupoMigrateError:  # the files cannot be planned: the ledger's order of time only
        order = {}
    width = max((len(step_id) for step_id in applied), default=0)
    who = max((len(user) for user in users.values()), default=0)
    ranked = sorted(applied.values(), key=lambda e: (e.applied_at, order.get(e.step_id, 1 << 30)))
    for entry in ranked:
        span = spans.get((entry.run_id, entry.step_id))
        took = "-"
        if span is not None:
            seconds = (from_stamp(span[1]) - from_stamp(span[0])).total_seconds()
            took = "<1 s" if seconds < 1 else f"{seconds:.0f} s"
        accepted = "  (edit accepted)" if getattr(entry, "accepted_by", None) else ""
        click.echo(
            f"applied  {entry.step_id:<{width}}  {_when(entry.applied_at)}  {took:>6}"
            f"  by {users[entry.run_id]:<{who}}  run {entry.run_id[:12]}  {entry.path}{accepted}"
        )


@cli.command("history", epilog=_EPILOG)
@_db_only_options
@click.option(
    "--stats",
    "stats",
    is_flag=True,
    help="Analytics instead: runs by outcome, rollback frequency, duration trend, failures"
    " by error type and by file type.",
)
def history_command(stats: bool, **opts: Any) -> None:
    """List the target's runs, oldest first, with their outcome and steps."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        _report_crash(opened.orchestrator)
        if stats:
            _print_stats(opened.orchestrator.stats())
            return
        runs = opened.history()
        if not runs:
            click.echo("no run yet")
        undone = {
            record.run_id: record
            for record in opened.orchestrator.decisions()
            if record.status == "rolled_back"
        }
        for run in runs:
            outcome = run.outcome.value if run.outcome else run.phase.value
            cls = f" class {run.classification.value}" if run.classification else ""
            line = f"{run.id}  {outcome:<12}{cls}  {len(run.applied)}/{len(run.steps)} step(s)"
            if run.started_by:
                line += f" by {run.started_by}"
            record = undone.get(run.id)
            if record is not None:  # completed, then rolled back by an operator
                what = (
                    "rolled back"
                    if record.classification is None
                    else (f"class {record.label} scope rolled back")
                )
                by = f" by {record.decided_by}" if record.decided_by else ""
                on = f" on {_when(record.decided_at)}" if record.decided_at else ""
                line += f", then {what}{by}{on}"
            click.echo(line)
            for finding in opened.orchestrator.storage.findings(run.id):
                if finding.code == "recovered":  # it died, and how it was recovered
                    click.echo(f"    {finding.message}")


def _print_stats(stats: Any) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    click.echo(f"runs: {stats.runs}")
    for outcome, count in sorted(stats.by_outcome.items()):
        click.echo(f"  {outcome:<12} {count}")
    click.echo(
        f"rollback frequency: {stats.rollback_frequency:.0%} of the runs that applied"
        f" (and {stats.operator_rollbacks} rollback(s) an operator asked for)"
    )
    trend = stats.trend_seconds_per_run
    click.echo(
        f"duration: median {seconds(stats.median_seconds)}, 90th percentile"
        f" {seconds(stats.p90_seconds)}, trend"
        + (" -" if trend is None else f" {trend:+.2f} s per run")
    )
    for title, counts in (
        ("failures by error type", stats.failures_by_type),
        ("failures by file type", stats.failures_by_file_type),
    ):
        click.echo(f"{title}:" + ("" if counts else " none"))
        for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            click.echo(f"  {name:<24} {count}")


@cli.command("show", epilog=_EPILOG)
@click.argument("run_id", metavar="RUN")
@_db_only_options
def show_command(run_id: str, **opts: Any) -> None:
    """Show one run: its outcome, steps, findings and the doctrine's execution checklist
    (pre, during, post), each item ticked from what was recorded."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        orchestrator = opened.orchestrator
        run = orchestrator.find_run(run_id)
        state = run.outcome.value if run.outcome else run.phase.value
        click.echo(f"run {run.id}: {state}, {len(run.applied)}/{len(run.steps)} step(s) applied")
        if run.failure is not None and run.failure.kind.value == "operator_abort":
            click.echo(f"rolled back on request: {run.failure.message}")
        elif run.failure is not None:
            click.echo(f"failure ({run.failure.kind.value}): {run.failure.message}")
        findings = orchestrator.storage.findings(run.id)
        if findings:
            click.echo("findings:")
            for finding in findings:
                click.echo(f"  {finding.severity.value}: {finding}")
        stage = ""
        for item in orchestrator.checklist(run.id):
            if item.stage != stage:
                stage = item.stage
                click.echo(f"{stage}-migration:")
            click.echo(f"  {item.mark} {item.label}: {item.evidence}")


@cli.command("alerts", epilog=_EPILOG)
@_db_only_options
@click.option("--all", "show_all", is_flag=True, help="Also the resolved ones.")
@click.option("--ack", "ack_id", type=int, metavar="ID", help="Acknowledge alert ID.")
@click.option("--resolve", "resolve_id", type=int, metavar="ID", help="Resolve alert ID.")
def alerts_command(show_all: bool, ack_id: int | None, resolve_id: int | None, **opts: Any) -> None:
    """List the alerts of migration_alerts (unresolved ones unless --all), or acknowledge or
    resolve one."""
    from lupo_migrate.core.clock import to_stamp
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        orchestrator = opened.orchestrator
        storage: Any = orchestrator.storage
        if not hasattr(storage, "alerts"):
            raise errors.ConfigurationError("this storage keeps no alerts")
        ours = {run.id for run in orchestrator.history()}
        rows = [a for a in storage.alerts() if a.run_id is None or a.run_id in ours]
        for wanted, resolved in ((ack_id, False), (resolve_id, True)):
            if wanted is None:
                continue
            if not any(a.id == wanted for a in rows):
                raise errors.InvalidArgumentError(
                    f"no alert {wanted} on target {orchestrator.target_name};"
                    " `lupo-migrate alerts --all` lists them"
                )
            storage.close_alert(wanted, to_stamp(orchestrator.clock.now()), resolved=resolved)
            click.echo(f"alert {wanted} {'resolved' if resolved else 'acknowledged'}")
        if ack_id is not None or resolve_id is not None:
            return
        shown = [a for a in rows if show_all or a.resolved_at is None]
        if not shown:
            click.echo("no unresolved alert" if not show_all else "no alert recorded")
        for a in shown:
            state = (
                "resolved"
                if a.resolved_at is not None
                else "acknowledged"
                if a.acknowledged_at is not None
                else "open"
            )
            click.echo(f"{a.id:>5}  {_when(a.created_at)}  {a.level:<8}  {state:<12}  {a.message}")


@cli.command("decisions", epilog=_EPILOG)
@_db_only_options
@click.option("--all", "show_all", is_flag=True, help="Also the decided and final ones.")
def decisions_command(show_all: bool, **opts: Any) -> None:
    """List the rollbacks still possible (completed runs, pending B/C/D decisions) and the
    time left in their windows; with --all, the decided ones too."""
    from lupo_migrate.core.decisions import OPEN, time_left
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        orchestrator = opened.orchestrator
        _report_crash(orchestrator)
        now = orchestrator.clock.now()
        rows = [r for r in orchestrator.decisions() if show_all or r.status in OPEN]
        if not rows:
            click.echo("no open decision" if not show_all else "no decision recorded")
        for r in rows:
            left = time_left(r, now)
            window = "" if left is None or r.status not in OPEN else f", {_duration(left)} left"
            deadline = "" if r.deadline is None else f"  (until {_when(r.deadline)})"
            click.echo(
                f"{r.run_id}  {r.label:<3}  {r.status:<11}  {len(r.scope)} step(s){window}"
                f"{deadline}"
            )
