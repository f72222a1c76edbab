"""``lupo-migrate init`` and ``new``: the files a project starts from, as Alembic's ``init`` and
``revision``, Sqitch's ``init`` and ``add`` write them."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import click

from lupo_migrate.cli._common import _EPILOG, cli
from lupo_migrate.core.errors import ConfigurationError, InvalidArgumentError

_CONFIG = """\
# lupo_migrate settings (see the README's Settings). Flags and LUPO_MIGRATE_* variables win.
{db}
migrations = "{migrations}"
# table_budget = 77                        # core table limit (off unless set)
# forbid = ["foreign-key", "trigger"]      # lint rules that refuse a run
# webhook = "https://hooks.example.org/x"  # alerts POSTed as JSON
"""


@cli.command("init", epilog=_EPILOG)
@click.argument("directory", required=False, default="migrations", type=click.Path(path_type=Path))
@click.option("--db", metavar="URL", help="The database URL written in lupo.toml.")
def init_command(directory: Path, db: str | None) -> None:
    """Start a project here: a migrations DIRECTORY (default: migrations) and a lupo.toml
    that names it (and --db). Nothing is overwritten."""
    config = Path("lupo.toml")
    if config.exists():
        raise ConfigurationError(
            f"{config.resolve()} exists already; nothing was written (edit it, or run init"
            " in another directory)"
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{directory} exists and is not a directory; nothing written")
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    line = f'db = "{db}"' if db else '# db = "sqlite:///app.db"               # or LUPO_MIGRATE_DB'
    config.write_text(_CONFIG.format(db=line, migrations=directory.as_posix()), encoding="utf-8")
    click.echo(f"wrote {config}" + (f" and created {directory}/" if made else f" ({directory}/)"))
    click.echo("next: `lupo-migrate new NAME` writes a migration, `lupo-migrate apply` runs it")


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise InvalidArgumentError(
            f"a migration name needs letters or digits, got {name!r} (e.g. add_users)"
        )
    return slug


@cli.command("new", epilog=_EPILOG)
@click.argument("name")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), help="Settings file.")
def new_command(name: str, directory: Path | None, config: Path | None) -> None:
    """Write a new SQL migration NAME in DIRECTORY (default: the settings' migrations): a
    header whose depends_on names the current heads (the steps nothing depends on yet), an up
    section to fill in and a down section that undoes it. Files named V1__x.sql get the next
    version; otherwise the name starts with the UTC time."""
    from lupo_migrate.core.planner import build_graph, plan
    from lupo_migrate.files.discover import load_steps
    from lupo_migrate.handlers.plugins import default_registry
    from lupo_migrate.session.config import load_settings

    settings = load_settings(config=config, migrations=directory)
    root = settings.migrations
    if root is None:
        raise ConfigurationError(
            "no migrations directory: pass DIRECTORY, or run `lupo-migrate init` first"
        )
    root = Path(root)
    if not root.is_dir():
        raise ConfigurationError(f"{root}: no such directory (`lupo-migrate init {root}`)")
    registry = default_registry()
    steps = load_steps(root, suffixes=registry.suffix_map() or None, manifest=settings.manifest)
    slug = _slug(name)
    if any(step.id == slug for step in steps):
        raise InvalidArgumentError(f"a migration with id {slug!r} exists already in {root}")
    graph = build_graph(steps)
    order = [step.id for step in plan(steps).steps]
    heads = [sid for sid in order if graph.out_degree(sid) == 0]
    versions = [int(m[1]) for p in root.iterdir() if (m := re.match(r"V(\d+)__", p.name))]
    if versions:
        file_name = f"V{max(versions) + 1}__{slug}.sql"
    else:  # the time, after every file named by a time already (two in one second)
        stamps = [int(m[1]) for p in root.iterdir() if (m := re.match(r"(\d{14})_", p.name))]
        stamp = max([int(f"{datetime.now(UTC):%Y%m%d%H%M%S}"), *(n + 1 for n in stamps)])
        file_name = f"{stamp}_{slug}.sql"
    path = root / file_name
    shown = os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    # Always said, even empty: a versioned name would otherwise chain it to the file before.
    header = [f"-- id: {slug}", f"-- depends_on: [{', '.join(heads)}]"]
    header.append(f"-- description: {name}")
    body = [
        "",
        "-- the statements of the migration, each ending with ;",
        "",
        "-- lupo:down",
        "-- the statements that undo them, in reverse order",
        "",
    ]
    path.write_text("\n".join(header + body), encoding="utf-8")
    after = f" (after {', '.join(heads)})" if heads else ""
    click.echo(f"wrote {shown}{after}; fill in its statements, then `lupo-migrate check`")
