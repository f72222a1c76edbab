"""``lupo-migrate rollback``, ``accept``, ``purge``, ``recover``, ``thaw``, ``resolve`` and
``dashboard``: an operator's commands."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from lupo_migrate.cli._common import (
    _EPILOG,
    _OPERATOR,
    _SCOPE,
    _db_only_options,
    _db_options,
    _observers,
    _operator,
    _print_findings,
    _progress_setting,
    _scope,
    _settings,
    _when,
    cli,
)
from lupo_migrate.core import errors


@cli.command("rollback", epilog=_EPILOG)
@click.argument("run_id", metavar="RUN")
@_db_options
@_SCOPE
@_OPERATOR
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what the rollback would do (steps, rows that go back, rows kept,"
    " conflicts) and touch nothing.",
)
@click.option(
    "--conflicts",
    type=click.Choice(["keep", "undo"]),
    default=None,
    help="Rows the run changed that the application changed again since: keep the"
    " application's version (keep) or undo the run's change anyway (undo). Without it,"
    " any such row stops the rollback before it touches anything.",
)
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Do not ask for confirmation (asked only when standard input is a terminal).",
)
def rollback_command(
    run_id: str,
    scope: str,
    operator: str | None,
    dry_run: bool,
    conflicts: str | None,
    yes: bool,
    **opts: Any,
) -> None:
    """Roll back RUN (an id or its first characters), a completed run, while its window is
    open: the whole run, or with --scope the steps of one of its pending decisions.

    Only the run's own changes are undone: its steps newest first (down sections, derived
    inverses), then the rows it inserted, changed or deleted, put back by key from what was
    kept before the run. Rows the application wrote since stay. A row the run changed that
    the application changed again is a conflict: listed, and nothing is touched unless
    --conflicts says which side wins. --dry-run shows the plan first. On a terminal the plan
    is shown and confirmation asked (-y: not asked).
    """
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened, contextlib.ExitStack() as stack:
        if dry_run:
            preview = opened.orchestrator.preview_rollback(
                run_id, opened.steps, scope=_scope(scope)
            )
            _print_preview(preview)
            return
        if not yes and sys.stdin.isatty():
            preview = opened.orchestrator.preview_rollback(
                run_id, opened.steps, scope=_scope(scope)
            )
            _print_preview(preview)
            if not click.confirm(f"Roll back run {preview.run_id} as shown above?"):
                click.echo("nothing rolled back")
                return
        opened.orchestrator.observers = _observers(_progress_setting(), None, stack)
        result = opened.orchestrator.rollback(
            run_id,
            opened.steps,
            scope=_scope(scope),
            operator=_operator(operator),
            conflicts=conflicts,
        )
        run = result.run
        assert run is not None
        outcome = run.outcome.value if run.outcome else "?"
        click.echo(f"run {run.id}: {outcome}, {len(run.steps)} step(s) of the run undone")
        _print_findings(result.findings, err=True)
        if outcome != "rolled_back":
            reason = run.failure.message if run.failure else "see lupo-migrate status"
            click.echo(f"error: {reason}", err=True)
            sys.exit(errors.StepError.exit_code)


def _print_preview(preview: Any) -> None:
    """``rollback --dry-run``: what the rollback would do, in the order it does it."""
    click.echo(f"rollback of run {preview.run_id} (dry run: nothing touched)")
    click.echo(f"steps undone, newest first ({len(preview.steps)}):")
    for undo in preview.steps:
        click.echo(f"  {undo.step_id}: {undo.source}")
        for statement in undo.statements[:5]:
            click.echo(f"      {' '.join(statement.split())[:110]}")
        if len(undo.statements) > 5:
            click.echo(f"      ... and {len(undo.statements) - 5} more")
    if not preview.verified:
        click.echo("pre-images: none kept (purged?): the steps' downs only, nothing compared")
    if preview.undo:
        click.echo("rows of the run that go back (by key, from the copy kept before it):")
        for table, counts in sorted(preview.undo.items()):
            shown = ", ".join(f"{n} {what}" for what, n in counts.items()) or "none"
            click.echo(f"  {table}: {shown}")
    for line in preview.set_aside:
        click.echo(f"set aside by the run, brought back: {line}")
    if preview.kept:
        click.echo(
            "rows written since the run stay as they are in: " + ", ".join(sorted(preview.kept))
        )
    if preview.conflicts or preview.more:
        click.echo(f"conflicts ({preview.conflicting}): rows the run changed, changed again since")
        for conflict in preview.conflicts:
            click.echo(f"  {conflict}")
        if preview.more:
            click.echo(f"  ... and {preview.more} more")
        click.echo("  (--conflicts keep leaves them as they are now; --conflicts undo undoes them)")
    for line in preview.lost:
        click.echo(f"would lose: {line}")
    for line in preview.changed:
        click.echo(f"changed since the run (the rollback is refused): {line}")
    for line in preview.unfit:
        click.echo(f"would not fit (the rollback is refused): {line}")
    if not (preview.conflicting or preview.lost or preview.changed or preview.unfit):
        click.echo("no conflicts: the rollback would lose nothing written since the run")


@cli.command("accept", epilog=_EPILOG)
@click.argument("run_id", metavar="RUN")
@_db_options
@_SCOPE
@_OPERATOR
def accept_command(run_id: str, scope: str, operator: str | None, **opts: Any) -> None:
    """Keep RUN's changes: its open decisions (or the one of --scope) become final now."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        who = _operator(operator)
        chosen = opened.orchestrator.accept(run_id, scope=_scope(scope), operator=who)
        for r in chosen:
            what = "the run's changes" if r.classification is None else f"class {r.label} scope"
            click.echo(
                f"accepted: {what} of run {r.run_id} stay (by {who}), and can no longer be"
                " rolled back; `lupo-migrate purge` frees the space its backups take"
            )


