"""The 8 orchestration tables as SQLAlchemy Core ``Table`` objects.

Portable types only: keys auto-increment (``BIGINT``, ``INTEGER`` on SQLite so the key is the
rowid, with ``AUTOINCREMENT`` so ids are never reused), timestamps are ``BIGINT``
``YYYYMMDDHHMMSS`` in UTC, strings have explicit lengths and indexed ones stay within 191
characters (the utf8mb4 index limit of older InnoDB row formats). Free text (messages, scopes,
statements, JSON) is ``TEXT``, and ``LONGTEXT`` on MySQL/MariaDB, whose ``TEXT`` holds only
64 KB: a run's scope lists all its step ids, a journal row holds a whole statement.
MySQL/MariaDB tables are InnoDB, utf8mb4 with the binary collation (ids compare
case-sensitively, as in Python).

The schema version lives in ``migration_system_state``, in the row whose ``target`` is
:data:`SCHEMA_ROW` (``'__schema__'``), column ``schema_version``; creating and upgrading the
tables is :mod:`lupo_migrate.backends.sqlalchemy._creating` (``ensure_schema``).
"""

from __future__ import annotations

import functools
from typing import Any, Final

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from lupo_migrate.core.tables import (
    BATCHES,
    FILES,
    PATH_LENGTH,
    SCHEMA_ROW,
    SCHEMA_VERSION,
    STEP_ID_LENGTH,
    SYSTEM_STATE,
)

__all__ = [
    "SCHEMA_ROW",
    "SCHEMA_VERSION",
    "OrchestrationTables",
    "describe",
    "ensure_state_row",
    "make_tables",
    "reason",
]


_OPTIONS: Final[dict[str, Any]] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "sqlite_autoincrement": True,
}


