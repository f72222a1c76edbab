"""The nothing-to-do fast path of ``lupo-migrate apply``: the answer without SQLAlchemy.

A re-run with nothing new is the commonest ``apply`` of all: deploy scripts run it on every
release. The full path imports SQLAlchemy and networkx, creates the orchestration tables when
missing, and plans, which costs about half a second before it can say "nothing to do".

Here the migration files are read as always (so a bad file is still reported by the full
path), then one connection with the bare driver reads the orchestration schema version, the
target's latest run and its ledger. The answer is "nothing to do" only when the tables are at
the schema version this code writes, the latest run ended and is not blocked, and every file
is in the ledger with the checksum it has now. In every other case, and on any doubt (a URL
with options, a driver that is not installed, any database error), :func:`nothing_to_do`
returns None and the full path decides, with its own checks and messages.

Shell: reads files and the database; writes nothing anywhere.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, unquote

import attrs

from lupo_migrate.backends.sqlite_files import sibling_store
from lupo_migrate.core.placement import LOOPBACK, orchestration_schema
from lupo_migrate.core.tables import BATCHES, FILES, SCHEMA_ROW, SCHEMA_VERSION, SYSTEM_STATE
from lupo_migrate.session.config import Settings

if TYPE_CHECKING:
    from lupo_migrate.core.model import Step
    from lupo_migrate.handlers.registry import HandlerRegistry

__all__ = ["DatabaseUrl", "nothing_to_do", "parse_url", "read_steps"]

# dialect[+driver]://[user[:password]@][host|[ipv6]][:port][/database][?query], as SQLAlchemy
# writes them.
_URL: Final = re.compile(
    r"(?P<scheme>[\w+]+)://"
    r"(?:(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?:\[(?P<ipv6>[^\]/?]+)\]|(?P<host>[^/:?]+))?"
    r"(?::(?P<port>\d+))?"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?\Z",
    re.DOTALL,
)
_FAMILIES: Final = {
    "mysql": "mysql",
    "mysql+pymysql": "mysql",
    "mariadb": "mysql",
    "mariadb+pymysql": "mysql",
    "postgresql": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


@attrs.frozen
class DatabaseUrl:
    """A database URL this module can open with the bare driver."""

    family: str  # mysql, postgresql or sqlite
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    socket: str | None = None  # MySQL: ?unix_socket=; PostgreSQL: ?host= (a socket folder)


#: The query options the fast path understands, by family, and the DatabaseUrl field each
#: fills; a URL with any other option is left to SQLAlchemy.
_OPTIONS: Final = {"mysql": {"unix_socket": "socket"}, "postgresql": {"host": "socket"}}


def parse_url(url: str) -> DatabaseUrl | None:
    """The parts of *url*, or None when it is not a plain URL of a known driver.

    It reads a URL as SQLAlchemy's ``make_url`` does (``tests/test_quick.py`` holds them to
    the same answers), without importing SQLAlchemy. Of the query options only a socket
    (MySQL's ``?unix_socket=``, PostgreSQL's ``?host=``) is understood; any other option
    (``?charset=...``, ``?sslmode=...``) leaves the URL to SQLAlchemy.
    """
    match = _URL.match(url)
    if match is None:
        return None
    family = _FAMILIES.get(match["scheme"].lower())
    if family is None:
        return None
    database = match["database"]
    if family == "sqlite":
        if match["user"] is not None or match["host"] or match["ipv6"] or match["port"]:
            return None
        if match["query"] is not None:
            return None
        return DatabaseUrl(family, database=database or None)
    options: dict[str, str] = {}
    if match["query"] is not None:
        pairs = parse_qsl(match["query"], keep_blank_values=True)
        known = _OPTIONS.get(family, {})
        if not pairs or any(k not in known or not v for k, v in pairs):
            return None
        if len({k for k, _ in pairs}) != len(pairs):
            return None  # an option given twice: SQLAlchemy makes a list of it
        options = {known[k]: v for k, v in pairs}
    return DatabaseUrl(
        family,
        user=unquote(match["user"]) if match["user"] is not None else None,
        password=unquote(match["password"]) if match["password"] is not None else None,
        host=unquote(match["ipv6"] or match["host"] or "") or None,
        port=int(match["port"]) if match["port"] else None,
        database=unquote(database) if database else None,
        **options,
    )


#: Hosts that never leave this machine. PyMySQL (1.2+) otherwise builds a TLS context for
#: every connection to try TLS opportunistically (tens of milliseconds each); over loopback
#: that protects nothing, so lupo_migrate skips it unless the URL asks for TLS.


def _connect(url: DatabaseUrl) -> Any:
    """A DB-API connection, or None when this module would rather not decide."""
    if url.family == "mysql":
        if not url.host and not url.socket:
            return None
        import pymysql

        return pymysql.connect(
            host=url.host or "localhost",
            port=url.port or 3306,
            unix_socket=url.socket,
            user=url.user or "",
            password=url.password or "",
            database=url.database,
            connect_timeout=5,
            charset="utf8mb4",
            ssl_disabled=url.socket is not None or url.host in LOOPBACK,
        )
    if url.family == "postgresql":
        import psycopg2

        return psycopg2.connect(
            host=url.socket or url.host,
            port=url.port,
            user=url.user,
            password=url.password,
            dbname=url.database,
            connect_timeout=5,
        )
    if not url.database or url.database == ":memory:" or not Path(url.database).is_file():
        return None  # connecting would create the file: leave that to the full path
    return sqlite3.connect(f"file:{quote(url.database)}?mode=ro", uri=True)


def _orchestration(settings: Settings, target: DatabaseUrl) -> DatabaseUrl | None:
    """Where the orchestration tables are, as ``open_session`` decides it."""
    if settings.orchestration_db and settings.orchestration_db != settings.db:
        return parse_url(settings.orchestration_db)
    if target.family == "sqlite":
        if not target.database or target.database == ":memory:":
            return target
        return attrs.evolve(target, database=sibling_store(target.database))
    return target


def _read(
    connection: Any, family: str, schema: str | None, target: str
) -> tuple[Any, Any, dict[str, str], str | None]:
    """(schema version, latest run's (phase, outcome, blocked) or None, ledger, the
    fingerprint the last run recorded or None)."""
    mark = "?" if family == "sqlite" else "%s"
    quote_char = "`" if family == "mysql" else '"'

    def table(name: str) -> str:
        if not schema:
            return name
        return f"{quote_char}{schema.replace(quote_char, quote_char * 2)}{quote_char}.{name}"

    with closing(connection.cursor()) as cursor:
        cursor.execute(
            f"SELECT target, schema_version, fingerprint FROM {table(SYSTEM_STATE)}"
            f" WHERE target IN ({mark}, {mark})",
            (SCHEMA_ROW, target),
        )
        rows = {str(name): (version, text) for name, version, text in cursor.fetchall()}
        version = rows[SCHEMA_ROW][:1] if SCHEMA_ROW in rows else None
        recorded = rows.get(target, (None, None))[1]
        cursor.execute(
            f"SELECT phase, outcome, blocked FROM {table(BATCHES)} WHERE target = {mark}"
            " AND phase <> 'queue' ORDER BY id DESC LIMIT 1",
            (target,),
        )
        latest = cursor.fetchone()
        cursor.execute(
            f"SELECT step_id, checksum FROM {table(FILES)} WHERE target = {mark}", (target,)
        )
        ledger = {str(step): str(checksum) for step, checksum in cursor.fetchall()}
    return (version[0] if version else None), latest, ledger, recorded


def _tables_left(
    connection: Any, settings: Settings, target: DatabaseUrl, store: DatabaseUrl, text: Any
) -> bool:
    """Whether every table in the fingerprint the last run recorded (*text*) is still in
    the target, by one catalog query (see ``run.checks.check_left``, the full path's
    exact check); False on any doubt."""
    import json

    objects = json.loads(str(text)).get("objects", {})
    recorded = {key[6:] for key in objects if key.startswith("table:")}
    if not recorded:
        return True
    if settings.schemas:
        return False  # a core schema of its own: the full path knows where to look
    if target.family == "sqlite":
        if not target.database or not Path(target.database).is_file():
            return False  # the database file is gone
        with closing(_connect(target)) as own, closing(own.cursor()) as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return recorded <= {str(name) for (name,) in cursor.fetchall()}
    if attrs.evolve(store, database=None) != attrs.evolve(target, database=None):
        return False  # the orchestration tables are on another server
    query = "SELECT table_name FROM information_schema.tables WHERE table_schema = "
    args: tuple[str | None, ...] = ()
    if target.family == "mysql":
        query, args = query + "%s", (target.database,)
    elif store.database == target.database:
        query += "current_schema()"
    else:
        return False
    with closing(connection.cursor()) as cursor:
        cursor.execute(query, args)
        return recorded <= {str(name) for (name,) in cursor.fetchall()}


def read_steps(
    settings: Settings, *, hand_over: bool = False
) -> tuple[HandlerRegistry, tuple[Step, ...]] | None:
    """The handlers and the migration files, read as ``open_session`` reads them.

    Args:
        settings: the command's settings.
        hand_over: keep what was read for the next call in this process (the entry point's
            quick look hands its read to the command it then runs): that call takes it.

    Returns None when no directory is configured (the full path says so). File errors
    propagate, as on the full path.
    """
    if settings.migrations is None:
        return None
    key = (Path(settings.migrations), settings.manifest)
    if _READ:
        ((kept, read_before),) = _READ
        _READ.clear()
        if kept == key and not hand_over:
            return read_before  # read a moment ago by the entry point's quick look
    from lupo_migrate.files.discover import load_steps
    from lupo_migrate.handlers.plugins import default_registry

    registry = default_registry()
    steps = load_steps(
        settings.migrations, suffixes=registry.suffix_map() or None, manifest=settings.manifest
    )
    read = registry, tuple(steps)
    if hand_over:
        _READ[:] = [(key, read)]
    return read


def forget() -> None:
    """Drop a read handed over and not taken, and a "no" not taken."""
    _READ.clear()
    _DECLINED.clear()


def decline() -> None:
    """Note that :func:`nothing_to_do` was asked and could not say yes: the command the entry
    point now runs takes the full path without asking again (and connecting again)."""
    _DECLINED[:] = [True]


def declined() -> bool:
    """Whether the entry point's quick look was declined a moment ago (taken once)."""
    said = bool(_DECLINED)
    _DECLINED.clear()
    return said


