"""Facts about the orchestration tables that code without SQLAlchemy needs too.

The tables themselves are defined in :mod:`lupo_migrate.backends.sqlalchemy._tables`; the
nothing-to-do fast path (:mod:`lupo_migrate.session.fast_path`) reads two of them with the bare
driver.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BATCHES",
    "EPHEMERAL_TABLES",
    "FILES",
    "PATH_LENGTH",
    "SCHEMA_ROW",
    "SCHEMA_VERSION",
    "STEP_ID_LENGTH",
    "SYSTEM_STATE",
]

#: The orchestration schema version this code writes and understands. 2 added
#: ``migration_system_state.fingerprint`` (the schema as the last run left it); 3 widened every
#: free-text column to ``LONGTEXT`` on MySQL/MariaDB (``TEXT`` holds 64 KB there, and the
#: rollback log's scope lists every step id of a run).
SCHEMA_VERSION: Final = 3
#: ``migration_system_state.target`` of the row holding ``schema_version``.
SCHEMA_ROW: Final = "__schema__"

#: Table names (see ``make_tables`` for their columns).
BATCHES: Final = "migration_batches"
FILES: Final = "migration_files"
SYSTEM_STATE: Final = "migration_system_state"

#: The longest step id the tables keep (``VARCHAR(191)``: indexed, 191 utf8mb4 characters fit
#: the index limit of older InnoDB row formats). Counted in characters, as MySQL and
#: PostgreSQL count them; a longer id is refused when the files are read.
STEP_ID_LENGTH: Final = 191
#: The longest file path (relative to the migrations root) the tables keep (``VARCHAR(1024)``).
PATH_LENGTH: Final = 1024

#: The ephemeral schema's key-value tables (leases and jobs have tables and methods of their own).
EPHEMERAL_TABLES: Final = ("sessions", "cache", "temp_data")