def _key() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _stamp(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _long_text() -> sa.types.TypeEngine[str]:
    """Unbounded text: ``TEXT`` (PostgreSQL 1 GB, SQLite 1 GB by default), ``LONGTEXT`` (4 GB)
    on MySQL/MariaDB, where ``TEXT`` is 64 KB and ``MEDIUMTEXT`` 16 MB."""
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _run_id(*, nullable: bool = False, index: bool = False) -> sa.Column[str]:
    return sa.Column("run_id", sa.String(64), nullable=nullable, index=index)


@attrs.frozen
class OrchestrationTables:
    """The 8 orchestration tables, built on one ``MetaData`` by :func:`make_tables`.

    Attributes:
        metadata: the ``MetaData`` they belong to.
        batches: ``migration_batches``, one row per run (full ``Run`` as JSON in ``state``).
        files: ``migration_files``, the applied-step ledger and operator-accepted checksums.
        dependencies: ``migration_dependencies``, each run's plan and its edges.
        progress: ``migration_progress``, the statement journal.
        validation_log: ``migration_validation_log``, findings.
        rollback_log: ``migration_rollback_log``, classifications, decisions, deadlines.
        system_state: ``migration_system_state``, phase, lock, freeze and schema version.
        alerts: ``migration_alerts``.
    """

    metadata: sa.MetaData
    batches: sa.Table
    files: sa.Table
    dependencies: sa.Table
    progress: sa.Table
    validation_log: sa.Table
    rollback_log: sa.Table
    system_state: sa.Table
    alerts: sa.Table

    @property
    def all(self) -> tuple[sa.Table, ...]:
        """The 8 tables, in creation order."""
        return (
            self.batches,
            self.files,
            self.dependencies,
            self.progress,
            self.validation_log,
            self.rollback_log,
            self.system_state,
            self.alerts,
        )


def make_tables(
    metadata: sa.MetaData | None = None, *, schema: str | None = None
) -> OrchestrationTables:
    """Define the orchestration tables on *metadata* (a new one by default).

    Args:
        metadata: where to add them; must not already hold tables of these names.
        schema: the physical schema (PostgreSQL schema, MySQL database, attached SQLite file);
            None for the connection's default.

    Returns:
        The tables. Without *metadata*, the same definitions for the same schema each time
        (the storage, the lock and the freeze of a session share them: 10 ms each to build).
    """
    if metadata is None:
        return _shared_tables(schema)
    return _define(metadata, schema)


@functools.lru_cache(maxsize=16)
def _shared_tables(schema: str | None) -> OrchestrationTables:
    return _define(sa.MetaData(), schema)


def _define(md: sa.MetaData, schema: str | None) -> OrchestrationTables:

    def table(name: str, *items: sa.schema.SchemaItem) -> sa.Table:
        return sa.Table(name, md, *items, schema=schema, **_OPTIONS)

    batches = table(
        BATCHES,
        _key(),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("target", sa.String(191), nullable=False, index=True),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.Column("state", _long_text(), nullable=False),
        # The plan's step ids (JSON), written once: a run's steps never change, so saving a
        # transition does not send them again.
        sa.Column("steps", _long_text(), nullable=False),
    )
    files = table(
        FILES,
        _key(),
        sa.Column("target", sa.String(191), nullable=False),
        sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=False),
        sa.Column("path", sa.String(PATH_LENGTH), nullable=False),
        sa.Column("file_type", sa.String(64), nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        _run_id(),
        _stamp("applied_at"),
        sa.Column("accepted_by", sa.String(255), nullable=True),
        _stamp("accepted_at", nullable=True),
        sa.UniqueConstraint("target", "step_id", name="uq_migration_files_target_step"),
    )
    dependencies = table(
        "migration_dependencies",
        _key(),
        _run_id(index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=False),
        sa.Column("depends_on", sa.String(STEP_ID_LENGTH), nullable=True),
    )
    progress = table(
        "migration_progress",
        _key(),
        _run_id(index=True),
        sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=False),
        sa.Column("stmt_index", sa.Integer(), nullable=False),
        sa.Column("statement", _long_text(), nullable=False),
        _stamp("started_at"),
        _stamp("done_at", nullable=True),
    )
    validation_log = table(
        "migration_validation_log",
        _key(),
        _run_id(index=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=True),
        sa.Column("path", sa.String(PATH_LENGTH), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("message", _long_text(), nullable=False),
        sa.Column("hint", _long_text(), nullable=True),
        sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=True),
        _stamp("recorded_at"),
    )
    rollback_log = table(
        "migration_rollback_log",
        _key(),
        _run_id(index=True),
        sa.Column("classification", sa.String(8), nullable=False),
        sa.Column("scope", _long_text(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=True),
        _stamp("deadline", nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        _stamp("decided_at", nullable=True),
        sa.Column("detail", _long_text(), nullable=True),
        _stamp("recorded_at"),
    )
    system_state = table(
        SYSTEM_STATE,
        _key(),
        sa.Column("target", sa.String(191), nullable=False, unique=True),
        sa.Column("phase", sa.String(32), nullable=True),
        _run_id(nullable=True),
        sa.Column("lock_name", sa.String(191), nullable=True),
        sa.Column("lock_holder", sa.String(255), nullable=True),
        sa.Column("lock_token", sa.String(64), nullable=True),
        _stamp("lock_since", nullable=True),
        _stamp("heartbeat", nullable=True),
        _stamp("lock_expires", nullable=True),
        sa.Column("freeze_owner", sa.String(255), nullable=True),
        _stamp("freeze_since", nullable=True),
        _stamp("freeze_expires", nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=True),
        _stamp("updated_at", nullable=True),
        # The target's schema fingerprint (JSON) as the last run left it: the drift check's
        # reference. Added in schema version 2.
        sa.Column("fingerprint", _long_text(), nullable=True),
    )
    alerts = table(
        "migration_alerts",
        _key(),
        _run_id(nullable=True, index=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", _long_text(), nullable=False),
        _stamp("created_at"),
        _stamp("acknowledged_at", nullable=True),
        _stamp("resolved_at", nullable=True),
    )
    return OrchestrationTables(
        md, batches, files, dependencies, progress, validation_log, rollback_log, system_state,
        alerts,
    )  # fmt: skip


def reason(exc: BaseException) -> str:
    """The driver's own message of *exc* on one line, without SQL or links."""
    orig = getattr(exc, "orig", None)
    text = " ".join(str(orig if orig is not None else exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def describe(engine: sa.Engine) -> str:
    """The engine's URL with the password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def ensure_state_row(conn: sa.Connection, tables: OrchestrationTables, target: str) -> None:
    """Insert the ``migration_system_state`` row of *target* unless it exists.

    A single write statement (insert-or-ignore of the dialect), so on SQLite the transaction
    takes the write lock at once, as ``BEGIN IMMEDIATE`` would, and no read-then-write
    upgrade can deadlock.
    """
    table = tables.system_state
    dialect = conn.dialect.name
    stmt: sa.Executable
    # Dialect modules are imported where used: each costs start-up time (PostgreSQL's 15 ms).
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(table).values(target=target).on_conflict_do_nothing()
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt = postgresql.insert(table).values(target=target).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        ins = mysql.insert(table).values(target=target)
        stmt = ins.on_duplicate_key_update(target=ins.inserted.target)
    else:
        if conn.execute(sa.select(table.c.id).where(table.c.target == target)).first():
            return
        stmt = table.insert().values(target=target)
    conn.execute(stmt)