#: Set by :func:`decline`, taken by :func:`declined`.
_DECLINED: list[bool] = []


#: The last read of this process (one command reads its files once, though the entry point's
#: quick look and the command both ask).
_READ: list[tuple[tuple[Path, Path | None], tuple[HandlerRegistry, tuple[Step, ...]]]] = []


def nothing_to_do(
    settings: Settings,
    read: tuple[HandlerRegistry, Sequence[Step]] | None = None,
) -> int | None:
    """How many migrations there are, if every one is applied unchanged; else None.

    Args:
        settings: the command's settings.
        read: the handlers and steps from :func:`read_steps` (read here when not given).

    Returns:
        The number of migration files when there is certainly nothing to do; None when the
        full path must decide.
    """
    read = read if read is not None else read_steps(settings)
    if read is None or not settings.db:
        return None
    registry, steps = read
    if not steps:
        return None  # no files at all: the full path warns, without opening the database
    target = parse_url(settings.db)
    store = _orchestration(settings, target) if target is not None else None
    if store is None or target is None:
        return None
    if any(step.file_type not in registry for step in steps):
        return None  # the full path names the file without a handler
    try:
        connection = _connect(store)
        if connection is None:
            return None
        with closing(connection):
            schema = orchestration_schema(
                target.family,
                database=target.database,
                schemas=settings.schemas,
                separate=store is not target,
            )
            version, latest, ledger, recorded = _read(
                connection, store.family, schema, settings.target
            )
            if not _settled(version, latest, ledger, steps):
                return None
            checked = recorded is None or settings.drift == "off"
            if not checked and not _tables_left(connection, settings, target, store, recorded):
                return None  # the full path names the tables that are gone
    except Exception:  # any doubt: the full path connects again and explains
        return None
    return len(steps)


def _settled(version: Any, latest: Any, ledger: dict[str, str], steps: Sequence[Step]) -> bool:
    """Whether the orchestration tables say every file is applied, unchanged, by runs that
    ended well."""
    if version != SCHEMA_VERSION:
        return False
    if latest is not None:
        phase, outcome, blocked = latest
        if phase != "idle" or outcome is None or blocked:
            return False
    if any(ledger.get(step.id) != step.checksum for step in steps):
        return False
    return len(ledger) == len(steps)  # else an applied file is gone: the full path says which
