"""Opening a target's session (shell): the engines, where lupo_migrate's tables go (the
orchestration and ephemeral schemas, created on first use), and the write freeze with its lease.

Used by :func:`lupo_migrate.session.session.open_session`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from lupo_migrate.backends.sqlite_files import sibling_store
from lupo_migrate.core.errors import ConfigurationError
from lupo_migrate.core.placement import Placement, place
from lupo_migrate.session.config import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

    from lupo_migrate.core.ports import Clock, Ephemeral, Freeze


#: lupo_migrate's own orchestration tables (a legacy copy in the core schema is looked for).
_OWN_STATE: Final = "migration_system_state"


_EXAMPLES: Final = (
    "expected e.g. sqlite:///app.db, mysql://user:password@127.0.0.1/db (PyMySQL),"
    " postgresql://user@127.0.0.1/db (psycopg2)"
)


def _engine(url: str) -> sa.Engine:
    import sqlalchemy as sa

    from lupo_migrate.backends.sqlalchemy.target import connect_error, make_engine

    try:
        engine = make_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigurationError(f"not a usable database URL: {exc}; {_EXAMPLES}") from None
    except ValueError as exc:  # SQLAlchemy's parser: a port that is not a number, say
        raise ConfigurationError(
            f"not a usable database URL: {_hidden(url)}: {exc}"
            f" (a port is a number, an IPv6 host is written [::1]); {_EXAMPLES}"
        ) from None
    except ImportError as exc:  # a driver the URL names is not installed
        raise ConfigurationError(
            f"the database URL names a driver that is not installed ({exc.name or exc});"
            f" install it, or use a driver lupo_migrate installs: {_EXAMPLES}"
        ) from None
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise connect_error(engine.url, exc) from None
    except TypeError as exc:  # PyMySQL: a query option it has no parameter for
        engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"cannot connect to {shown}: the driver does not know an option of the URL's"
            f" query ({exc}); remove it, or see the driver's connection options"
        ) from None
    return engine


def _hidden(url: str) -> str:
    """*url* with the password of its ``user:password@`` part (if any) shown as ``***``."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url, count=1)


def _orchestration_url(settings: Settings, engine: sa.Engine) -> str | None:
    """Where lupo_migrate's own tables go: configured, else beside a SQLite file, else None
    (the target's server: a database or schema of their own there, see ``_placement``).

    An ``orchestration_db`` naming the target database itself counts as not configured.
    """
    if settings.orchestration_db and settings.orchestration_db != settings.db:
        return settings.orchestration_db
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return f"sqlite:///{sibling_store(str(engine.url.database))}"
    return None


def _placement(settings: Settings, engine: sa.Engine, *, separate: bool) -> Placement:
    """Where core, orchestration and ephemeral live for *engine* (see ``_placement``)."""
    return place(
        engine.dialect.name,
        database=engine.url.database,
        schemas=settings.schemas,
        separate=separate,
    )


def _prepare_schema(
    engine: sa.Engine,
    schema: str | None,
    *,
    logical: str,
    core: str | None = None,
) -> None:
    """Create the *logical* schema (orchestration, ephemeral) if it has a name and is missing.

    For the orchestration schema also refuse tables lupo_migrate did not create, and, when
    the tables are not there yet, an earlier version's tables left in the core schema
    *core* (None: the connection's default).

    An application may have tables of the same names (Lupopedia's own PHP orchestrator kept
    eight ``migration_*`` tables in its core schema): lupo_migrate never takes those over.
    """
    import sqlalchemy as sa

    from lupo_migrate.backends.sqlalchemy.target import connect_error

    dialect = engine.dialect.name
    try:
        if schema and dialect in ("mysql", "postgresql"):
            inspector = sa.inspect(engine)
            if schema not in inspector.get_schema_names():
                _create_schema(engine, schema, logical)
        if logical != "orchestration":
            return
        inspector = sa.inspect(engine)
        if inspector.has_table(_OWN_STATE, schema=schema):
            columns = {c["name"] for c in inspector.get_columns(_OWN_STATE, schema)}
            if "schema_version" not in columns:
                where = schema or _default_schema(engine)
                raise ConfigurationError(
                    f"{where} already has a table {_OWN_STATE} that lupo_migrate did"
                    " not create (an application's own migration tables?); lupo_migrate never"
                    " takes such tables over. Keep its tables apart: --orchestration-schema"
                    f" {where}_lupo, or another name in schemas.orchestration in lupo.toml"
                )
        elif schema is not None and inspector.has_table(_OWN_STATE, schema=core):
            columns = {c["name"] for c in inspector.get_columns(_OWN_STATE, core)}
            if "schema_version" in columns:
                raise _legacy_tables(engine, core or _default_schema(engine), schema)
    except sa.exc.DBAPIError as exc:
        raise connect_error(engine.url, exc) from None


