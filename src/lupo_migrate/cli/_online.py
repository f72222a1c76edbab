"""``lupo-migrate copies``, ``pause``, ``resume``, ``throttle`` and ``cutover``: an operator's
hold on the online copies a run makes on MySQL/MariaDB (``sql.online_copy``), from another
process. Each change is written in the copy's checkpoint, which the copy reads before each
chunk and before its cut-over, and recorded among the run's findings (``online-control``)."""

from __future__ import annotations

from typing import Any

import click

from lupo_migrate.cli._common import _EPILOG, _OPERATOR, _db_only_options, _operator, _settings, cli
from lupo_migrate.core import errors
from lupo_migrate.core.model import Finding, Severity
from lupo_migrate.sql.pt_osc import PHASE

#: Controls only lupo_migrate's own copy has (pt-online-schema-change's are its pause file).
_OWN_ONLY = frozenset({"postponed", "chunk_time"})

_TABLE = click.option(
    "--table",
    default=None,
    help="The table whose copy is meant (default: every copy under way).",
)


def _control(table: str | None, operator: str | None, said: str, opts: Any, **values: Any) -> None:
    """Set *values* on the copies of *table* (or all), and record *said* on their runs."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        orch = opened.orchestrator
        copies = getattr(orch.target, "online_copies", None)
        found = [c for c in (copies() if copies else []) if table in (None, c.table)]
        if not found:
            where = f" of {table}" if table else ""
            raise errors.DecisionError(
                f"no online copy{where} is under way on this database; `lupo-migrate copies`"
                " lists them"
            )
        external = sorted(
            {c.table for c in found if c.phase == PHASE} if set(values) & _OWN_ONLY else ()
        )
        if external:
            raise errors.DecisionError(
                f"the online copy of {', '.join(external)} runs under pt-online-schema-change,"
                " which cannot postpone its cut-over or change its chunk time while it runs;"
                " `lupo-migrate pause` holds it, `throttle --max-threads` too; nothing was changed"
            )
        who = _operator(operator)
        for copy in found:
            orch.target.control_online_copy(copy.checkpoint, **values)  # type: ignore[attr-defined]
            text = f"online copy of {copy.table}: {said} (by {who})"
            try:
                run = orch.find_run(copy.run)
            except errors.LupoMigrateError:
                run = None
            if run is not None:
                orch.storage.record_findings(
                    run.id, [Finding(severity=Severity.INFO, message=text, code="online-control")]
                )
            click.echo(f"run {copy.run}: {text}")


@cli.command("copies", epilog=_EPILOG)
@_db_only_options
def copies_command(**opts: Any) -> None:
    """List the online copies under way on the database (MySQL/MariaDB): table, run, phase,
    rows copied, and the operator's holds."""
    from lupo_migrate.session import session

    with session.session(_settings(**opts), files=False) as opened:
        copies = getattr(opened.orchestrator.target, "online_copies", None)
        found = copies() if copies else []
        if not found:
            click.echo("no online copy is under way")
        for copy in found:
            holds = [
                *(["paused"] if copy.paused else []),
                *(["cut-over postponed"] if copy.postponed else []),
                *(
                    [f"at most {copy.most_threads} threads"]
                    if copy.most_threads is not None
                    else []
                ),
                *([f"chunks of {copy.chunk_time:g} s"] if copy.chunk_time is not None else []),
            ]
            shown = f" ({', '.join(holds)})" if holds else ""
            click.echo(
                f"{copy.table}: run {copy.run}, {copy.phase}, {copy.copied:,} of about"
                f" {copy.estimated:,} rows copied{shown}"
            )


@cli.command("pause", epilog=_EPILOG)
@_db_only_options
@_TABLE
@_OPERATOR
def pause_command(table: str | None, operator: str | None, **opts: Any) -> None:
    """Pause the online copies under way (or the one of --table) after their current chunk;
    the change log keeps being applied, so nothing is lost while paused. `lupo-migrate
    resume` goes on."""
    _control(table, operator, "paused", opts, paused=1)


@cli.command("resume", epilog=_EPILOG)
@_db_only_options
@_TABLE
@_OPERATOR
def resume_command(table: str | None, operator: str | None, **opts: Any) -> None:
    """Let paused online copies (or the one of --table) go on."""
    _control(table, operator, "resumed", opts, paused=0)


@cli.command("throttle", epilog=_EPILOG)
@_db_only_options
@_TABLE
@click.option(
    "--max-threads",
    type=click.IntRange(min=0),
    default=None,
    help="Wait before each chunk while the server's Threads_running is above this (0: never).",
)
@click.option(
    "--chunk-time",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds each chunk should take.",
)
@_OPERATOR
def throttle_command(
    table: str | None,
    max_threads: int | None,
    chunk_time: float | None,
    operator: str | None,
    **opts: Any,
) -> None:
    """Change how hard the online copies under way (or the one of --table) work: they read
    the new figures before their next chunk."""
    values: dict[str, Any] = {}
    if max_threads is not None:
        values["most_threads"] = max_threads
    if chunk_time is not None:
        values["chunk_time"] = chunk_time
    if not values:
        raise click.UsageError("give --max-threads, --chunk-time or both")
    said = "throttled (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")"
    _control(table, operator, said, opts, **values)


@cli.command("cutover", epilog=_EPILOG)
@_db_only_options
@_TABLE
@click.option(
    "--postpone",
    "postpone",
    flag_value=True,
    default=None,
    help="Keep the copy up to date once it is done, without swapping the tables in.",
)
@click.option("--now", "postpone", flag_value=False, help="Let a postponed cut-over go ahead.")
@_OPERATOR
def cutover_command(
    table: str | None, postpone: bool | None, operator: str | None, **opts: Any
) -> None:
    """Postpone the cut-over of the online copies under way (or the one of --table): each
    keeps applying the application's changes to its shadow table when its rows are copied,
    and swaps the tables in only after `lupo-migrate cutover --now`."""
    if postpone is None:
        raise click.UsageError("give --postpone or --now")
    said = "cut-over postponed" if postpone else "cut-over let go ahead"
    _control(table, operator, said, opts, postponed=int(postpone))
