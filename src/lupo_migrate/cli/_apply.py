"""``lupo-migrate apply``, ``verify`` and ``baseline``: the commands that bring a database to the
files (or record that it is)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import attrs
import click

from lupo_migrate.cli._common import (
    _EPILOG,
    _db_options,
    _observers,
    _operator,
    _print_findings,
    _settings,
    cli,
)
from lupo_migrate.core import errors

if TYPE_CHECKING:
    from lupo_migrate.run.orchestrator import Orchestrator


@cli.command("apply", epilog=_EPILOG)
@_db_options
@click.option("--upto", metavar="ID", help="Apply only this step and the steps it needs.")
@click.option("--dry-run", is_flag=True, help="Print the statements in order; touch nothing.")
@click.option(
    "--out-of-order",
    is_flag=True,
    help="Apply pending versioned files whose version is lower than the highest applied one"
    " (refused otherwise; out_of_order = true in lupo.toml says the same).",
)
@click.option(
    "--table-budget",
    type=int,
    help="Core table limit, checked before the run and after each step that creates a table"
    " (default: off, or table_budget in lupo.toml).",
)
@click.option(
    "--backup-limit",
    type=click.IntRange(min=0),
    help="Most rows of a table backed up before a run changes it (default 100000); a larger"
    " table needs a down section.",
)
@click.option(
    "--allow-drift",
    is_flag=True,
    help="Run although the schema changed since the last run (reported as a warning); the"
    " run then records the live schema as the new reference.",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "live", "plain", "off"]),
    default="auto",
    show_default=True,
    envvar="LUPO_MIGRATE_PROGRESS",
    help="Progress on stderr: one live line (a terminal), milestone lines (plain; the"
    " default when stderr is not a terminal) or none. Env: LUPO_MIGRATE_PROGRESS.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    metavar="PORT",
    help="Serve the run's metrics in Prometheus text at http://127.0.0.1:PORT/metrics while"
    " it works (0: any free port, printed on stderr).",
)
@click.option(
    "--allow-irreversible",
    "irreversible",
    multiple=True,
    metavar="ID",
    help="Let step ID run although its rollback cannot be guaranteed (no down section, and"
    " statements whose effects cannot be told); recorded. Repeatable.",
)
@click.option(
    "--forbid",
    multiple=True,
    metavar="RULE",
    help="Refuse the run when a statement breaks lint rule RULE (foreign-key, trigger,"
    " drop-table, drop-column, narrowing-modify, update-without-where, delete-without-where);"
    " repeatable, added to forbid in lupo.toml.",
)
@click.option(
    "--operator",
    default=None,
    help="Who runs it, recorded with the run (status and history show it); default: $USER.",
)
def apply_command(
    upto: str | None,
    dry_run: bool,
    out_of_order: bool,
    table_budget: int | None,
    backup_limit: int | None,
    allow_drift: bool,
    forbid: tuple[str, ...],
    irreversible: tuple[str, ...],
    operator: str | None,
    progress: str,
    metrics_port: int | None,
    **opts: Any,
) -> None:
    """Apply the pending migrations in DIRECTORY to the database, as one run.

    The run freezes writes, takes the target's run lock, checks dependencies, checksums and
    the table budget, applies each step statement by statement (journalled), and on any
    failure rolls the run back. A second apply with nothing new does nothing and says so.
    """
    from lupo_migrate.session import fast_path

    settings = _settings(
        table_budget=table_budget,
        backup_limit=backup_limit,
        out_of_order=True if out_of_order else None,
        **opts,
    )
    if forbid:
        settings = attrs.evolve(settings, forbid=(*settings.forbid, *forbid))
    if allow_drift and settings.drift == "error":
        settings = attrs.evolve(settings, drift="warn")
    read = None
    if not dry_run:
        read = fast_path.read_steps(settings)
        if read is not None and not read[1]:  # nothing to apply: no database is touched
            click.echo(
                f"warning: no migration files in {settings.migrations}; nothing applied, and"
                " the database was not opened (is the directory right?)",
                err=True,
            )
            return
        # (not asked again when the entry point asked a moment ago and was told no)
        skip = fast_path.declined() or upto is not None
        count = None if skip else fast_path.nothing_to_do(settings, read)
        if count is not None:  # a re-run's answer, without loading SQLAlchemy
            click.echo(f"nothing to do: all {count} migration(s) already applied")
            return
    from lupo_migrate.session import session

    if dry_run:
        shown, linted = session.dry_run_report(settings, upto=upto)
        _print_findings(linted, err=True)  # what apply would warn of, or refuse
        if not shown:
            click.echo("-- nothing to do: every migration is applied already")
        online = session.online_plan(settings, shown)  # MySQL/MariaDB: each ALTER's algorithm
        for step, statements in shown:
            click.echo(f"-- {step.id} ({step.path})")
            for number, statement in enumerate(statements):
                said = online.get((step.id, number))
                if said is not None:
                    click.echo(f"-- online: {said}")
                click.echo(statement.rstrip() + ";")
        if any(f.severity.fails for f in linted):  # apply would refuse the run
            sys.exit(errors.MigrationFileError.exit_code)
        return
    registry, steps = read if read is not None else (None, None)
    with (
        session.session(settings, registry=registry, steps=steps) as opened,
        contextlib.ExitStack() as stack,
    ):
        opened.orchestrator.observers = _observers(progress, metrics_port, stack)
        opened.orchestrator.allow_irreversible = irreversible
        if operator:
            opened.orchestrator.operator = operator
        stopped = stack.enter_context(_stop_on_signals(opened.orchestrator))
        _print_findings(opened.missing_files(), err=True)
        result = opened.apply(upto=upto)
        if result.nothing_to_do:
            _print_findings(result.findings, err=True)
            click.echo(f"nothing to do: all {len(opened.steps)} migration(s) already applied")
            return
        run = result.run
        assert run is not None
        click.echo(
            f"run {run.id}: {run.outcome.value if run.outcome else '?'},"
            f" {len(run.applied)} of {len(result.plan)} step(s) applied"
        )
        _print_findings(result.findings, err=True)
        if stopped and run.outcome is not None and run.outcome.value == "rolled_back":
            name, code = _SIGNALS[signal.Signals(stopped[0])]
            click.echo(f"stopped by {name}: the run rolled back to where it began", err=True)
            sys.exit(code)
        if run.outcome is not None and run.outcome.value != "completed":
            if not any(f.severity.fails for f in result.findings):
                reason = run.failure.message if run.failure else "see lupo-migrate status"
                click.echo(f"error: {reason}", err=True)
            if run.outcome.value == "failed":  # the rollback did not finish
                click.echo(
                    "error: the run's rollback did not finish, so the target is blocked:"
                    f" `lupo-migrate show {run.id}` says what is left; put the database right"
                    " by hand, then `lupo-migrate resolve`",
                    err=True,
                )
                sys.exit(errors.RollbackIncompleteError.exit_code)
            click.echo("the run was rolled back: the database is as it was before it", err=True)
            sys.exit(errors.StepError.exit_code)


#: The signals that stop a run cleanly: their name for users and the exit code a shell gives
#: a process they ended (128 + the signal's number).
_SIGNALS: Final = {signal.SIGINT: ("Ctrl-C", 130), signal.SIGTERM: ("SIGTERM", 143)}


@contextlib.contextmanager
def _stop_on_signals(orchestrator: Orchestrator) -> Iterator[list[int]]:
    """While the block runs, the first Ctrl-C (SIGINT) or SIGTERM asks the run to stop
    cleanly (see ``Orchestrator.request_stop``): no further step starts, and the run rolls
    back to where it began. A second one stops at once (``KeyboardInterrupt``: the run stays
    where it was, and ``recover`` repairs it). Yields the signals received, in order.

    Outside the main thread (an embedding host's worker) signals are left alone, and so is a
    signal the process was started with ignored.
    """
    got: list[int] = []

    def again(signum: int, _frame: object) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    def first(signum: int, _frame: object) -> None:
        got.append(signum)
        name = _SIGNALS[signal.Signals(signum)][0]
        orchestrator.request_stop(f"stopped by {name}; rolled back to where the run began")
        for each in watched:
            signal.signal(each, again)
        click.echo(
            f"{name}: stopping. No further step starts; the statement running now finishes,"
            f" then the run rolls back to where it began. {name} again stops at once"
            " (`lupo-migrate recover` then rolls the run back).",
            err=True,
        )

    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    # A signal the process was started with ignored (a shell's background job, nohup-like
    # wrappers) stays ignored, as Python itself leaves it.
    watched = [each for each in _SIGNALS if signal.getsignal(each) is not signal.SIG_IGN]
    previous = {each: signal.signal(each, first) for each in watched}
    try:
        yield got
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


@cli.command("verify", epilog=_EPILOG)
@_db_options
@click.option("--accept", "accept_id", metavar="ID", help="Accept the edited file's new checksum.")
@click.option("--operator", default=None, help="Who accepts (recorded); default: $USER.")
def verify_command(accept_id: str | None, operator: str | None, **opts: Any) -> None:
    """Check that applied files are unchanged; with --accept, record an edit as accepted."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        if accept_id is not None:
            who = _operator(operator)
            entry = opened.accept(accept_id, operator=who)
            click.echo(f"accepted {accept_id} at checksum {entry.checksum[:12]} (by {who})")
            return
        edited = opened.verify()
        _print_findings(edited, err=False)
        click.echo(f"verified {len(opened.applied())} applied file(s): {len(edited)} edited")
        if edited:
            sys.exit(errors.MigrationFileError.exit_code)


@cli.command("baseline", epilog=_EPILOG)
@_db_options
@click.option("--upto", metavar="ID", required=True, help="The last step already in the database.")
def baseline_command(upto: str, **opts: Any) -> None:
    """Mark an existing database as being at step ID: record ID and what it needs as applied."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts)) as opened:
        entries = opened.baseline(upto)
        click.echo(f"baseline: {len(entries)} step(s) recorded as applied, up to {upto}")
