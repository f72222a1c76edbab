"""Federation: where the logical schemas ``core``, ``orchestration`` and ``ephemeral`` live
(functional core: settings in, physical names out; no I/O).

Defaults, when ``schemas`` in the settings does not name them:

============== ============================== ============================== =================
logical        MySQL / MariaDB (a database)   PostgreSQL (a schema)          SQLite (a file)
============== ============================== ============================== =================
core           the URL's database             ``public``                     the target file
orchestration  ``<core>_lupo_orchestration``  ``lupo_orchestration``         ``app.lupo.db``
ephemeral      ``<core>_lupo_ephemeral``      ``lupo_ephemeral``             ``app.lupo.db``
============== ============================== ============================== =================

On MySQL each application on a server gets its own pair of databases. ``lupo`` is in every
default name so that it never meets an application's own orchestration schema: the doctrine
names Lupopedia's ``lupopedia_orchestration``, and its tables have the names of ours (set
``schemas.orchestration`` to use such a name anyway; lupo_migrate refuses tables it did not
create). On PostgreSQL the database already sets applications apart, so the schemas have
fixed names inside it (a restored copy under another name finds its tables). On SQLite
both go to the sibling file ``backends.sqlite_files.sibling_store`` names (``app.db`` ->
``app.lupo.db``); an in-memory
target has no sibling, so its orchestration tables stay beside the core ones (and are left
out of every count) and its ephemeral tables get an in-memory database of their own.

With ``orchestration_db`` (another database for lupo_migrate's tables) both default to that
database's own default schema. A setting that puts orchestration or ephemeral tables into
the core schema is refused: lupo_migrate's tables never count against the table budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from lupo_migrate.core.errors import ConfigurationError

__all__ = [
    "EPHEMERAL_SUFFIX",
    "LOOPBACK",
    "ORCHESTRATION_SUFFIX",
    "POSTGRESQL_EPHEMERAL",
    "POSTGRESQL_ORCHESTRATION",
    "Placement",
    "companions",
    "family",
    "orchestration_schema",
    "place",
]

#: MySQL/MariaDB: the default databases are the core database's name with these suffixes.
ORCHESTRATION_SUFFIX: Final = "_lupo_orchestration"
EPHEMERAL_SUFFIX: Final = "_lupo_ephemeral"
#: PostgreSQL: the default schemas, inside the target database.
POSTGRESQL_ORCHESTRATION: Final = "lupo_orchestration"
POSTGRESQL_EPHEMERAL: Final = "lupo_ephemeral"

#: Longest identifier: MySQL database names, PostgreSQL names.
_LIMITS: Final = {"mysql": 64, "postgresql": 63}
_FAMILIES: Final = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}


def family(dialect: str) -> str:
    """``mysql`` (MySQL and MariaDB), ``postgresql``, or the dialect name itself."""
    return _FAMILIES.get(dialect, dialect)


@attrs.frozen(kw_only=True)
class Placement:
    """The physical names of the logical schemas of one target.

    Attributes:
        core: the core schema (MySQL database, PostgreSQL schema, ``main`` on SQLite).
        orchestration: the schema qualifying the orchestration tables on their database
            (None: that database's default schema, i.e. a database of their own).
        ephemeral: likewise for the ephemeral tables.
    """

    core: str
    orchestration: str | None
    ephemeral: str | None


def companions(core: str) -> tuple[str, str]:
    """The default MySQL/MariaDB orchestration and ephemeral databases of database *core*."""
    return core + ORCHESTRATION_SUFFIX, core + EPHEMERAL_SUFFIX


def place(
    dialect: str,
    *,
    database: str | None,
    schemas: Mapping[str, str],
    separate: bool = False,
) -> Placement:
    """Where each logical schema of a target lives.

    Args:
        dialect: the target's dialect (``mysql``, ``mariadb``, ``postgresql``, ``sqlite``).
        database: the database the target URL names (MySQL; the file on SQLite).
        schemas: the ``schemas`` setting (``core``, ``orchestration``, ``ephemeral``).
        separate: lupo_migrate's tables are in another database than the target's (the
            SQLite sibling file, or ``orchestration_db``).

    Raises:
        ConfigurationError: orchestration or ephemeral would be the core schema; a default
            name would be too long; a MySQL URL names no database; a schema is set on SQLite.
    """
    kind = family(dialect)
    explicit = {k: v for k, v in schemas.items() if v}
    if kind == "sqlite":
        for name in ("orchestration", "ephemeral"):
            if name in explicit:
                raise ConfigurationError(
                    f"schemas.{name} = {explicit[name]!r} cannot be used with a SQLite target:"
                    " lupo_migrate keeps its tables in a file beside the target (app.db ->"
                    " app.lupo.db). Remove the setting, or set orchestration_db ="
                    ' "sqlite:///path/to/file.db" to choose the file'
                )
        return Placement(core=explicit.get("core", "main"), orchestration=None, ephemeral=None)
    if kind == "mysql":
        core = explicit.get("core") or database or ""
        if not core:
            raise ConfigurationError(
                "the MySQL/MariaDB URL names no database, so there is no core schema to"
                " migrate; add it to the URL (mysql+pymysql://user@host/app) or set"
                " schemas.core"
            )
        defaults = companions(core)
    elif kind == "postgresql":
        core = explicit.get("core", "public")
        defaults = (POSTGRESQL_ORCHESTRATION, POSTGRESQL_EPHEMERAL)
    else:
        core = explicit.get("core") or database or ""
        defaults = ("", "")
    found: dict[str, str | None] = {}
    for name, default in zip(("orchestration", "ephemeral"), defaults, strict=True):
        chosen = explicit.get(name)
        if chosen is None and separate:
            found[name] = None  # the other database's default schema
            continue
        value = chosen or default or None
        if value is not None and value == core and not separate:
            raise ConfigurationError(
                f"schemas.{name} = {value!r} is the core schema itself; lupo_migrate never"
                f" keeps its {name} tables among the application's (they would count against"
                f" the table budget). Set schemas.{name} to another name (by default"
                f" {default or 'a schema of its own'}), or leave it unset"
            )
        limit = _LIMITS.get(kind)
        if value is not None and limit is not None and len(value) > limit:
            raise ConfigurationError(
                f"the {name} schema name {value!r} is {len(value)} characters long, over the"
                f" {limit} {dialect} allows; set schemas.{name} to a shorter name in lupo.toml"
                " (or --orchestration-schema)"
            )
        found[name] = value
    return Placement(core=core, orchestration=found["orchestration"], ephemeral=found["ephemeral"])


def orchestration_schema(
    dialect: str, *, database: str | None, schemas: Mapping[str, str], separate: bool = False
) -> str | None:
    """The schema of the orchestration tables, as :func:`place` decides it (for code that
    reads them without SQLAlchemy)."""
    return place(dialect, database=database, schemas=schemas, separate=separate).orchestration


#: Host names that are this machine: a connection to one of them is not encrypted (see
#: ``backends.sqlalchemy.target``) and the fast path connects with the bare driver.
LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
