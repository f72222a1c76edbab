"""``lupo-migrate plan`` and ``check``: the commands that read the migration files only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lupo_migrate.cli._common import _EPILOG, _dir_options, _directory, _print_findings, cli
from lupo_migrate.core import errors


@cli.command("plan", epilog=_EPILOG)
@_dir_options
@click.option("--upto", metavar="ID", help="Plan only this step and the steps it needs.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def plan_command(directory: Path | None, manifest: Path | None, upto: str | None, fmt: str) -> None:
    """Print the plan for DIRECTORY: the order, the generations, types and checksums.

    Nothing is applied. The order is deterministic: dependencies first, then versions
    (V2 before V10), then ids. A generation is a group of steps whose dependencies all lie in
    earlier generations (they could run in parallel).
    """
    from lupo_migrate.handlers.plugins import default_registry
    from lupo_migrate.session import api  # networkx: loaded only by the commands that plan

    directory = _directory(directory)
    report = api.plan_directory(
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
@click.option(
    "--files",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory documentation and agent-file steps change (default: the `files` setting,"
    " else the migrations directory's parent).",
)
def check_command(
    directory: Path | None, manifest: Path | None, strict: bool, files: Path | None
) -> None:
    """Validate the migration files in DIRECTORY without touching any database.

    Reports every problem at once, each with its file, line and what to fix: unreadable or
    non-UTF-8 files, headers that break the header schema, unsafe YAML (aliases, custom tags),
    duplicate ids, unsafe paths, dependency cycles and unknown dependencies, SQL statements
    that do not start with a SQL keyword (`SELEC x;`) or never end (an unclosed quote), and
    agent-folder or documentation steps whose files lead outside the files directory (`..`,
    absolute paths, symbolic links). Headers that read only with the lenient reader (for
    example an unquoted `target: @everyone`) are listed as "not strict YAML"; with --strict
    they fail the check.
    """
    from lupo_migrate.handlers.plugins import default_registry
    from lupo_migrate.session import api
    from lupo_migrate.session.config import load_settings

    directory = _directory(directory)
    settings = load_settings(files=files)  # --files, else lupo.toml or the environment
    report = api.check_directory(
        directory,
        manifest=manifest,
        registry=default_registry(),
        files_root=settings.files,
        forbid=settings.forbid,
        lint_ignore=settings.lint_ignore,
    )
    _print_findings(report.findings, err=False)
    errors_found = len(report.errors)
    failed = errors_found or (strict and report.not_strict)
    summary = (
        f"checked {report.files} file(s) in {report.root}: {errors_found} error(s),"
        f" {len(report.not_strict)} header(s) not strict YAML"
    )
    click.echo(summary, err=bool(failed))
    if errors_found and all(f.code == "plan" for f in report.errors):
        sys.exit(errors.PlanError.exit_code)  # as `plan` exits on a cycle
    if failed:
        sys.exit(errors.MigrationFileError.exit_code)
