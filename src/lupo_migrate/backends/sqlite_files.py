"""Where a SQLite target's companion files are: lupo_migrate's own tables and its backups live
beside the application's file, never in it (see :mod:`lupo_migrate.core.placement`).

A path rule, with :mod:`pathlib`'s reading of a path (``./app.db``, ``app.``, a doubled
slash), so it lives with the backends rather than in the core.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["sibling_store"]


def sibling_store(database: str, part: str = "lupo") -> str:
    """Where a SQLite target keeps lupo_migrate's tables: ``app.db`` -> ``app.lupo.db``
    (with *part* ``lupo-backups``, its backup tables: ``app.lupo-backups.db``)."""
    path = Path(database)
    return str(path.with_name(f"{path.stem}.{part}{path.suffix}"))
