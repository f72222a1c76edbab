"""A schema's fingerprint from the catalog: :func:`read_fingerprint`."""

from __future__ import annotations

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy.fingerprint._helpers import Exclude, _family
from lupo_migrate.backends.sqlalchemy.fingerprint._mysql import _read_mysql
from lupo_migrate.backends.sqlalchemy.fingerprint._postgresql import _read_postgresql
from lupo_migrate.backends.sqlalchemy.fingerprint._sqlite import _read_sqlite
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.fingerprint import Fingerprint


def read_fingerprint(
    connection: sa.Connection, schema: str | None = None, *, exclude: Exclude = ()
) -> Fingerprint:
    """The fingerprint of *schema* (default: the connection's current database or schema).

    Args:
        connection: an open connection (MySQL/MariaDB, PostgreSQL or SQLite).
        schema: the MySQL database, PostgreSQL schema or attached SQLite database to read.
        exclude: table names to leave out (or a predicate on the name): typically
            lupo_migrate's own tables when they live in the same schema.

    Raises:
        StorageError: the catalog could not be read (the reason and the schema are named).
        InvalidArgumentError: an unsupported database.
    """
    skip = exclude if callable(exclude) else frozenset(exclude).__contains__
    family = _family(connection)
    reader = {"mysql": _read_mysql, "postgresql": _read_postgresql, "sqlite": _read_sqlite}
    try:
        objects = reader[family](connection, schema)
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).split("\n")[0]
        raise StorageError(
            f"cannot read the schema {schema or '(current)'} for its fingerprint: {reason}"
        ) from exc
    kept = {
        key: value
        for key, value in objects.items()
        if not (key.startswith("table:") and skip(key[6:]))
        and not (key.startswith("trigger:") and (skip(value.get("table", "")) or skip(key[8:])))
    }
    return Fingerprint(dialect=family, objects=kept)
