"""The ``lupo-migrate`` command's entry point: the nothing-to-do re-run of ``apply`` is
answered before the command line itself (click, the commands, the handlers) is loaded.

``lupo-migrate apply DIR --db URL`` run again with nothing new is the commonest invocation
there is (every deploy runs it). When the arguments are only those the quick path understands
(the directory, ``--db``, ``--target``, ``--config``, ``--manifest``, ``--files``,
``--orchestration-schema``, ``--progress``; and those that cannot change whether anything
is pending: ``--table-budget``, ``--backup-limit``, ``--allow-drift``, ``--forbid``,
``--rename``, ``--metrics-port``, ``--out-of-order``), the settings are read and
:func:`lupo_migrate.session.fast_path.nothing_to_do` asked; if it is sure nothing is pending, its
answer
is printed and that is all. Anything else, any doubt, any error: the full command line runs,
and says what the full command says.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

__all__ = ["main", "run"]

#: The options the quick path understands, all taking a value.
_OPTIONS: Final = {
    "--db": "db",
    "--target": "target_name",
    "--config": "config",
    "--manifest": "manifest",
    "--files": "files",
    "--orchestration-schema": "orchestration_schema",
    "--progress": "progress",
}
_PATHS: Final = ("config", "manifest", "files")
#: Options that do not change whether anything is pending (checked as click would).
_IGNORED: Final[dict[str, Callable[[str], bool]]] = {
    "--table-budget": lambda v: v.lstrip("-").isdigit(),
    "--backup-limit": str.isdigit,
    "--metrics-port": lambda v: v.isdigit() and int(v) <= 65535,
    "--forbid": bool,
    "--rename": lambda v: all(v.partition("=")),
    "--operator": bool,
}
_FLAGS: Final = frozenset({"--allow-drift", "--out-of-order"})
#: A ``--target`` that looks like a version: the command line refuses it (see
#: ``cli._common._refuse_version_target``), so the quick path does not answer for it.
_VERSION_LIKE: Final = re.compile(r"[vV]?\d+(?:[._]\d+)*")


def _options(args: Sequence[str]) -> dict[str, str] | None:
    """``apply``'s arguments as option name -> value, or None when they are not only ones
    the quick path understands."""
    if not args or args[0] != "apply":
        return None
    found: dict[str, str] = {}
    positional: list[str] = []
    rest = list(args[1:])
    while rest:
        arg = rest.pop(0)
        if arg in _FLAGS:
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in _OPTIONS and name not in _IGNORED:
                return None
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            if name in _IGNORED:
                if not _IGNORED[name](value):
                    return None  # the full command line says what is wrong with it
                continue
            if _OPTIONS[name] in found:
                return None
            found[_OPTIONS[name]] = value
        elif arg.startswith("-") or positional:
            return None
        else:
            positional.append(arg)
    if found.get("progress", "auto") not in ("auto", "live", "plain", "off"):
        return None
    if _VERSION_LIKE.fullmatch(found.get("target_name", "").strip()):
        return None
    if positional:
        found["directory"] = positional[0]
    return found


def nothing_to_do(args: Sequence[str]) -> str | None:
    """What ``apply`` would print when *args* ask for a run with nothing pending, or None."""
    found = _options(args)
    if found is None:
        return None
    found.pop("progress", None)
    try:
        from lupo_migrate.session import fast_path
        from lupo_migrate.session.config import from_options

        directory = found.pop("directory", None)
        paths = {k: Path(v) for k, v in found.items() if k in _PATHS}
        settings = from_options(
            directory=None if directory is None else Path(directory),
            db=found.get("db"),
            target_name=found.get("target_name"),
            manifest=paths.get("manifest"),
            config=paths.get("config"),
            orchestration_schema=found.get("orchestration_schema"),
            files=paths.get("files"),
        )
        count = fast_path.nothing_to_do(settings, fast_path.read_steps(settings, hand_over=True))
    except Exception:  # the full command line will say what is wrong
        return None
    if count is None:
        fast_path.decline()  # the command takes the full path, and what was read, at once
        return None
    fast_path.forget()
    return f"nothing to do: all {count} migration(s) already applied"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lupo-migrate``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    answer = nothing_to_do(args)
    if answer is not None:
        sys.stdout.write(answer + "\n")
        return 0
    from lupo_migrate.cli.command_line import main as command_line
    from lupo_migrate.session import fast_path

    try:
        return command_line(args)
    finally:
        fast_path.forget()  # nothing handed over outlives the command


def run() -> NoReturn:
    """The process's entry point (``lupo-migrate``, ``python -m lupo_migrate``): :func:`main`,
    then the process ends at once (see :func:`end`)."""
    end(main())


def end(code: int) -> NoReturn:
    """End the process with *code*, without tearing the interpreter down.

    Teardown frees every object of every module one by one: 70-100 ms after a run of 1,000
    steps, for memory the operating system takes back at once anyway. What an exit must do
    is done first: the ``atexit`` handlers (logging's flush among them, and any a plugin
    registered) and the standard streams flushed; an error flushing them exits 120, as
    Python does. With another thread still running, it exits the usual way (which waits for
    it).
    """
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream
            code = code or 120
    os._exit(code)
