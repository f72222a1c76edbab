"""The ``lupo-migrate`` command line: parses, calls :mod:`lupo_migrate.session`, prints, exits.

:mod:`~lupo_migrate.cli.entry` is the console script: it answers the nothing-to-do re-run of
``apply`` before click and the commands are loaded; :mod:`~lupo_migrate.cli.command_line` holds
``main`` and the exit codes. The commands live in modules by what they do (``_files``: plan
and check; ``_apply``: apply, verify, baseline; ``_reports``: status, history, show, alerts,
decisions; ``_operate``: rollback, downgrade, accept, purge, recover, thaw, resolve,
dashboard; ``_queue``; ``_scaffold``: init and new); ``_common`` holds the click group and
what they share.

May import: every layer (it is the top one). ``main`` and ``EXIT_CODES`` are importable from
here; importing this package alone loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EXIT_CODES", "main"]


def __getattr__(name: str) -> Any:
    if name in ("EXIT_CODES", "main", "_settings"):
        value = getattr(importlib.import_module("lupo_migrate.cli.command_line"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lupo_migrate.cli' has no attribute {name!r}")
