"""The ``lupo-migrate`` command line: parses, calls ``_api``, prints, exits.

Only ``LupoMigrateError`` is caught: it is printed as ``error: <message>`` on stderr and the
process exits with the error's category code (see ``EXIT_CODES``). ``--traceback`` re-raises
instead. Anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import click

from lupo_migrate import errors
from lupo_migrate._model import Finding

__all__ = ["EXIT_CODES", "main"]

#: Exit codes by error category; 0 is success, 1 any other lupo_migrate error.
EXIT_CODES: Final = {
    "ok": 0,
    "other error": errors.LupoMigrateError.exit_code,
    "usage (click)": 2,
    "invalid argument": errors.InvalidArgumentError.exit_code,
    "illegal transition": errors.IllegalTransitionError.exit_code,
    "target blocked": errors.TargetBlockedError.exit_code,
    "migration files": errors.MigrationFileError.exit_code,
    "plan (cycle, unknown dependency)": errors.PlanError.exit_code,
    "handler registry": errors.RegistryError.exit_code,
    "storage": errors.StorageError.exit_code,
    "lock": errors.LockError.exit_code,
    "lock held": errors.LockHeldError.exit_code,
    "run failed (rolled back)": errors.StepError.exit_code,
    "configuration (URL, connection)": errors.ConfigurationError.exit_code,
    "decision not allowed (window closed, later run)": errors.DecisionError.exit_code,
    "writes frozen": errors.WritesFrozenError.exit_code,
    "internal (a bug)": errors.InternalError.exit_code,
}

_F = TypeVar("_F", bound=Callable[..., Any])

_EPILOG = "Exit codes: " + ", ".join(f"{code} {what}" for what, code in EXIT_CODES.items()) + "."


def _dir_options(func: _F) -> _F:
    func = click.option(
        "--manifest",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Manifest (YAML/JSON) giving order and dependencies of header-less files;"
        " default: lupo-manifest.yaml or manifest.yaml in DIR if present.",
    )(func)
    func = click.argument("directory", type=click.Path(path_type=Path))(func)
    return func


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--traceback", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="lupo-migrate")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """Safe, observable and recoverable database schema migrations.

    Migration files live in a directory: SQL (doctrine), Python modules, agent records (YAML,
    JSON) and documentation (Markdown). Headers give ids and dependencies; files without one
    are ordered by their names (V1__x.sql, 1_x.up.sql, 4.1.2_x.sql) or by a manifest.
    """
    ctx.obj = {"traceback": traceback}


@cli.command("plan", epilog=_EPILOG)
@_dir_options
@click.option("--upto", metavar="ID", help="Plan only this step and the steps it needs.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def plan_command(directory: Path, manifest: Path | None, upto: str | None, fmt: str) -> None:
    """Print the plan for DIRECTORY: the order, the generations, types and checksums.

    Nothing is applied. The order is deterministic: dependencies first, then versions
    (V2 before V10), then ids. A generation is a group of steps whose dependencies all lie in
    earlier generations (they could run in parallel).
    """
    from lupo_migrate import _api  # networkx: loaded only by the commands that plan
    from lupo_migrate._plugins import default_registry

    report = _api.plan_directory(
        directory, manifest=manifest, upto=upto, registry=default_registry()
    )
    plan = report.plan
    if fmt == "json":
        data = {
            "root": str(report.root),
            "steps": [
                {
                    "position": i,
                    "id": s.id,
                    "path": s.path,
                    "type": s.file_type,
                    "version": s.version,
                    "checksum": s.checksum,
                    "depends_on": list(s.depends_on),
                }
                for i, s in enumerate(plan.steps, 1)
            ],
            "generations": [list(g) for g in plan.generations],
            "warnings": [str(f) for f in report.findings],
        }
        click.echo(json.dumps(data, indent=2))
        return
    generation_of = {sid: g for g, ids in enumerate(plan.generations, 1) for sid in ids}
    width = max((len(s.id) for s in plan.steps), default=2)
    click.echo(
        f"plan for {report.root}: {len(plan)} step(s) in {len(plan.generations)} generation(s)"
    )
    if plan.steps:
        click.echo(f"{'#':>5}  {'gen':>4}  {'id':<{width}}  {'type':<13}  {'checksum':<12}  path")
    for i, step in enumerate(plan.steps, 1):
        click.echo(
            f"{i:>5}  {generation_of[step.id]:>4}  {step.id:<{width}}  {step.file_type:<13}"
            f"  {step.checksum[:12]:<12}  {step.path}"
        )
    _print_findings(report.findings, err=True)


@cli.command("check", epilog=_EPILOG)
@_dir_options
@click.option("--strict", is_flag=True, help="Treat headers that are not strict YAML as errors.")
def check_command(directory: Path, manifest: Path | None, strict: bool) -> None:
    """Validate the migration files in DIRECTORY without touching any database.

    Reports every problem at once, each with its file, line and what to fix: unreadable or
    non-UTF-8 files, headers that break the header schema, unsafe YAML (aliases, custom tags),
    duplicate ids, unsafe paths, dependency cycles and unknown dependencies. Headers that read
    only with the lenient reader (for example an unquoted `target: @everyone`) are listed as
    "not strict YAML"; with --strict they fail the check.
    """
    from lupo_migrate import _api
    from lupo_migrate._plugins import default_registry

    report = _api.check_directory(directory, manifest=manifest, registry=default_registry())
    _print_findings(report.findings, err=False)
    errors_found = len(report.errors)
    failed = errors_found or (strict and report.not_strict)
    summary = (
        f"checked {report.files} file(s) in {report.root}: {errors_found} error(s),"
        f" {len(report.not_strict)} header(s) not strict YAML"
    )
    click.echo(summary, err=bool(failed))
    if failed:
        sys.exit(errors.MigrationFileError.exit_code)


# ---------------------------------------------------------------------- database commands


def _db_options(func: _F) -> _F:
    for option in reversed(
        [
            click.option(
                "--db", metavar="URL", help="Database URL (else LUPO_MIGRATE_DB, lupo.toml)."
            ),
            click.option(
                "--target", "target_name", metavar="NAME", help="Name runs are recorded under."
            ),
            click.option(
                "--manifest",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Manifest giving order and dependencies of header-less files.",
            ),
            click.option(
                "--config",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Settings file (TOML); lupo.toml and pyproject.toml are read anyway.",
            ),
            click.option(
                "--orchestration-schema",
                metavar="NAME",
                help="Database (MySQL) or schema (PostgreSQL) for lupo_migrate's own tables;"
                " created if missing.",
            ),
            click.option(
                "--files",
                type=click.Path(file_okay=False, path_type=Path),
                help="Directory documentation and agent-file steps change (default: the"
                " migrations directory's parent).",
            ),
            click.option(
                "--rename",
                "renames",
                multiple=True,
                metavar="OLD=NEW",
                help="Rewrite a literal schema name in SQL (e.g. lupopedia=test); repeatable.",
            ),
        ]
    ):
        func = option(func)
    return click.argument("directory", required=False, type=click.Path(path_type=Path))(func)


def _settings(
    directory: Path | None,
    db: str | None,
    target_name: str | None,
    manifest: Path | None,
    config: Path | None,
    renames: Sequence[str],
    orchestration_schema: str | None = None,
    **more: Any,
) -> Any:
    from lupo_migrate._config import from_options

    return from_options(
        directory=directory,
        db=db,
        target_name=target_name,
        manifest=manifest,
        config=config,
        renames=renames,
        orchestration_schema=orchestration_schema,
        **more,
    )


@cli.command("apply", epilog=_EPILOG)
@_db_options
@click.option("--upto", metavar="ID", help="Apply only this step and the steps it needs.")
@click.option("--dry-run", is_flag=True, help="Print the statements in order; touch nothing.")
@click.option("--table-budget", type=int, help="Core table limit (default 77).")
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
    "--forbid",
    multiple=True,
    metavar="RULE",
    help="Refuse the run when a statement breaks lint rule RULE (foreign-key, trigger,"
    " drop-table, drop-column, narrowing-modify, update-without-where, delete-without-where);"
    " repeatable, added to forbid in lupo.toml.",
)
def apply_command(
    upto: str | None,
    dry_run: bool,
    table_budget: int | None,
    backup_limit: int | None,
    allow_drift: bool,
    forbid: tuple[str, ...],
    progress: str,
    metrics_port: int | None,
    **opts: Any,
) -> None:
    """Apply the pending migrations in DIRECTORY to the database, as one run.

    The run freezes writes, takes the target's run lock, checks dependencies, checksums and
    the table budget, applies each step statement by statement (journalled), and on any
    failure rolls the run back. A second apply with nothing new does nothing and says so.
    """
    from lupo_migrate import _quick

    settings = _settings(table_budget=table_budget, backup_limit=backup_limit, **opts)
    if forbid:
        settings = attrs.evolve(settings, forbid=(*settings.forbid, *forbid))
    if allow_drift and settings.drift == "error":
        settings = attrs.evolve(settings, drift="warn")
    read = None
    if not dry_run:
        read = _quick.read_steps(settings)
        # (not asked again when the entry point asked a moment ago and was told no)
        skip = _quick.declined() or upto is not None
        count = None if skip else _quick.nothing_to_do(settings, read)
        if count is not None:  # a re-run's answer, without loading SQLAlchemy
            click.echo(f"nothing to do: all {count} migration(s) already applied")
            return
    from lupo_migrate import _session

    if dry_run:
        shown = _session.dry_run(settings, upto=upto)
        if not shown:
            click.echo("-- nothing to do: every migration is applied already")
        for step, statements in shown:
            click.echo(f"-- {step.id} ({step.path})")
            for statement in statements:
                click.echo(statement.rstrip() + ";")
        return
    registry, steps = read if read is not None else (None, None)
    with (
        _session.session(settings, registry=registry, steps=steps) as opened,
        contextlib.ExitStack() as stack,
    ):
        opened.orchestrator.observers = _observers(progress, metrics_port, stack)
        result = opened.apply(upto=upto)
        if result.nothing_to_do:
            click.echo(f"nothing to do: all {len(opened.steps)} migration(s) already applied")
            return
        run = result.run
        assert run is not None
        click.echo(
            f"run {run.id}: {run.outcome.value if run.outcome else '?'},"
            f" {len(run.applied)} of {len(result.plan)} step(s) applied"
        )
        _print_findings(result.findings, err=True)
        if run.outcome is not None and run.outcome.value != "completed":
            if not any(f.severity.fails for f in result.findings):
                reason = run.failure.message if run.failure else "see lupo-migrate status"
                click.echo(f"error: {reason}", err=True)
            sys.exit(errors.StepError.exit_code)


def _progress_setting() -> str:
    """``LUPO_MIGRATE_PROGRESS`` for the commands without ``--progress`` (rollback, recover)."""
    value = os.environ.get("LUPO_MIGRATE_PROGRESS", "auto")
    return value if value in ("auto", "live", "plain", "off") else "auto"


def _observers(progress: str, metrics_port: int | None, stack: contextlib.ExitStack) -> list[Any]:
    """The command line's observers of a run: progress on stderr, metrics served."""
    from lupo_migrate._progress import Progress

    observers: list[Any] = []
    live = sys.stderr.isatty() if progress == "auto" else progress == "live"
    if progress != "off":
        observers.append(Progress(sys.stderr, live=live))
    if metrics_port is not None:
        from lupo_migrate.observe import Metrics, serve_prometheus

        metrics = Metrics()
        observers.append(metrics)
        port = stack.enter_context(serve_prometheus(metrics, port=metrics_port))
        click.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
    return observers


