"""The ``lupo-migrate`` command line: parses, calls ``_api``, prints, exits.

Only ``LupoMigrateError`` is caught: it is printed as ``error: <message>`` on stderr and the
process exits with the error's category code (see ``EXIT_CODES``). ``--traceback`` re-raises
instead. Anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from lupo_migrate import _api, errors
from lupo_migrate._model import Finding

__all__ = ["EXIT_CODES", "main"]

#: Exit codes by error category; 0 is success, 1 any other lupo_migrate error.
EXIT_CODES: Final = {
    "ok": 0,
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
    report = _api.plan_directory(directory, manifest=manifest, upto=upto)
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
    report = _api.check_directory(directory, manifest=manifest)
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


def _print_findings(findings: Sequence[Finding], *, err: bool) -> None:
    for finding in findings:
        click.echo(f"{finding.severity.value}: {finding}", err=err)


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
