"""Open a target from settings and run the database commands: apply, status, history, verify,
baseline, accept, and the run queue.

Shell. SQLAlchemy is imported here (through ``backends.sqlalchemy``) and only when a database
command runs, so ``import lupo_migrate``, ``plan`` and ``check`` stay light. Files are read and
checked *before* any connection is made, so bad input never writes to the database. The
engines, the placement of lupo_migrate's own tables and the freeze are set up by
``session.opening``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.core import chain
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    NoHandlerError,
    UnknownTargetError,
)
from lupo_migrate.core.model import AppliedStep, Finding, Plan, Run, Step, StepId
from lupo_migrate.core.placement import ORCHESTRATION_SUFFIX, place
from lupo_migrate.files.discover import load_steps
from lupo_migrate.handlers.plugins import default_registry
from lupo_migrate.handlers.registry import HandlerRegistry
from lupo_migrate.run.orchestrator import Orchestrator, RunResult
from lupo_migrate.session.config import Settings
from lupo_migrate.session.opening import (
    _default_schema,
    _engine,
    _freeze,
    _hold_freeze_lease,
    _open_ephemeral,
    _orchestration_url,
    _placement,
    _prepare_schema,
)

if TYPE_CHECKING:
    from lupo_migrate.core.ports import Ephemeral
    from lupo_migrate.core.queue import QueueEntry
    from lupo_migrate.run.queue import DrainReport

__all__ = [
    "Session",
    "default_registry",
    "open_session",
]


@attrs.define
class Session:
    """An open target: its steps, the orchestrator, and the engines to close afterwards."""

    settings: Settings
    steps: tuple[Step, ...]
    orchestrator: Orchestrator
    engines: list[Any] = attrs.field(factory=list)
    #: Where the ephemeral schema lives: (engine, schema); opened on first use.
    ephemeral_place: tuple[Any, str | None] | None = None
    _ephemeral: Ephemeral | None = attrs.field(default=None, init=False)

    @property
    def ephemeral(self) -> Ephemeral:
        """The ephemeral schema (created on first use: database or schema, then tables)."""
        if self._ephemeral is None:
            self._ephemeral = _open_ephemeral(
                self.ephemeral_place, self.engines, self.orchestrator.clock
            )
        return self._ephemeral

    @property
    def target(self) -> str:
        """The name runs are recorded under."""
        return self.orchestrator.target_name

    def close(self) -> None:
        """Dispose of every engine."""
        for engine in self.engines:
            engine.dispose()

    # ------------------------------------------------------------------ commands

    def apply(self, *, upto: StepId | None = None) -> RunResult:
        """Apply the pending steps (up to *upto*) as one run."""
        self._check_handlers()
        return self.orchestrator.apply(self.steps, upto=upto)

    def pending(self, *, upto: StepId | None = None) -> Plan:
        """The plan of the steps not applied yet."""
        return self.orchestrator.pending(self.steps, upto=upto)

    def status(self) -> Run | None:
        """The latest run of the target."""
        return self.orchestrator.status()

    def history(self) -> Sequence[Run]:
        """Every run of the target, oldest first."""
        return self.orchestrator.history()

    def applied(self) -> dict[StepId, AppliedStep]:
        """The ledger of the target."""
        return dict(self.orchestrator.storage.applied(self.target))

    def verify(self) -> tuple[Finding, ...]:
        """Findings for applied files edited since."""
        return self.orchestrator.verify(self.steps)

    def missing_files(self) -> tuple[Finding, ...]:
        """Warnings for applied steps whose file is gone from the migrations directory."""
        return self.orchestrator.missing_files(self.steps)

    def accept(self, step_id: StepId, *, operator: str) -> AppliedStep:
        """Record the current checksum of an applied, edited file as accepted by *operator*."""
        ledger = self.orchestrator.storage.applied(self.target)
        step = next((s for s in self.steps if s.id == step_id), None)
        if step is None or step_id not in ledger:
            raise InvalidArgumentError(
                f"{step_id!r} is not an applied migration file of target {self.target};"
                " `lupo-migrate status` lists the applied ones"
            )
        entry = attrs.evolve(
            ledger[step_id],
            checksum=step.checksum,
            run_id=f"accepted-by:{operator}",
            applied_at=to_stamp(self.orchestrator.clock.now()),
        )
        self.orchestrator.storage.record_applied(entry)
        return entry

    def baseline(self, upto: StepId) -> tuple[AppliedStep, ...]:
        """Mark *upto* and every step it needs as applied, without running anything."""
        if upto not in {s.id for s in self.steps}:
            raise UnknownTargetError(upto, [s.id for s in self.steps])
        plan = self.pending(upto=upto)
        now = to_stamp(self.orchestrator.clock.now())
        entries = tuple(
            AppliedStep(
                step_id=s.id,
                target=self.target,
                checksum=s.checksum,
                run_id="baseline",
                applied_at=now,
                path=s.path,
                file_type=s.file_type,
            )
            for s in plan.steps
        )
        for entry in entries:
            self.orchestrator.storage.record_applied(entry)
        return entries

    # ------------------------------------------------------------------ queue

    def enqueue(
        self, *, priority: int = 0, upto: StepId | None = None, by: str = "operator"
    ) -> QueueEntry:
        """Queue a run of the pending steps (up to *upto*); see ``Orchestrator.enqueue``."""
        self._check_handlers()
        return self.orchestrator.enqueue(self.steps, priority=priority, upto=upto, by=by)

    def queue(self, *, finished: bool = False) -> list[QueueEntry]:
        """The target's queue in drain order (and the ended entries with *finished*)."""
        return self.orchestrator.queue(finished=finished)

    def cancel_queued(self, entry_id: int, *, by: str = "operator") -> QueueEntry:
        """Cancel a queued entry; see ``Orchestrator.cancel_queued``."""
        return self.orchestrator.cancel_queued(entry_id, by=by)

    def drain(self, **options: Any) -> DrainReport:
        """Run the queued entries; see ``Orchestrator.drain`` for *options*."""
        self._check_handlers()
        return self.orchestrator.drain(self.steps, ephemeral=self.ephemeral, **options)

    def purge_ephemeral(self) -> dict[str, int]:
        """Delete the expired rows of the ephemeral tables; the number per table."""
        return dict(self.ephemeral.purge())

    def _check_handlers(self) -> None:
        registry = self.orchestrator.registry
        missing = sorted({s.file_type for s in self.steps if s.file_type not in registry})
        if missing:
            first = next(s for s in self.steps if s.file_type == missing[0])
            raise NoHandlerError(
                f"{first.path!r} (file type {missing[0]!r})", registry.file_types()
            )


