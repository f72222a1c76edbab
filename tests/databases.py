"""Fresh, isolated databases for tests: SQLite files, MariaDB and PostgreSQL databases.

Each ``fresh_database(kind, tmp_path)`` makes a new empty database and returns its URL; the
context manager drops it afterwards (on MariaDB with its companion databases ``<name>_...``,
where lupo_migrate keeps its orchestration and ephemeral tables). Servers are the local ones
(loopback only); override with LUPO_TEST_MARIADB_URL / LUPO_TEST_POSTGRESQL_URL (a server URL
without a database name). When the server is unreachable the test is skipped, except with CI
set, where it fails: CI must run the database tests.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MARIADB_SERVER = os.environ.get("LUPO_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRESQL_SERVER = os.environ.get(
    "LUPO_TEST_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432"
)
KINDS = ("sqlite", "mariadb", "postgresql")


def _unavailable(kind: str, error: Exception) -> None:
    message = f"{kind} server unreachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run the database tests: start the server)")
    pytest.skip(message)


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new empty database of *kind*; drop it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'lupo_{uuid.uuid4().hex[:8]}.db'}"
        return
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    name = f"lupo_t_{uuid.uuid4().hex[:12]}"
    if kind == "mariadb":
        server, admin_db, create = (
            MARIADB_SERVER,
            "",
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
        )
        drop = f"DROP DATABASE IF EXISTS `{name}`"
    elif kind == "postgresql":
        server, admin_db, create = POSTGRESQL_SERVER, "/postgres", f'CREATE DATABASE "{name}"'
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    admin = sa.create_engine(server + admin_db, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create)
    except Exception as error:  # connection refused, auth...: skip or fail as above
        admin.dispose()
        _unavailable(kind, error)
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop)
            if kind == "mariadb":
                # Its companions: the default orchestration and ephemeral databases
                # (<name>_lupo_orchestration, <name>_lupo_ephemeral) and those tests name
                # themselves (<name>_orch...). PostgreSQL keeps them inside the database.
                companions = conn.exec_driver_sql(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
                    (name.replace("_", "\\_") + "\\_%",),
                ).scalars()
                for companion in list(companions):
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{companion}`")
        admin.dispose()


def database_params() -> list[object]:
    """pytest params over the three kinds, marked so `-m "not mariadb"` can deselect."""
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]


def table_names(url: str) -> set[str]:
    """The names of the tables in the database at *url* (its default schema)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def mariadb_client(url: str, sql: str) -> None:
    """Run *sql* on the database of *url* with the ``mariadb`` client, as a user would."""
    import subprocess

    import sqlalchemy as sa

    name = sa.make_url(url).database
    subprocess.run(
        ["mariadb", "-uroot", "-h127.0.0.1", str(name)], input=sql, text=True, check=True
    )


def apply_with_events(url: str, root: Path, **options: Any) -> tuple[Any, list[Any]]:
    """Apply the migrations in *root* to *url* (settings *options*); the result and every
    event of the run."""
    from lupo_migrate.session import session
    from lupo_migrate.session.config import Settings

    events: list[Any] = []
    with session.session(Settings(db=url, migrations=root, **options)) as opened:
        opened.orchestrator.observers = [events.append]
        result = opened.orchestrator.apply(opened.steps)
    return result, events


def mysqldump(url: str, *tables: str) -> str:
    """What ``mysqldump`` says of *tables* of the MariaDB database of *url* (definitions and
    rows, no dates or comments): the engine's own client, to compare results with."""
    import subprocess

    import sqlalchemy as sa

    name = str(sa.make_url(url).database)
    done = subprocess.run(
        [
            "mysqldump",
            "-uroot",
            "-h127.0.0.1",
            "--skip-dump-date",
            "--skip-comments",
            name,
            *tables,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def leftovers(url: str, like: str = "%", but: tuple[str, ...] = ()) -> list[str]:
    """The tables of the database of *url* whose names are LIKE *like* (but *but*), and
    every trigger there, sorted: what an online copy could leave behind."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema ="
                " DATABASE() AND table_name LIKE %s",
                (like,),
            ).all()
            triggers = conn.exec_driver_sql(
                "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema ="
                " DATABASE()"
            ).all()
        return sorted(str(r[0]) for r in [*tables, *triggers] if str(r[0]) not in but)
    finally:
        engine.dispose()