@cli.command("status", epilog=_EPILOG)
@_db_options
def status_command(**opts: Any) -> None:
    """Show the latest run of the target and what is applied and pending."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
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
        for step in pending.steps:
            click.echo(f"pending  {step.id}  {step.path}")


@cli.command("history", epilog=_EPILOG)
@_db_options
@click.option(
    "--stats",
    "stats",
    is_flag=True,
    help="Analytics instead: runs by outcome, rollback frequency, duration trend, failures"
    " by error type and by file type.",
)
def history_command(stats: bool, **opts: Any) -> None:
    """List the target's runs, oldest first, with their outcome and steps."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts), files=False) as opened:
        _report_crash(opened.orchestrator)
        if stats:
            _print_stats(opened.orchestrator.stats())
            return
        runs = opened.history()
        if not runs:
            click.echo("no run yet")
        for run in runs:
            outcome = run.outcome.value if run.outcome else run.phase.value
            cls = f" class {run.classification.value}" if run.classification else ""
            click.echo(f"{run.id}  {outcome:<12}{cls}  {len(run.applied)}/{len(run.steps)} step(s)")
            for finding in opened.orchestrator.storage.findings(run.id):
                if finding.code == "recovered":  # it died, and how it was recovered
                    click.echo(f"    {finding.message}")


