"""Creating and upgrading the orchestration tables, with the schema version they carry.

The version lives in ``migration_system_state``, in the row whose ``target`` is
:data:`SCHEMA_ROW` (``'__schema__'``), column ``schema_version``. :func:`ensure_schema` reads
it with one query; it creates what is missing when the row is absent, upgrades an older
version in place, and refuses a database whose version is newer than :data:`SCHEMA_VERSION`.
Processes racing to create or upgrade the tables end with the same ones. The tables
themselves are defined in :mod:`lupo_migrate.backends.sqlalchemy._tables`.
"""

from __future__ import annotations

import time
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from lupo_migrate.backends.sqlalchemy._tables import OrchestrationTables, describe, reason
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.tables import SCHEMA_ROW, SCHEMA_VERSION

__all__ = ["ensure_schema", "widen"]


def ensure_schema(engine: sa.Engine, tables: OrchestrationTables, *, at: int) -> int:
    """Create the missing orchestration tables and record the schema version.

    One query when the schema is current: the version row is read; only when it is absent
    are the tables created (``checkfirst``) and the row inserted.

    Args:
        engine: the orchestration database.
        tables: the tables to create.
        at: ``YYYYMMDDHHMMSS`` stamp recorded as the row's ``updated_at``.

    Returns:
        The schema version found or written.

    Raises:
        StorageError: the database is unreachable, refuses the DDL, or holds a newer schema.
    """
    state = tables.system_state
    probe = sa.select(state.c.schema_version).where(state.c.target == SCHEMA_ROW)
    found = _probe(engine, probe)  # None: no table yet (or unreachable: reported below)
    if found is not None and found < SCHEMA_VERSION:
        found = _upgrade(engine, tables, found, at=at)
    attempt = 0
    while found is None:
        try:
            with engine.begin() as conn:
                tables.metadata.create_all(conn, tables=list(tables.all), checkfirst=True)
                found = conn.execute(probe).scalar_one_or_none()
                if found is None:
                    found = SCHEMA_VERSION
                    conn.execute(
                        state.insert().values(
                            target=SCHEMA_ROW, schema_version=found, updated_at=at
                        )
                    )
        except sa.exc.SQLAlchemyError as exc:
            found = _probe(engine, probe)  # another process may have won the race
            attempt += 1
            if found is None and (attempt >= _CREATE_ATTEMPTS or _unreachable(exc)):
                raise StorageError(
                    f"cannot create the orchestration tables in {describe(engine)}:"
                    f" {reason(exc)}. Check the server is reachable and the user may create"
                    " tables there."
                ) from exc
            if found is None:
                # Another process is half-way through creating them (MySQL DDL is not
                # atomic): wait for it, then create what is still missing.
                time.sleep(_CREATE_PAUSE * attempt)
    return _checked(engine, found)


def _upgrade(engine: sa.Engine, tables: OrchestrationTables, found: int, *, at: int) -> int:
    """Bring an older orchestration schema to :data:`SCHEMA_VERSION`; returns it.

    Each step checks before it changes anything, so processes upgrading at the same time
    (or one interrupted half-way) end with the same tables.
    """
    state = tables.system_state
    try:
        if found < 2:
            columns = {c["name"] for c in sa.inspect(engine).get_columns(state.name, state.schema)}
            if "fingerprint" not in columns:
                column = state.c.fingerprint
                kind = column.type.compile(dialect=engine.dialect)
                preparer = engine.dialect.identifier_preparer
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {preparer.format_table(state)}"
                        f" ADD COLUMN {preparer.quote(column.name)} {kind} NULL"
                    )
        if found < 3:
            widen(engine, tables)
        with engine.begin() as conn:
            conn.execute(
                state.update()
                .where(state.c.target == SCHEMA_ROW, state.c.schema_version < SCHEMA_VERSION)
                .values(schema_version=SCHEMA_VERSION, updated_at=at)
            )
    except sa.exc.SQLAlchemyError as exc:
        again = _probe(
            engine, sa.select(state.c.schema_version).where(state.c.target == SCHEMA_ROW)
        )
        if again == SCHEMA_VERSION:  # another process upgraded it meanwhile
            return SCHEMA_VERSION
        raise StorageError(
            f"cannot upgrade the orchestration tables in {describe(engine)} from version"
            f" {found} to {SCHEMA_VERSION}: {reason(exc)}. Check the user may alter tables"
            " there."
        ) from exc
    return SCHEMA_VERSION


def widen(engine: sa.Engine, tables: OrchestrationTables) -> list[str]:
    """MySQL/MariaDB: turn the columns *tables* declare ``LONGTEXT`` that the database still
    holds as a narrower text type (``TEXT``, 64 KB, before schema version 3) into
    ``LONGTEXT``; returns them as ``table.column``. Nothing on other dialects.

    Looks before it changes anything: a column already wide is left alone, so processes
    upgrading at the same time, or one interrupted half-way, end with the same tables. One
    ``ALTER TABLE ... MODIFY`` per table (a table copy on MariaDB 10.11: these tables hold a
    few rows per run); each column keeps its nullability, character set and collation.
    """
    dialect = engine.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return []
    inspector = sa.inspect(engine)
    preparer = dialect.identifier_preparer
    widened = []
    for table in tables.all:
        wide = {
            c.name
            for c in table.columns
            if isinstance(c.type.dialect_impl(dialect), mysql.LONGTEXT)
        }
        changes = []
        for column in inspector.get_columns(table.name, table.schema):
            if column["name"] not in wide or isinstance(column["type"], mysql.LONGTEXT):
                continue
            kind = mysql.LONGTEXT(
                charset=getattr(column["type"], "charset", None),
                collation=getattr(column["type"], "collation", None),
            ).compile(dialect=dialect)
            null = "NULL" if column["nullable"] else "NOT NULL"
            changes.append(f"MODIFY COLUMN {preparer.quote(column['name'])} {kind} {null}")
            widened.append(f"{table.name}.{column['name']}")
        if changes:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    f"ALTER TABLE {preparer.format_table(table)} {', '.join(changes)}"
                )
    return widened


#: Tries at creating the tables while other processes race to do the same.
_CREATE_ATTEMPTS: Final = 10
_CREATE_PAUSE: Final = 0.05


def _unreachable(exc: BaseException) -> bool:
    return (isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)) or isinstance(
        exc, sa.exc.InterfaceError
    )


def _probe(engine: sa.Engine, probe: sa.Select[Any]) -> int | None:
    try:
        with engine.connect() as conn:
            value = conn.execute(probe).scalar_one_or_none()
    except sa.exc.DBAPIError:
        return None
    return None if value is None else int(value)


def _checked(engine: sa.Engine, found: int) -> int:
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"the orchestration schema in {describe(engine)} is version {found}, newer than"
            f" version {SCHEMA_VERSION} which this lupo_migrate understands. Upgrade"
            " lupo_migrate to the version that wrote it, or use another database."
        )
    return int(found)
