"""``lupo-migrate queue``: enqueue runs, list, cancel and drain them."""

from __future__ import annotations

import sys
from typing import Any

import click

from lupo_migrate.cli._common import (
    _EPILOG,
    _OPERATOR,
    _db_only_options,
    _db_options,
    _operator,
    _print_findings,
    _settings,
    _when,
    cli,
)
from lupo_migrate.core import errors

# ---------------------------------------------------------------------- queue


@cli.group("queue", epilog=_EPILOG, invoke_without_command=True)
@click.pass_context
def queue_group(ctx: click.Context) -> None:
    """The run queue: `queue add` queues a run, `queue drain` runs the queued ones (priority
    first, then age; one run per target at a time), `queue cancel ID` cancels a queued one,
    `queue list` (or `queue` alone, with settings from lupo.toml or the environment) shows
    them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(queue_list_command)


def _entry_line(entry: Any) -> str:
    upto = f" upto {entry.upto}" if entry.upto else ""
    line = (
        f"{entry.id:>5}  {entry.status.value:<9}  priority {entry.priority:<4}"
        f"  {_when(entry.enqueued_at)}  by {entry.enqueued_by}  {len(entry.steps)} step(s){upto}"
    )
    if entry.worker and entry.status.value == "running":
        line += f"  (worker {entry.worker} since {_when(entry.claimed_at)})"
    if entry.outcome:
        line += f"  {entry.outcome}" + (f" run {entry.run_id}" if entry.run_id else "")
    if entry.detail:
        line += f"  -- {entry.detail}"
    return line


@queue_group.command("list", epilog=_EPILOG)
@_db_only_options
@click.option("--all", "show_all", is_flag=True, help="Also the done and cancelled entries.")
def queue_list_command(show_all: bool = False, **opts: Any) -> None:
    """List the target's queue: the running entry, then the queued ones in the order they
    will run (no migration file is read)."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        found = opened.queue(finished=show_all)
        if not found:
            click.echo(f"the queue of target {opened.target} is empty")
        for entry in found:
            click.echo(_entry_line(entry))


@queue_group.command("add", epilog=_EPILOG)
@_db_options
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Higher runs first (same: older)."
)
@click.option("--upto", metavar="ID", help="Run only up to this step (default: every pending one).")
@click.option("--by", "operator", default=None, help="Who queues (recorded); default: $USER.")
def queue_add_command(priority: int, upto: str | None, operator: str | None, **opts: Any) -> None:
    """Queue a run of the pending migrations in DIRECTORY (the plan is checked now and made
    again when the entry runs)."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        entry = opened.enqueue(priority=priority, upto=upto, by=_operator(operator))
        click.echo(
            f"queued entry {entry.id} for target {opened.target}: priority {entry.priority},"
            f" {len(entry.steps)} step(s) pending now"
        )


@queue_group.command("cancel", epilog=_EPILOG)
@click.argument("entry_id", metavar="ID", type=int)
@_db_only_options
@_OPERATOR
def queue_cancel_command(entry_id: int, operator: str | None, **opts: Any) -> None:
    """Cancel queued entry ID (a running one cannot be: let it end, then roll it back)."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        entry = opened.cancel_queued(entry_id, by=_operator(operator))
        click.echo(f"cancelled queue entry {entry.id} ({entry.detail})")


@queue_group.command("drain", epilog=_EPILOG)
@_db_options
@click.option("--limit", type=click.IntRange(min=0), help="Run at most N entries.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to wait while another process drains this target's queue.",
)
@click.option("--keep-going", is_flag=True, help="Go on after a run that did not complete.")
def queue_drain_command(limit: int | None, wait: float, keep_going: bool, **opts: Any) -> None:
    """Run the queued entries of the target one at a time, priority first, then age.

    One drainer per target at a time (a lease in the ephemeral locks table); each entry is
    claimed once, run like `apply`, and marked done with its run and outcome. An entry left
    running by a drainer that died is queued again first. Draining stops when the queue is
    empty, after --limit entries, when a run does not complete (unless --keep-going), or when
    the target cannot run now (the entry keeps its place).
    """
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        report = opened.drain(limit=limit, wait=wait, keep_going=keep_going)
        for done in report.drained:
            click.echo(_entry_line(done.entry))
            if done.result is not None:
                _print_findings(done.result.findings, err=True)
        click.echo(
            f"{len(report.drained)} queue entr{'y' if len(report.drained) == 1 else 'ies'} run"
        )
        if report.stopped is not None:
            click.echo(f"error: stopped: {report.stopped}", err=True)
            sys.exit(errors.StepError.exit_code)