@cli.command("purge", epilog=_EPILOG)
@_db_options
@click.option(
    "--ephemeral",
    "ephemeral_only",
    is_flag=True,
    help="Only delete the expired rows of the ephemeral tables (no migration file is read;"
    " safe to run often, from several hosts at once).",
)
def purge_command(ephemeral_only: bool, **opts: Any) -> None:
    """Make decisions whose window closed final, drop the backups nobody needs any more, and
    delete the expired rows of the ephemeral tables (sessions, cache, temp_data, job_queue,
    locks). Safe to run while runs work and while other purges run."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=not ephemeral_only) as opened:
        if not ephemeral_only:
            purged = opened.orchestrator.purge()
            for run_id, tables in purged:
                click.echo(f"purged {run_id}: {len(tables)} backup table(s) dropped")
            click.echo(f"{len(purged)} run(s) purged")
        counts = opened.purge_ephemeral()
        detail = ", ".join(f"{table} {count}" for table, count in counts.items())
        click.echo(f"{sum(counts.values())} expired ephemeral row(s) deleted ({detail})")


@cli.command("recover", epilog=_EPILOG)
@_db_options
@click.option(
    "--resume",
    is_flag=True,
    help="Carry the run on to the end instead of rolling it back (a run that died rolling"
    " back goes on rolling back).",
)
@click.option(
    "--wait",
    "statement_wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to wait for a statement the dead run left running on the server"
    " (MySQL/MariaDB; default 120, setting statement_wait).",
)
@_OPERATOR
def recover_command(
    resume: bool, statement_wait: float | None, operator: str | None, **opts: Any
) -> None:
    """Roll back a run that died (its process killed, its host gone) to where it started,
    or with --resume carry it on.

    The journal says which statements ran (the live schema is looked up for one that was in
    flight); rolling back, the run's pre-images, kept as it went, put back what the steps'
    downs do not, and the result is compared and recorded; resuming, the statements that ran
    are not run again. The dead run's write freeze is lifted. A statement the dead run left
    running on the server (MySQL/MariaDB) is waited for first (--wait).
    """
    from lupo_migrate.session import session

    settings = _settings(statement_wait=statement_wait, **opts)
    with session.session(settings) as opened, contextlib.ExitStack() as stack:
        opened.orchestrator.observers = _observers(_progress_setting(), None, stack)
        dead = opened.orchestrator.crashed()
        rolling = dead is not None and dead.phase.value == "rolling_back"
        expected = "completed" if resume and not rolling else "rolled_back"
        result = opened.orchestrator.recover(
            opened.steps, operator=_operator(operator), resume=resume
        )
        run = result.run
        if run is None:
            click.echo("no run had died; lifted the write freeze a dead process left")
            return
        outcome = run.outcome.value if run.outcome else "?"
        steps = f" ({len(result.applied)} step(s) applied)" if result.applied else ""
        click.echo(f"run {run.id}: recovered, {outcome}{steps}")
        _print_findings(result.findings, err=True)
        if outcome != expected:
            sys.exit(errors.StepError.exit_code)


@cli.command("thaw", epilog=_EPILOG)
@_db_options
@click.option("--emergency", is_flag=True, required=True, help="Lift the freeze whoever holds it.")
@click.option("--reason", required=True, help="Why (recorded in migration_alerts).")
@_OPERATOR
def thaw_command(emergency: bool, reason: str, operator: str | None, **opts: Any) -> None:
    """Lift the write freeze at once, whoever holds it (a run's host is gone and its lease has
    not run out yet). The override is recorded with who and why."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        who = _operator(operator)
        lifted = opened.orchestrator.freeze.emergency_thaw(who, reason)
        if lifted is None:
            click.echo("nothing was frozen (recorded anyway)")
        else:
            click.echo(
                f"thawed: the freeze of {lifted.owner} since {_when(lifted.since)} (by {who})"
            )