@cli.command("verify", epilog=_EPILOG)
@_db_options
@click.option("--accept", "accept_id", metavar="ID", help="Accept the edited file's new checksum.")
@click.option("--operator", default=None, help="Who accepts (recorded); default: $USER.")
def verify_command(accept_id: str | None, operator: str | None, **opts: Any) -> None:
    """Check that applied files are unchanged; with --accept, record an edit as accepted."""
    import getpass

    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
        if accept_id is not None:
            who = operator or getpass.getuser()
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
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
        entries = opened.baseline(upto)
        click.echo(f"baseline: {len(entries)} step(s) recorded as applied, up to {upto}")


_SCOPES: Final = {"run": None, "B": "B", "C": "C", "D": "D"}


def _scope(value: str) -> Any:
    from lupo_migrate._model import Classification

    code = _SCOPES[value]
    return None if code is None else Classification(code)


def _operator(operator: str | None) -> str:
    import getpass

    return operator or getpass.getuser()


_OPERATOR = click.option("--operator", default=None, help="Who decides (recorded); default: $USER.")
_SCOPE = click.option(
    "--scope",
    type=click.Choice(list(_SCOPES)),
    default="run",
    show_default=True,
    help="run: the whole run; B, C, D: the steps of that pending decision.",
)


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
@_db_options
def show_command(run_id: str, **opts: Any) -> None:
    """Show one run: its outcome, steps, findings and the doctrine's execution checklist
    (pre, during, post), each item ticked from what was recorded."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts), files=False) as opened:
        orchestrator = opened.orchestrator
        run = orchestrator.find_run(run_id)
        state = run.outcome.value if run.outcome else run.phase.value
        click.echo(f"run {run.id}: {state}, {len(run.applied)}/{len(run.steps)} step(s) applied")
        if run.failure is not None:
            click.echo(f"failure ({run.failure.kind.value}): {run.failure.message}")
        stage = ""
        for item in orchestrator.checklist(run.id):
            if item.stage != stage:
                stage = item.stage
                click.echo(f"{stage}-migration:")
            click.echo(f"  {item.mark} {item.label}: {item.evidence}")


@cli.command("alerts", epilog=_EPILOG)
@_db_options
@click.option("--all", "show_all", is_flag=True, help="Also the resolved ones.")
@click.option("--ack", "ack_id", type=int, metavar="ID", help="Acknowledge alert ID.")
@click.option("--resolve", "resolve_id", type=int, metavar="ID", help="Resolve alert ID.")
def alerts_command(show_all: bool, ack_id: int | None, resolve_id: int | None, **opts: Any) -> None:
    """List the alerts of migration_alerts (unresolved ones unless --all), or acknowledge or
    resolve one."""
    from lupo_migrate import _session
    from lupo_migrate._clock import to_stamp

    with _session.session(_settings(**opts), files=False) as opened:
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
@_db_options
@click.option("--all", "show_all", is_flag=True, help="Also the decided and final ones.")
def decisions_command(show_all: bool, **opts: Any) -> None:
    """List the rollbacks still possible (completed runs, pending B/C/D decisions) and the
    time left in their windows; with --all, the decided ones too."""
    from lupo_migrate import _session
    from lupo_migrate._decisions import OPEN, time_left

    with _session.session(_settings(**opts)) as opened:
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


def _when(stamp: int) -> str:
    from lupo_migrate._clock import from_stamp

    return from_stamp(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(delta: Any) -> str:
    minutes = int(delta.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}h{minutes:02d}m"


@cli.command("rollback", epilog=_EPILOG)
@click.argument("run_id", metavar="RUN")
@_db_options
@_SCOPE
@_OPERATOR
def rollback_command(run_id: str, scope: str, operator: str | None, **opts: Any) -> None:
    """Roll back RUN (an id or its first characters), a completed run, while its window is
    open: the whole run, or with --scope the steps of one of its pending decisions.

    The steps are undone newest first (down sections, derived inverses), then everything
    they touched is compared with the pre-images kept since the run and put back where it
    differs; the comparison is recorded.
    """
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened, contextlib.ExitStack() as stack:
        opened.orchestrator.observers = _observers(_progress_setting(), None, stack)
        result = opened.orchestrator.rollback(
            run_id, opened.steps, scope=_scope(scope), operator=_operator(operator)
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


@cli.command("accept", epilog=_EPILOG)
@click.argument("run_id", metavar="RUN")
@_db_options
@_SCOPE
@_OPERATOR
def accept_command(run_id: str, scope: str, operator: str | None, **opts: Any) -> None:
    """Keep RUN's changes: its open decisions (or the one of --scope) become final now."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
        who = _operator(operator)
        chosen = opened.orchestrator.accept(run_id, scope=_scope(scope), operator=who)
        for r in chosen:
            click.echo(f"accepted {r.run_id} {r.label} (by {who}); `lupo-migrate purge` frees")


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
    from lupo_migrate import _session

    with _session.session(_settings(**opts), files=not ephemeral_only) as opened:
        if not ephemeral_only:
            purged = opened.orchestrator.purge()
            for run_id, tables in purged:
                click.echo(f"purged {run_id}: {len(tables)} backup table(s) dropped")
            click.echo(f"{len(purged)} run(s) purged")
        counts = opened.purge_ephemeral()
        detail = ", ".join(f"{table} {count}" for table, count in counts.items())
        click.echo(f"{sum(counts.values())} expired ephemeral row(s) deleted ({detail})")


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
@_db_options
@click.option("--all", "show_all", is_flag=True, help="Also the done and cancelled entries.")
def queue_list_command(show_all: bool = False, **opts: Any) -> None:
    """List the target's queue: the running entry, then the queued ones in the order they
    will run (no migration file is read)."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts), files=False) as opened:
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
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
        entry = opened.enqueue(priority=priority, upto=upto, by=_operator(operator))
        click.echo(
            f"queued entry {entry.id} for target {opened.target}: priority {entry.priority},"
            f" {len(entry.steps)} step(s) pending now"
        )


@queue_group.command("cancel", epilog=_EPILOG)
@click.argument("entry_id", metavar="ID", type=int)
@_db_options
@_OPERATOR
def queue_cancel_command(entry_id: int, operator: str | None, **opts: Any) -> None:
    """Cancel queued entry ID (a running one cannot be: let it end, then roll it back)."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts), files=False) as opened:
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
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
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
    from lupo_migrate import _session

    settings = _settings(statement_wait=statement_wait, **opts)
    with _session.session(settings) as opened, contextlib.ExitStack() as stack:
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


