"""The ``lupo-migrate`` command line's ``main``: parses, calls the session layer, prints, exits.

Only ``LupoMigrateError`` is caught: it is printed as ``error: <message>`` on stderr and the
process exits with the error's category code (see ``EXIT_CODES``). ``--traceback`` re-raises
instead. Anything else is a bug and propagates with its traceback.

The commands live in the package's modules by what they do (``_files``: plan and check;
``_apply``: apply, verify, baseline; ``_reports``: status, history, show, alerts,
decisions; ``_operate``: rollback, accept, purge, recover, thaw, resolve, dashboard;
``_queue``; ``_scaffold``: init and new); ``_common`` holds the click group and what they
share. Importing this package registers them all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

import click

from lupo_migrate.cli import (  # noqa: F401 (commands)
    _apply,
    _files,
    _online,
    _operate,
    _queue,
    _reports,
    _scaffold,
)
from lupo_migrate.cli._common import EXIT_CODES, cli
from lupo_migrate.cli._common import _settings as _settings  # the tests' killer uses it
from lupo_migrate.core import errors

__all__ = ["EXIT_CODES", "main"]


#: Commands that drive a run, which Ctrl-C stops where it is (as a crash would).
_RUNNING: Final = frozenset({"apply", "rollback", "recover", "queue", "baseline"})
_STOPPED: Final = (
    ": a run under way stopped where it was, and application writes stay frozen until it is"
    " finished; `lupo-migrate status` shows it, `lupo-migrate recover` rolls it back"
    " (`recover --resume` carries it on)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also used by the console script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    bare_queue = args[:1] == ["queue"] and (len(args) == 1 or args[1].startswith("-"))
    if bare_queue and not {"-h", "--help"} & set(args):
        args.insert(1, "list")  # `queue --db URL` lists the queue, as `status` would
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
        running = next((a for a in args if not a.startswith("-")), "") in _RUNNING
        click.echo("aborted" + (_STOPPED if running else ""), err=True)
        return 130  # as a shell reports a process Ctrl-C ended
    except SystemExit as exit_:  # sys.exit() inside a command
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0
