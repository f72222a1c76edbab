"""Settings: defaults, then ``pyproject.toml`` ``[tool.lupo_migrate]``, then ``lupo.toml``, then
environment variables, then command-line flags (each later source wins).

::

    =========================== ======================== ===========================================
    setting                     environment              meaning
    =========================== ======================== ===========================================
    ``db``                      ``LUPO_MIGRATE_DB``      SQLAlchemy URL of the target database
    ``migrations``              ``LUPO_MIGRATE_DIR``     the migrations directory
    ``manifest``                ``LUPO_MIGRATE_MANIFEST`` manifest for header-less files
    ``files``                   ``LUPO_MIGRATE_FILES``   the directory agent and documentation
                                                         steps change (default: the migrations
                                                         directory's parent)
    ``target``                  ``LUPO_MIGRATE_TARGET``  name runs are recorded under
    ``table_budget``            ``LUPO_MIGRATE_TABLE_BUDGET`` core table limit (off unless set)
    ``lock_wait_timeout``       ``LUPO_MIGRATE_LOCK_WAIT`` seconds DDL waits for a metadata lock (5)
    ``lock_timeout``            ``LUPO_MIGRATE_LOCK_TIMEOUT`` seconds to wait for the run lock (0)
    ``online``                  ``LUPO_MIGRATE_ONLINE``  how MySQL/MariaDB ALTER TABLE and CREATE
                                                         INDEX go: ``auto`` (INSTANT, else
                                                         INPLACE with LOCK=NONE, else an online
                                                         copy, else as written), ``inplace``
                                                         (never blocking writes), ``instant``,
                                                         ``copy`` (always an online copy) or
                                                         ``off``
    ``copy_chunk_time``         ``LUPO_MIGRATE_COPY_CHUNK_TIME`` seconds each chunk of an online
                                                         copy should take (0.1)
    ``copy_max_threads``        ``LUPO_MIGRATE_COPY_MAX_THREADS`` an online copy waits while the
                                                         server's Threads_running is above this
                                                         (25; 0: never)
    ``copy_min_rows``           ``LUPO_MIGRATE_COPY_MIN_ROWS`` in ``auto``, tables with fewer rows
                                                         are altered as written (10000)
    ``copy_replicas``           ``LUPO_MIGRATE_COPY_REPLICAS`` URLs of replicas an online copy
                                                         waits for (comma-separated in the
                                                         variable)
    ``copy_max_lag``            ``LUPO_MIGRATE_COPY_MAX_LAG`` seconds a replica may lag before the
                                                         copy waits (1)
    ``copy_executor``           ``LUPO_MIGRATE_COPY_EXECUTOR`` what makes an online copy:
                                                         ``lupo`` (lupo_migrate's own) or
                                                         ``pt-online-schema-change``
    ``copy_swap_back``          ``LUPO_MIGRATE_COPY_SWAP_BACK`` ``true``: after an online copy's
                                                         cut-over the old table is kept current
                                                         for the decision window (triggers on
                                                         the table), so a rollback swaps it
                                                         back at once instead of copying again
                                                         (false)
    ``lock_retries``            ``LUPO_MIGRATE_LOCK_RETRIES`` times a step whose statement gave up
                                                         waiting for a lock is tried again (3)
    ``lock_retry_backoff``      ``LUPO_MIGRATE_LOCK_RETRY_BACKOFF`` seconds paused before the
                                                         first retry, doubled for each next (1)
    ``long_transaction_wait``   ``LUPO_MIGRATE_LONG_TRANSACTION_WAIT`` seconds a DDL statement
                                                         waits, unsent, for other sessions'
                                                         transactions holding its tables (30);
                                                         then the run fails as transient
    ``statement_wait``          ``LUPO_MIGRATE_STATEMENT_WAIT`` seconds ``recover`` waits for a
                                                         statement a dead run left running on the
                                                         server (MySQL/MariaDB; 120)
    ``backup_limit``            ``LUPO_MIGRATE_BACKUP_LIMIT`` most rows of a table backed up
                                                         (100000)
    ``integrity_limit``         ``LUPO_MIGRATE_INTEGRITY_LIMIT`` tables the run does not touch are
                                                         checksummed before and after it up to
                                                         this many rows (10000)
    ``orchestration_db``        ``LUPO_MIGRATE_ORCHESTRATION_DB`` URL for lupo_migrate's own tables
    ``drift``                   ``LUPO_MIGRATE_DRIFT``   ``error`` (default), ``warn`` or ``off``
    ``keep_rollback_hours``     ``LUPO_MIGRATE_KEEP_ROLLBACK`` hours a completed run stays
                                                         rollbackable (24)
    ``probe_threshold``         ``LUPO_MIGRATE_PROBE_THRESHOLD`` slowdown factor a probe may
                                                         show before a class B finding (2.0)
    ``freeze_ttl``              ``LUPO_MIGRATE_FREEZE_TTL`` seconds the write freeze lasts if the
                                                         orchestrator dies (300; renewed while it
                                                         runs)
    ``freeze``                  ``LUPO_MIGRATE_FREEZE``  ``lease`` (default: a lease row hosts read
                                                         and ``guard()`` enforces) or ``read_only``
                                                         (MySQL/MariaDB: the server's flag too,
                                                         thawed by a server event at expiry)
    ``webhook``                 ``LUPO_MIGRATE_WEBHOOK`` URL alerts are POSTed to as JSON (a
                                                         ``WebhookSink``; none by default)
    ``webhook_levels``          ``LUPO_MIGRATE_WEBHOOK_LEVELS`` levels sent (all; the variable:
                                                         ``critical,warning``)
    ``webhook_timeout``         ``LUPO_MIGRATE_WEBHOOK_TIMEOUT`` the most a run waits for the
                                                         webhook, in seconds (5)
    ``webhook_authorization``   ``LUPO_MIGRATE_WEBHOOK_AUTHORIZATION`` ``Authorization`` header
                                                         sent (keep it in the environment)
    ``out_of_order``            ``LUPO_MIGRATE_OUT_OF_ORDER`` ``true``: apply a pending versioned
                                                         file older than the highest applied one
                                                         (default ``false``: refused)
    ``forbid``                                           lint rules whose findings refuse the run
                                                         (``["foreign-key", "trigger"]``)
    ``lint_ignore``                                      lint rules not reported
    ``probes``                                           ``{name = "SELECT ..."}`` timed before and
                                                         after a run
    ``schemas``                                          ``{core=, orchestration=, ephemeral=}``
    ``renames``                                          ``{lupopedia = "test"}``: literal
                                                         schema names
    =========================== ======================== ===========================================

Paths in a file are relative to that file's directory. Passwords are never printed:
:meth:`Settings.shown_db` hides them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import ConfigurationError
from lupo_migrate.sql.online import check_executor, check_mode

__all__ = ["ENVIRONMENT", "Settings", "from_options", "load_settings"]

#: Environment variable for each setting.
ENVIRONMENT: Final = {
    "db": "LUPO_MIGRATE_DB",
    "migrations": "LUPO_MIGRATE_DIR",
    "manifest": "LUPO_MIGRATE_MANIFEST",
    "files": "LUPO_MIGRATE_FILES",
    "target": "LUPO_MIGRATE_TARGET",
    "table_budget": "LUPO_MIGRATE_TABLE_BUDGET",
    "lock_wait_timeout": "LUPO_MIGRATE_LOCK_WAIT",
    "lock_timeout": "LUPO_MIGRATE_LOCK_TIMEOUT",
    "lock_retries": "LUPO_MIGRATE_LOCK_RETRIES",
    "online": "LUPO_MIGRATE_ONLINE",
    "copy_chunk_time": "LUPO_MIGRATE_COPY_CHUNK_TIME",
    "copy_max_threads": "LUPO_MIGRATE_COPY_MAX_THREADS",
    "copy_min_rows": "LUPO_MIGRATE_COPY_MIN_ROWS",
    "copy_replicas": "LUPO_MIGRATE_COPY_REPLICAS",
    "copy_max_lag": "LUPO_MIGRATE_COPY_MAX_LAG",
    "copy_executor": "LUPO_MIGRATE_COPY_EXECUTOR",
    "copy_swap_back": "LUPO_MIGRATE_COPY_SWAP_BACK",
    "lock_retry_backoff": "LUPO_MIGRATE_LOCK_RETRY_BACKOFF",
    "backup_limit": "LUPO_MIGRATE_BACKUP_LIMIT",
    "orchestration_db": "LUPO_MIGRATE_ORCHESTRATION_DB",
    "drift": "LUPO_MIGRATE_DRIFT",
    "keep_rollback_hours": "LUPO_MIGRATE_KEEP_ROLLBACK",
    "probe_threshold": "LUPO_MIGRATE_PROBE_THRESHOLD",
    "freeze_ttl": "LUPO_MIGRATE_FREEZE_TTL",
    "integrity_limit": "LUPO_MIGRATE_INTEGRITY_LIMIT",
    "freeze": "LUPO_MIGRATE_FREEZE",
    "long_transaction_wait": "LUPO_MIGRATE_LONG_TRANSACTION_WAIT",
    "statement_wait": "LUPO_MIGRATE_STATEMENT_WAIT",
    "webhook": "LUPO_MIGRATE_WEBHOOK",
    "webhook_levels": "LUPO_MIGRATE_WEBHOOK_LEVELS",
    "webhook_timeout": "LUPO_MIGRATE_WEBHOOK_TIMEOUT",
    "webhook_authorization": "LUPO_MIGRATE_WEBHOOK_AUTHORIZATION",
    "out_of_order": "LUPO_MIGRATE_OUT_OF_ORDER",
}
_INTS: Final = (
    "table_budget",
    "lock_wait_timeout",
    "lock_retries",
    "backup_limit",
    "integrity_limit",
    "copy_max_threads",
    "copy_min_rows",
)
#: Numbers that cannot be negative.
_NOT_NEGATIVE: Final = (
    "statement_wait",
    "lock_retries",
    "lock_retry_backoff",
    "copy_max_threads",
    "copy_min_rows",
    "copy_max_lag",
)
_FLOATS: Final = (
    "lock_timeout",
    "lock_retry_backoff",
    "keep_rollback_hours",
    "probe_threshold",
    "freeze_ttl",
    "long_transaction_wait",
    "statement_wait",
    "webhook_timeout",
    "copy_chunk_time",
    "copy_max_lag",
)
_PATHS: Final = ("migrations", "manifest", "files")
_LISTS: Final = ("forbid", "lint_ignore")
_BOOLS: Final = ("out_of_order", "copy_swap_back")
_TRUE: Final = ("true", "yes", "on", "1")
_FALSE: Final = ("false", "no", "off", "0")
_DRIFT: Final = ("error", "warn", "off")
_FREEZE: Final = ("lease", "read_only")
_KNOWN: Final = frozenset(ENVIRONMENT) | {"schemas", "renames", "probes", *_LISTS}


@attrs.frozen(kw_only=True)
class Settings:
    """Where and how to migrate."""

    db: str | None = None
    migrations: Path | None = None
    manifest: Path | None = None
    files: Path | None = None
    target: str = "default"
    table_budget: int | None = None  # off unless configured (the doctrine's limit is 77)
    lock_wait_timeout: int = 5
    lock_timeout: float = 0.0
    lock_retries: int = 3
    lock_retry_backoff: float = 1.0
    online: str = "auto"
    copy_chunk_time: float = 0.1
    copy_max_threads: int = 25
    copy_min_rows: int = 10_000
    copy_replicas: tuple[str, ...] = ()
    copy_max_lag: float = 1.0
    copy_executor: str = "lupo"
    copy_swap_back: bool = False
    long_transaction_wait: float = 30.0
    statement_wait: float = 120.0
    backup_limit: int = 100_000
    integrity_limit: int = 10_000
    orchestration_db: str | None = None
    drift: str = "error"
    keep_rollback_hours: float = 24.0
    probe_threshold: float = 2.0
    freeze_ttl: float = 300.0
    freeze: str = "lease"
    webhook: str | None = None
    webhook_levels: tuple[str, ...] = ("critical", "warning", "info")
    webhook_timeout: float = 5.0
    webhook_authorization: str | None = None
    out_of_order: bool = False
    forbid: tuple[str, ...] = ()
    lint_ignore: tuple[str, ...] = ()
    probes: Mapping[str, str] = attrs.field(factory=dict)
    schemas: Mapping[str, str] = attrs.field(factory=dict)
    renames: Mapping[str, str] = attrs.field(factory=dict)
    sources: tuple[str, ...] = ()

    def shown_db(self) -> str:
        """The database URL with any password replaced by ``***``."""
        return hide_password(self.db or "")


def hide_password(url: str) -> str:
    """*url* with the password part masked (``user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"


def _coerce(key: str, value: Any, where: str) -> Any:
    try:
        if key in _INTS or key in _FLOATS:
            number: float = int(value) if key in _INTS else float(value)
            if key in _NOT_NEGATIVE and not number >= 0:
                raise ValueError(value)
            if key == "copy_chunk_time" and not number > 0:
                raise ValueError(value)
            return number
    except (TypeError, ValueError):
        what = {
            "statement_wait": "a number of seconds, 0 or more",
            "lock_retry_backoff": "a number of seconds, 0 or more",
            "lock_retries": "a whole number, 0 or more",
            "copy_max_threads": "a whole number, 0 or more",
            "copy_min_rows": "a whole number, 0 or more",
            "copy_chunk_time": "a number of seconds above 0",
            "copy_max_lag": "a number of seconds, 0 or more",
        }.get(key, "a number")
        raise ConfigurationError(f"{where}: {key} must be {what}, got {value!r}") from None
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        raise ConfigurationError(f"{where}: {key} must be true or false, got {value!r}")
    if key == "online":
        try:
            return check_mode(value, where)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    if key == "copy_executor":
        try:
            return check_executor(value, where)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    if key == "drift" and value not in _DRIFT:
        raise ConfigurationError(
            f"{where}: drift must be one of {', '.join(_DRIFT)}, got {value!r}"
        )
    if key == "freeze" and value not in _FREEZE:
        raise ConfigurationError(
            f"{where}: freeze must be one of {', '.join(_FREEZE)}, got {value!r}"
        )
    if key == "webhook" and not (
        isinstance(value, str) and value.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(
            f"{where}: webhook must be an http:// or https:// URL alerts are POSTed to,"
            f" got {value!r}"
        )
    if key == "webhook_levels":
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        levels = ("critical", "warning", "info")
        if not isinstance(items, list | tuple) or not set(items) <= set(levels) or not items:
            raise ConfigurationError(
                f"{where}: webhook_levels must name some of {', '.join(levels)},"
                f' e.g. webhook_levels = ["critical", "warning"]; got {value!r}'
            )
        return tuple(items)
    if key == "copy_replicas":
        items = (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )
        if not isinstance(items, list | tuple) or not all(
            isinstance(v, str) and "://" in v for v in items
        ):
            raise ConfigurationError(
                f"{where}: copy_replicas must be a list of database URLs, e.g. copy_replicas ="
                f' ["mysql://root@replica1/shop"]; got {value!r}'
            )
        return tuple(items)
    if key in _LISTS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigurationError(
                f'{where}: {key} must be a list of rule names, e.g. {key} = ["trigger"]'
            )
        return tuple(items)
    if key in ("schemas", "renames", "probes"):
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigurationError(
                f"{where}: {key} must be a table of names,"
                + (
                    ' e.g. probes = { users = "SELECT COUNT(*) FROM users" }'
                    if key == "probes"
                    else f' e.g. {key} = {{ core = "app" }}'
                )
            )
        return dict(value)
    return value


def _from_file(path: Path, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    out = {k: _coerce(k, v, where) for k, v in table.items()}
    for key in _PATHS:
        if key in out:
            out[key] = (path.parent / str(out[key])).resolve()
    if (
        "db" in out
        and str(out["db"]).startswith("sqlite:///")
        and not str(out["db"]).startswith("sqlite:////")
    ):
        relative = str(out["db"])[len("sqlite:///") :]
        if relative and relative != ":memory:":
            out["db"] = f"sqlite:///{(path.parent / relative).resolve()}"
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from None


def load_settings(
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    config: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from the files in *cwd*, the environment and *overrides* (flags; None = unset).

    Args:
        cwd: where to look for ``pyproject.toml`` and ``lupo.toml`` (default: current dir).
        environ: the environment (default: ``os.environ``).
        config: an explicit settings file (TOML; a ``[tool.lupo_migrate]`` table or top level).
        overrides: values from flags; None means not given.

    Raises:
        ConfigurationError: a file is not TOML, or a setting is unknown or of the wrong type.
    """
    cwd = cwd or Path.cwd()
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: list[str] = []
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("lupo_migrate")
        if table:
            values.update(_from_file(pyproject, table, f"{pyproject} [tool.lupo_migrate]"))
            sources.append(str(pyproject))
    for path in [cwd / "lupo.toml", *([config] if config is not None else [])]:
        if path.is_file() or path == config:
            if not path.is_file():
                raise ConfigurationError(f"{path}: settings file not found")
            data = _read_toml(path)
            table = data.get("tool", {}).get("lupo_migrate", data)
            values.update(_from_file(path, table, str(path)))
            sources.append(str(path))
    for key, name in ENVIRONMENT.items():
        if env.get(name):
            value = _coerce(key, env[name], f"environment {name}")
            values[key] = Path(value) if key in _PATHS else value
            sources.append(name)
    for key, value in overrides.items():
        if value is not None:
            values[key] = Path(value) if key in _PATHS else _coerce(key, value, f"--{key}")
    return Settings(**values, sources=tuple(sources))


def from_options(
    *,
    directory: Path | None,
    db: str | None,
    target_name: str | None,
    manifest: Path | None,
    config: Path | None,
    renames: Sequence[str] = (),
    orchestration_schema: str | None = None,
    **more: Any,
) -> Settings:
    """Settings as the command line's options give them (the files and the environment
    under them): ``--orchestration-schema`` and ``--rename OLD=NEW`` included.

    Raises:
        ConfigurationError: as :func:`load_settings`, or a ``--rename`` without ``=``.
    """
    settings = load_settings(
        config=config, db=db, migrations=directory, manifest=manifest, target=target_name, **more
    )
    if orchestration_schema:
        schemas = {**settings.schemas, "orchestration": orchestration_schema}
        settings = attrs.evolve(settings, schemas=schemas)
    if renames:
        pairs = {}
        for item in renames:
            old, sep, new = item.partition("=")
            if not sep or not old or not new:
                raise ConfigurationError(f"--rename takes OLD=NEW, got {item!r}")
            pairs[old] = new
        settings = attrs.evolve(settings, renames={**settings.renames, **pairs})
    return settings