def _create_schema(engine: sa.Engine, schema: str, logical: str) -> None:
    """``CREATE DATABASE`` (MySQL) or ``CREATE SCHEMA`` (PostgreSQL) *schema*; a refusal
    names the privilege its user lacks."""
    import sqlalchemy as sa

    preparer = engine.dialect.identifier_preparer
    quoted = preparer.quote(schema)
    mysql = engine.dialect.name == "mysql"
    ddl = (
        f"CREATE DATABASE IF NOT EXISTS {quoted}"
        if mysql
        else f"CREATE SCHEMA IF NOT EXISTS {quoted}"
    )
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(ddl + (" CHARACTER SET utf8mb4" if mysql else ""))
    except sa.exc.DBAPIError as exc:
        if schema in sa.inspect(engine).get_schema_names():
            return  # another process created it meanwhile (PostgreSQL's IF NOT EXISTS races)
        user = engine.url.username or "the user"
        database = engine.url.database or ""
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        if mysql:
            named = "`" + schema.replace("`", "``") + "`"  # quoted always: ready to paste
            grant = (
                f"its user needs the CREATE privilege for it (GRANT CREATE ON {named}.* TO"
                f" '{user}'@'%'; then GRANT ALL ON {named}.* to let it create its tables), or"
                f" an administrator creates it once (CREATE DATABASE {named} CHARACTER SET"
                f" utf8mb4; GRANT ALL ON {named}.* TO '{user}'@'%')"
            )
        else:
            grant = (
                f"its user needs the CREATE privilege on the database (GRANT CREATE ON DATABASE"
                f" {preparer.quote(database)} TO {preparer.quote(user)}), or an administrator"
                f" creates it once (CREATE SCHEMA {quoted} AUTHORIZATION {preparer.quote(user)})"
            )
        kind = "database" if mysql else "schema"
        raise ConfigurationError(
            f"cannot create the {logical} {kind} {schema} on"
            f" {engine.url.render_as_string(hide_password=True)}: {reason}. lupo_migrate keeps"
            f" its {logical} tables there, apart from the application's: {grant}; or set"
            f" schemas.{logical} in lupo.toml to a {kind} it may use"
        ) from exc


def _legacy_tables(engine: sa.Engine, core: str, schema: str) -> ConfigurationError:
    """The error for orchestration tables an earlier lupo_migrate left in the core schema."""
    from lupo_migrate.backends.sqlalchemy.target import ORCHESTRATION_TABLES

    quote = engine.dialect.identifier_preparer.quote
    names = sorted(ORCHESTRATION_TABLES)
    if engine.dialect.name == "mysql":
        move = "RENAME TABLE " + ", ".join(
            f"{quote(core)}.{n} TO {quote(schema)}.{n}" for n in names
        )
    else:
        move = "; ".join(f"ALTER TABLE {quote(core)}.{n} SET SCHEMA {quote(schema)}" for n in names)
    return ConfigurationError(
        f"{core} holds lupo_migrate's orchestration tables from an earlier version, which kept"
        f" them in the core schema; they now live in {schema} (created, still empty). Move"
        f" them there once, as an administrator, before anything else runs: {move}"
        " (backup tables lupo_bk_* may stay, or move the same way)"
    )


def _default_schema(engine: sa.Engine) -> str:
    """The schema unqualified names land in: the MySQL database, ``public``, ``main``."""
    name = engine.dialect.name
    if name == "postgresql":
        return "public"
    if name == "sqlite":
        return "main"
    return str(engine.url.database or "")


def _open_ephemeral(
    place: tuple[sa.Engine, str | None] | None, engines: list[sa.Engine], clock: Clock
) -> Ephemeral:
    """The ephemeral schema at *place* (a session's ``ephemeral_place``: beside the
    orchestration tables, a schema of its own on their server), created if missing. An
    in-memory SQLite target has no file to put it beside: it gets an in-memory database of its
    own, added to *engines* (the session's, disposed with it)."""
    from sqlalchemy.pool import StaticPool

    from lupo_migrate.backends.sqlalchemy.ephemeral import SqlAlchemyEphemeral
    from lupo_migrate.backends.sqlalchemy.target import make_engine

    if place is None:
        raise ConfigurationError("this session has no database for the ephemeral schema")
    engine, schema = place
    memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    if memory:
        engine = make_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        engines.append(engine)
    _prepare_schema(engine, schema, logical="ephemeral")
    ephemeral = SqlAlchemyEphemeral(engine, schema=schema, clock=clock)
    ephemeral.ensure_schema()
    return ephemeral


def _hold_freeze_lease(freeze: Freeze, store: sa.Engine, schema: str | None, clock: Clock) -> None:
    """The write freeze holds its lease in the ephemeral ``locks`` table too (beside the
    orchestration tables, reachable through *store*; made ready at the first freeze); not
    for an in-memory SQLite database, whose ephemeral tables live in a database of their
    own."""
    from lupo_migrate.backends.sqlalchemy.ephemeral import SqlAlchemyEphemeral
    from lupo_migrate.backends.sqlalchemy.freeze import SqlAlchemyFreeze

    gate = getattr(freeze, "lease", freeze)
    if not isinstance(gate, SqlAlchemyFreeze):
        return
    if store.dialect.name == "sqlite" and store.url.database in (None, "", ":memory:"):
        return

    def ready() -> sa.Table:  # at the first freeze: read-only commands create nothing
        _prepare_schema(store, schema, logical="ephemeral")
        ephemeral = SqlAlchemyEphemeral(store, schema=schema, clock=clock)
        ephemeral.ensure_schema()
        return ephemeral.tables.locks

    gate.leases = ready


def _freeze(
    settings: Settings,
    store: sa.Engine,
    engine: sa.Engine,
    clock: Clock,
    schema: str | None,
    leases: sa.Table | None = None,
) -> Freeze:
    """The write gate the settings choose: the lease row (held in the ephemeral ``locks``
    table too, when *leases* is given), or the server's read_only too."""
    from lupo_migrate.backends.sqlalchemy.freeze import SqlAlchemyFreeze

    if settings.freeze != "read_only":
        return SqlAlchemyFreeze(store, settings.target, clock=clock, schema=schema, leases=leases)
    from lupo_migrate.backends.sqlalchemy.readonly import ReadOnlyFreeze

    if engine.dialect.name not in ("mysql", "mariadb"):
        raise ConfigurationError(
            f"freeze = read_only needs a MySQL or MariaDB target, got {engine.dialect.name};"
            ' use freeze = "lease" (the default)'
        )
    return ReadOnlyFreeze(
        store,
        settings.target,
        clock=clock,
        schema=schema if store is engine else None,
        server_engine=engine,
    )