def open_session(
    settings: Settings,
    *,
    registry: HandlerRegistry | None = None,
    steps: Sequence[Step] | None = None,
    files: bool = True,
) -> Session:
    """Read the migration files, then connect to the target and its orchestration storage.

    Args:
        settings: directory, database and options.
        registry: the handlers (default: built-in and plugins).
        steps: the files already read with *registry* (read here when not given).
        files: False for commands that read no migration file (listing or cancelling queue
            entries): no directory is needed, none is read, and the session has no steps.

    Raises:
        ConfigurationError: no directory or database given, or the database unreachable.
        MigrationFileError: files are unusable (nothing is written anywhere then).
    """
    if not files:
        steps = ()
    elif settings.migrations is None:
        raise ConfigurationError(
            "no migrations directory: pass DIRECTORY, or set migrations in lupo.toml"
            " or LUPO_MIGRATE_DIR"
        )
    registry = registry or default_registry()
    if steps is None and settings.migrations is not None:
        steps = load_steps(
            settings.migrations, suffixes=registry.suffix_map() or None, manifest=settings.manifest
        )
    if not settings.db:
        raise ConfigurationError(
            "no database: pass --db URL, or set db in lupo.toml or LUPO_MIGRATE_DB"
            " (e.g. sqlite:///app.db)"
        )
    from lupo_migrate.backends.sqlalchemy.lock import SqlAlchemyLock
    from lupo_migrate.backends.sqlalchemy.storage import SqlAlchemyStorage
    from lupo_migrate.backends.sqlalchemy.target import SqlAlchemyTarget, attach_backups

    engine = _engine(settings.db)
    engines = [engine]
    orchestration_url = _orchestration_url(settings, engine)
    store_engine = engine
    clock = SystemClock()
    try:
        if orchestration_url is not None:
            store_engine = _engine(orchestration_url)
            engines.append(store_engine)
        # Settings that cannot work are refused before anything is written.
        placement = _placement(settings, engine, separate=store_engine is not engine)
        schema = placement.orchestration
        freeze = _freeze(settings, store_engine, engine, clock, schema)
        core_schema = settings.schemas.get("core") or None
        _prepare_schema(store_engine, schema, logical="orchestration", core=core_schema)
        storage = SqlAlchemyStorage(store_engine, schema=schema, clock=clock)
        storage.ensure_schema()
        _hold_freeze_lease(freeze, store_engine, placement.ephemeral, clock)
    except BaseException:
        for each in engines:
            each.dispose()
        raise
    lock = SqlAlchemyLock(
        store_engine, f"lupo_migrate:{settings.target}", clock=clock, schema=schema
    )
    home = _default_schema(engine)
    store_home = _default_schema(store_engine)
    names = {
        "core": home,
        "orchestration": schema or (home if store_engine is engine else store_home),
        "ephemeral": placement.ephemeral or (home if store_engine is engine else store_home),
    }
    names.update(settings.schemas)
    target = SqlAlchemyTarget(
        engine,
        names=names,
        renames=settings.renames,
        lock_wait_timeout=settings.lock_wait_timeout,
        core_schema=settings.schemas.get("core") or None,
        orchestration_apart=store_engine is not engine or names["orchestration"] != home,
        # Backups beside the orchestration tables when they have a schema of their own;
        # SQLite: in a file of their own, attached.
        backup_schema=attach_backups(engine)
        or (names["orchestration"] if names["orchestration"] != home else None),
        backup_limit=settings.backup_limit,
    )  # its statement lock is named by the Orchestrator (see adopt_statement_lock)
    orchestrator = Orchestrator(
        storage=storage,
        lock=lock,
        freeze=freeze,
        freeze_ttl=timedelta(seconds=settings.freeze_ttl),
        clock=clock,
        registry=registry,
        target=target,
        root=Path(settings.migrations) if settings.migrations is not None else Path.cwd(),
        files_root=None if settings.files is None else Path(settings.files),
        target_name=settings.target,
        table_budget=settings.table_budget,
        lock_timeout=settings.lock_timeout,
        lock_retries=settings.lock_retries,
        lock_retry_backoff=settings.lock_retry_backoff,
        online=settings.online,
        copy_chunk_time=settings.copy_chunk_time,
        copy_max_threads=settings.copy_max_threads,
        copy_min_rows=settings.copy_min_rows,
        copy_replicas=settings.copy_replicas,
        copy_max_lag=settings.copy_max_lag,
        copy_executor=settings.copy_executor,
        copy_swap_back=settings.copy_swap_back,
        long_transaction_wait=settings.long_transaction_wait,
        statement_wait=settings.statement_wait,
        keep_rollback=timedelta(hours=settings.keep_rollback_hours),
        drift=settings.drift,
        forbid=settings.forbid,
        lint_ignore=settings.lint_ignore,
        probes=settings.probes,
        probe_threshold=settings.probe_threshold,
        integrity_limit=settings.integrity_limit,
        alert_sinks=_alert_sinks(settings),
        out_of_order=settings.out_of_order,
    )
    return Session(
        settings=settings,
        steps=tuple(steps or ()),
        orchestrator=orchestrator,
        engines=engines,
        ephemeral_place=(store_engine, placement.ephemeral),
    )