@cli.command("resolve", epilog=_EPILOG)
@_db_options
@click.option("--note", default="", help="What was fixed by hand (recorded).")
@_OPERATOR
def resolve_command(note: str, operator: str | None, **opts: Any) -> None:
    """Clear the block a failed rollback left, once the target was fixed by hand."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        run = opened.orchestrator.resolve(operator=_operator(operator), note=note)
        click.echo(f"run {run.id}: resolved; the target accepts runs again")


# ---------------------------------------------------------------------- dashboard


@cli.command("dashboard", epilog=_EPILOG)
@_db_only_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
def dashboard_command(port: int, **opts: Any) -> None:
    """Serve a read-only page on 127.0.0.1 showing the target's current run (phase
    timeline, step, ETA), the lock and freeze holders, the queue, the open decisions with
    the time left in their windows, the run's checklist and charts of the history.

    The page reads the orchestration tables every half second; nothing is written (the
    tables are created, as by every command, if missing). No migration file is read. Runs
    until Ctrl-C.
    """
    import contextlib
    import threading

    from lupo_migrate.dashboard import Dashboard
    from lupo_migrate.session import session

    with (
        session.session(_settings(**opts), files=False) as opened,
        Dashboard(opened.orchestrator).serve(port=port) as url,
    ):
        click.echo(f"dashboard: {url} (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


@cli.command("downgrade", epilog=_EPILOG)
@_db_options
@click.option("--to", "to", metavar="ID", required=True, help="The step to go back to.")
@click.option(
    "--lose-data",
    is_flag=True,
    help="Go on although the downs drop or empty tables or columns that hold rows (they are"
    " named and counted first).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be undone and lost; touch nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@_OPERATOR
def downgrade_command(
    to: str, lose_data: bool, dry_run: bool, yes: bool, operator: str | None, **opts: Any
) -> None:
    """Go back to step ID at any time: every applied step that ID does not need is undone,
    newest first, by its down section, .down.sql twin or derived inverse, as a run of its
    own (Alembic's `downgrade ID`, Sqitch's `revert --to`). What the downs would lose (rows
    of tables they drop or empty, values of columns they drop) is counted first and refuses
    the downgrade unless --lose-data. `rollback RUN` instead undoes one run's own changes
    and keeps what was written since."""
    from lupo_migrate.run import downgrade as _downgrade
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened, contextlib.ExitStack() as stack:
        orchestrator = opened.orchestrator
        if dry_run or (not yes and sys.stdin.isatty()):
            chosen = _downgrade.plan_downgrade(orchestrator, to, opened.steps)
            click.echo(f"downgrade to {to}: {len(chosen.undo)} step(s) undone, newest first")
            for step in chosen.undo:
                click.echo(f"  {step.id} ({step.path})")
                for statement in chosen.statements[step.id]:
                    click.echo(f"      {' '.join(statement.split())[:100]}")
            if chosen.losses:
                click.echo(f"would lose: {chosen.loss_text()}")
            if dry_run:
                return
            if not chosen.undo or not click.confirm(f"Downgrade to {to}?"):
                click.echo("nothing undone")
                return
        orchestrator.observers = _observers(_progress_setting(), None, stack)
        result = orchestrator.downgrade(
            to, opened.steps, operator=_operator(operator), lose_data=lose_data
        )
        if result.run is None:
            click.echo(f"nothing to undo: no applied step comes after {to}")
            return
        run = result.run
        outcome = run.outcome.value if run.outcome else "?"
        click.echo(
            f"run {run.id}: downgraded to {to}, {len(run.steps)} step(s) undone"
            if outcome == "rolled_back"
            else f"run {run.id}: {outcome}"
        )
        _print_findings(result.findings, err=True)
        if outcome != "rolled_back":
            reason = run.failure.message if run.failure else "see lupo-migrate status"
            click.echo(f"error: {reason}", err=True)
            if not run.blocked:
                sys.exit(_downgrade_stopped(run, result))
            sys.exit(errors.RollbackIncompleteError.exit_code)


def _downgrade_stopped(run: Any, result: Any) -> int:
    """Say where a downgrade that stopped at a failed down left the target (nothing of that
    down stayed); the exit code."""
    stopped_at = run.failure.step_id if run.failure else "?"
    refused = getattr(result, "refused", None)
    again = getattr(result, "again", None)
    if refused:
        click.echo(
            f"applying again what the downgrade had undone could not start: {refused}; the"
            f" target stands where the downgrade stopped, at {stopped_at}",
            err=True,
        )
        return errors.StepError.exit_code
    if again is None or again.run is None:
        click.echo(
            f"the downgrade stopped at {stopped_at} before undoing anything: the target"
            " is as it was",
            err=True,
        )
        return errors.StepError.exit_code
    redone = ", ".join(again.run.steps)
    if again.outcome is not None and again.outcome.value == "completed":
        click.echo(
            f"run {again.run.id}: applied again what the downgrade had undone ({redone}):"
            " the target is where the downgrade began",
            err=True,
        )
        return errors.StepError.exit_code
    click.echo(
        f"run {again.run.id}: applying again what the downgrade had undone ({redone}) failed"
        f" too ({again.outcome.value if again.outcome else '?'}): the target stands where the"
        f" downgrade stopped, at {stopped_at}; `lupo-migrate status` lists what is applied",
        err=True,
    )
    if again.run.blocked:
        return errors.RollbackIncompleteError.exit_code
    return errors.StepError.exit_code
