"""What the ``lupo-migrate`` commands share: the click group, the options, exit codes, settings
and the small printers."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from lupo_migrate.core import errors
from lupo_migrate.core.model import Finding

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
    "run failed, rollback incomplete (target blocked)": errors.RollbackIncompleteError.exit_code,
    "configuration (URL, connection)": errors.ConfigurationError.exit_code,
    "nothing pending, but tables the applied migrations left are gone": (
        errors.SchemaDriftError.exit_code
    ),
    "decision not allowed (window closed, later run)": errors.DecisionError.exit_code,
    "writes frozen": errors.WritesFrozenError.exit_code,
    "internal (a bug)": errors.InternalError.exit_code,
    "stopped by Ctrl-C": 130,
    "stopped by SIGTERM": 143,
}


_F = TypeVar("_F", bound=Callable[..., Any])


#: The group's epilog: every exit code, said once.
_EXIT_CODES_HELP = (
    "Exit codes: " + ", ".join(f"{code} {what}" for what, code in EXIT_CODES.items()) + "."
)
#: A command's epilog: where the exit codes are.
_EPILOG = "Exit codes: 0 ok; `lupo-migrate --help` lists the others."


def _dir_options(func: _F) -> _F:
    func = click.option(
        "--manifest",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Manifest (YAML/JSON) giving order and dependencies of header-less files;"
        " default: lupo-manifest.yaml or manifest.yaml in DIR if present.",
    )(func)
    func = click.argument("directory", required=False, type=click.Path(path_type=Path))(func)
    return func


def _directory(directory: Path | None) -> Path:
    """DIRECTORY, else the settings' migrations directory (lupo.toml, LUPO_MIGRATE_DIR)."""
    if directory is not None:
        return directory
    from lupo_migrate.session.config import load_settings

    found = load_settings().migrations
    if found is None:
        raise errors.ConfigurationError(
            "no migrations directory: pass DIRECTORY, or set migrations in lupo.toml or"
            " LUPO_MIGRATE_DIR (`lupo-migrate init` writes one)"
        )
    return Path(found)


@click.group(epilog=_EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
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


# ---------------------------------------------------------------------- database commands


def _db_options(func: _F) -> _F:
    """The options of a command that reads the migration files and the database."""
    return _options(func, files=True)


def _db_only_options(func: _F) -> _F:
    """The options of a command that reads only the database (history, show, alerts,
    decisions, dashboard, queue): no --manifest, --files nor --rename, which would do nothing
    there. DIRECTORY is optional; it only says where lupo.toml is looked for."""
    return _options(func, files=False)


def _options(func: _F, *, files: bool) -> _F:
    options = [
        click.option("--db", metavar="URL", help="Database URL (else LUPO_MIGRATE_DB, lupo.toml)."),
        click.option(
            "--target",
            "target_name",
            metavar="NAME",
            help="Name of the ledger runs are recorded under (default: default); not a"
            " version: `apply --upto ID` stops at a step.",
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
    ]
    if files:
        options[2:2] = [
            click.option(
                "--manifest",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Manifest giving order and dependencies of header-less files.",
            )
        ]
        options += [
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
    for option in reversed(options):
        func = option(func)
    return click.argument("directory", required=False, type=click.Path(path_type=Path))(func)


def _settings(
    directory: Path | None,
    db: str | None,
    target_name: str | None,
    config: Path | None,
    manifest: Path | None = None,
    renames: Sequence[str] = (),
    orchestration_schema: str | None = None,
    **more: Any,
) -> Any:
    from lupo_migrate.session.config import from_options

    if target_name is not None:
        _refuse_version_target(target_name)
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


#: What a version looks like on the command line: ``5``, ``V5``, ``4.1.2``, ``v4_1``.
_VERSION_LIKE: Final = re.compile(r"[vV]?\d+(?:[._]\d+)*")


def _refuse_version_target(name: str) -> None:
    """``--target 5`` is what a Flyway user types to migrate up to version 5; here it names
    the ledger a run is recorded under, so a new name would apply every file again. Refused
    on the command line; a namespace really named so is set in lupo.toml or the
    environment, where no Flyway habit puts it."""
    if _VERSION_LIKE.fullmatch(name.strip()):
        raise errors.InvalidArgumentError(
            f"--target {name} looks like a version, but --target names the ledger that runs"
            " are recorded under (default: default), not a version to migrate to: a new name"
            " starts an empty ledger and apply would run every file again. To apply up to a"
            " version, use --upto with its step id (e.g. --upto V5__add_x; `lupo-migrate plan`"
            " lists them); to use a ledger really named so, set target in lupo.toml or"
            " LUPO_MIGRATE_TARGET"
        )


def _progress_setting() -> str:
    """``LUPO_MIGRATE_PROGRESS`` for the commands without ``--progress`` (rollback, recover)."""
    value = os.environ.get("LUPO_MIGRATE_PROGRESS", "auto")
    return value if value in ("auto", "live", "plain", "off") else "auto"


def _observers(progress: str, metrics_port: int | None, stack: contextlib.ExitStack) -> list[Any]:
    """The command line's observers of a run: progress on stderr, metrics served."""
    from lupo_migrate.observe.progress import Progress

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


_SCOPES: Final = {"run": None, "B": "B", "C": "C", "D": "D"}


def _scope(value: str) -> Any:
    from lupo_migrate.core.model import Classification

    code = _SCOPES[value]
    return None if code is None else Classification(code)


def _operator(operator: str | None) -> str:
    """*operator*, or who runs the command (the OS user; ``unknown`` where it has none)."""
    from lupo_migrate.run.wiring import default_operator

    return operator or default_operator()


_OPERATOR = click.option("--operator", default=None, help="Who decides (recorded); default: $USER.")


_SCOPE = click.option(
    "--scope",
    type=click.Choice(list(_SCOPES)),
    default="run",
    show_default=True,
    help="run: the whole run; B, C, D: the steps of that pending decision.",
)


def _when(stamp: int) -> str:
    from lupo_migrate.core.clock import shown

    return shown(stamp)


def _duration(delta: Any) -> str:
    minutes = int(delta.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}h{minutes:02d}m"


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


#: Findings recorded for the record (``show RUN``, the checklist, the dashboard), not said
#: after every run.
_QUIET: Final = frozenset({"rollback-capability"})


def _print_findings(findings: Sequence[Finding], *, err: bool) -> None:
    for finding in findings:
        if finding.code not in _QUIET:
            click.echo(f"{finding.severity.value}: {finding}", err=err)