@contextmanager
def session(settings: Settings, **kwargs: Any) -> Iterator[Session]:
    """:func:`open_session` as a context manager that closes the engines."""
    opened = open_session(settings, **kwargs)
    try:
        yield opened
    finally:
        opened.close()


def _missing_sqlite_file(url: str) -> bool:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    database = parsed.database or ""
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not Path(database).exists()
    )


def _ledger_read_only(settings: Settings) -> Mapping[StepId, AppliedStep]:
    """The ledger if the orchestration tables exist; nothing is created or written."""
    if not settings.db:
        return {}
    import sqlalchemy as sa

    from lupo_migrate.backends.sqlalchemy.storage import SqlAlchemyStorage

    if _missing_sqlite_file(settings.db):
        return {}  # connecting would create the file
    engine = _engine(settings.db)
    engines = [engine]
    try:
        url = _orchestration_url(settings, engine)
        store = engine
        if url is not None:
            if _missing_sqlite_file(url):
                return {}
            store = _engine(url)
            engines.append(store)
        schema = _placement(settings, engine, separate=store is not engine).orchestration
        if not sa.inspect(store).has_table("migration_files", schema=schema):
            return {}
        return SqlAlchemyStorage(store, schema=schema).applied(settings.target)
    finally:
        for each in engines:
            each.dispose()


def dry_run(
    settings: Settings, *, upto: StepId | None = None, registry: HandlerRegistry | None = None
) -> list[tuple[Step, tuple[str, ...]]]:
    """The statements ``apply`` would run, in order, rendered; the database is not changed.

    With a database URL whose orchestration tables exist, already applied steps are left out;
    otherwise every step is shown. A file apply would refuse as out of order is refused here.
    """
    return dry_run_report(settings, upto=upto, registry=registry)[0]