def _report_crash(orchestrator: Any) -> None:
    """Every command that reads a target says first when its latest run died, or hangs."""
    stuck = orchestrator.hung()
    if stuck is not None:
        click.echo(
            f"warning: the run lock is held by {stuck.owner} since {_when(stuck.since)}, but"
            f" its last heartbeat was at {_when(stuck.heartbeat)}: that run hangs (its"
            " process is stopped or cut off). Stop the process; `lupo-migrate recover` then"
            " rolls its run back",
            err=True,
        )
    dead = orchestrator.crashed()
    if dead is not None:
        at = f" at step {dead.in_flight}" if dead.in_flight else ""
        click.echo(
            f"warning: run {dead.id} died in {dead.phase.value}{at}; `lupo-migrate recover`"
            " rolls it back (`recover --resume` carries it on)",
            err=True,
        )
        running = getattr(orchestrator.target, "dead_statement", None)
        session = running() if running is not None else None
        if session is not None:
            click.echo(
                f"warning: its last statement still runs on the server (session {session});"
                " recover waits for it to end",
                err=True,
            )


@cli.command("thaw", epilog=_EPILOG)
@_db_options
@click.option("--emergency", is_flag=True, required=True, help="Lift the freeze whoever holds it.")
@click.option("--reason", required=True, help="Why (recorded in migration_alerts).")
@_OPERATOR
def thaw_command(emergency: bool, reason: str, operator: str | None, **opts: Any) -> None:
    """Lift the write freeze at once, whoever holds it (a run's host is gone and its lease has
    not run out yet). The override is recorded with who and why."""
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
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
    from lupo_migrate import _session

    with _session.session(_settings(**opts)) as opened:
        run = opened.orchestrator.resolve(operator=_operator(operator), note=note)
        click.echo(f"run {run.id}: resolved; the target accepts runs again")


def _print_findings(findings: Sequence[Finding], *, err: bool) -> None:
    for finding in findings:
        click.echo(f"{finding.severity.value}: {finding}", err=err)


# ---------------------------------------------------------------------- dashboard


@cli.command("dashboard", epilog=_EPILOG)
@_db_options
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

    from lupo_migrate import _session
    from lupo_migrate.dashboard import Dashboard

    with (
        _session.session(_settings(**opts), files=False) as opened,
        Dashboard(opened.orchestrator).serve(port=port) as url,
    ):
        click.echo(f"dashboard: {url} (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also used by the console script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="lupo-migrate", standalone_mode=False)
    except errors.LupoMigrateError as error:
        if "--traceback" in args:
            raise
        click.echo(f"error: {error}", err=True)
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as usage:
        usage.show()
        return usage.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except SystemExit as exit_:  # sys.exit() inside a command
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0