def dry_run_report(
    settings: Settings, *, upto: StepId | None = None, registry: HandlerRegistry | None = None
) -> tuple[list[tuple[Step, tuple[str, ...]]], tuple[Finding, ...]]:
    """:func:`dry_run`, and the lint findings of those statements (the rules ``apply``
    checks before it starts, with the settings' ``forbid`` and ``lint_ignore``)."""
    from lupo_migrate.core.planner import plan as plan_steps
    from lupo_migrate.sql.lint import lint_sql

    if settings.migrations is None:
        raise ConfigurationError("no migrations directory: pass DIRECTORY or set migrations")
    registry = registry or default_registry()
    root = Path(settings.migrations)
    steps = load_steps(root, suffixes=registry.suffix_map() or None, manifest=settings.manifest)
    ledger = _ledger_read_only(settings)
    plan = plan_steps(steps, upto=upto, applied=chain.settled(steps, ledger))
    if not settings.out_of_order:
        chain.check_order(plan.steps, steps, ledger)  # apply would refuse: say so now
    dialect = "mysql"
    names: dict[str, str] = {"core": "", "orchestration": "", "ephemeral": ""}
    if settings.db:
        import sqlalchemy as sa

        url = sa.make_url(settings.db)
        dialect = url.get_backend_name()  # mariadb follows the mysql rules in the splitter
        home = url.database or ""
        apart = bool(settings.orchestration_db and settings.orchestration_db != settings.db)
        where = place(dialect, database=url.database, schemas=settings.schemas, separate=apart)
        names = {
            "core": home,
            "orchestration": where.orchestration or home,
            "ephemeral": where.ephemeral or home,
        }
    names.update(settings.schemas)
    out: list[tuple[Step, tuple[str, ...]]] = []
    listed: list[tuple[str, str, int | None, str]] = []
    for step in plan.steps:
        handler: Any = registry.lookup(step.file_type)
        text = (root / step.path).read_bytes().decode("utf-8")
        if hasattr(handler, "statements"):
            shown = handler.statements(
                step, text, dialect=dialect, names=names, renames=settings.renames
            )
            out.append((step, tuple(s.text for s in shown)))
            listed += [(step.id, step.path, getattr(s, "line", None), s.text) for s in shown]
        else:
            out.append((step, (f"-- ({step.file_type} step: applied by its handler)",)))
    family = {"mariadb": "mysql"}.get(dialect, dialect)
    if family not in ("mysql", "postgresql", "sqlite"):
        return out, ()
    found = lint_sql(listed, forbid=settings.forbid, ignore=settings.lint_ignore, dialect=family)
    return out, found


def online_plan(
    settings: Settings, shown: Sequence[tuple[Step, Sequence[str]]]
) -> dict[tuple[StepId, int], str]:
    """For a MySQL/MariaDB target: what each ``ALTER TABLE`` / ``CREATE INDEX`` of *shown*
    (from :func:`dry_run_report`) will run with, tried on an empty copy of its table
    (:mod:`lupo_migrate.backends.sqlalchemy.online_probe`), keyed by (step id, position);
    the step's own ``-- online:`` header counts. Empty for other databases."""
    if not settings.db:
        return {}
    import sqlalchemy as sa

    if sa.make_url(settings.db).get_backend_name() not in ("mysql", "mariadb"):
        return {}
    from lupo_migrate.backends.sqlalchemy.online_probe import probe_strategies

    engine = _engine(settings.db)
    try:
        scratch = _placement(settings, engine, separate=False).orchestration
        scratch = scratch or f"{engine.url.database}{ORCHESTRATION_SUFFIX}"
        keys: list[tuple[StepId, int]] = []
        listed: list[tuple[str, str]] = []
        for step, statements in shown:
            mode = str(step.meta.get("online") or settings.online).strip().lower()
            keys += [(step.id, i) for i in range(len(statements))]
            listed += [(statement, mode) for statement in statements]
        said = probe_strategies(engine, listed, scratch=scratch, least_rows=settings.copy_min_rows)
        return {key: text for key, text in zip(keys, said, strict=True) if text is not None}
    finally:
        engine.dispose()


def _alert_sinks(settings: Settings) -> tuple[Any, ...]:
    """The alert sinks the settings ask for (``webhook``: a :class:`WebhookSink`)."""
    if not settings.webhook:
        return ()
    from lupo_migrate.observe.alerts import WebhookSink

    headers = {}
    if settings.webhook_authorization:
        headers["Authorization"] = settings.webhook_authorization
    return (
        WebhookSink(
            settings.webhook,
            timeout=settings.webhook_timeout,
            levels=settings.webhook_levels,
            headers=headers,
        ),
    )
