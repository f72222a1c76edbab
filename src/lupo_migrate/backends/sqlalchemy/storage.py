"""``SqlAlchemyStorage``: the Storage protocol on the orchestration tables of any SQL database.

Each method runs in one transaction of its own (``engine.begin()``). ``save_run`` is a
compare-and-set (``UPDATE ... WHERE run_id = :id AND version = :expected``) with a row-count
check. Driver errors become :class:`~lupo_migrate.core.errors.StorageError` with a one-line message
(the driver's own words, the URL without password, what to do) and the original chained.

Besides the protocol, the storage writes the tables the orchestrator needs: the plan
(``record_plan``), operator-accepted checksums, alerts, rollback decisions, the target's
phase in ``migration_system_state``, and the run queue (the
:class:`~lupo_migrate.core.ports.RunQueue` protocol: queue entries are rows of
``migration_batches`` told apart by their phase, see ``_codec``; run queries never see them).

This module holds the class, its constructor and the ``migration_batches`` rows (runs and queue
entries); the rest of the class is mixed in from parts of its own:

- ``_storage_base``: the connection plumbing every part uses (``bound``, ``_tx``, ``_rows``,
  ``_change``, ``_of_run``, ``_fast``, ``_now``) and the typed attributes it relies on.
- ``_storage_ledger``: the ledger, findings and journal, the rows written per step.
- ``_storage_orchestrator``: the plan, alerts, rollback decisions and system state.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.backends.sqlalchemy import _codec as codec
from lupo_migrate.backends.sqlalchemy._creating import ensure_schema
from lupo_migrate.backends.sqlalchemy._ids import IdBlocks
from lupo_migrate.backends.sqlalchemy._pipeline import CAS_GUARD, pipeline_of
from lupo_migrate.backends.sqlalchemy._run_writes import HotPath
from lupo_migrate.backends.sqlalchemy._storage_base import StorageBase
from lupo_migrate.backends.sqlalchemy._storage_ledger import LedgerMixin
from lupo_migrate.backends.sqlalchemy._storage_orchestrator import OrchestratorMixin
from lupo_migrate.backends.sqlalchemy._tables import OrchestrationTables, describe, make_tables
from lupo_migrate.core.errors import ConcurrentUpdateError, InvalidArgumentError, StorageError
from lupo_migrate.core.model import Run, RunId, StepId
from lupo_migrate.core.ports import Clock
from lupo_migrate.core.queue import ACTIVE, QueueEntry

__all__ = ["SqlAlchemyStorage"]


class SqlAlchemyStorage(LedgerMixin, OrchestratorMixin, StorageBase):
    """Runs, ledger, findings, journal (and the other orchestration tables) in a database.

    The constructor does no I/O. Call :meth:`ensure_schema` once before use (it creates the
    tables if needed; idempotent, one query when they exist).

    Args:
        engine: the orchestration database.
        schema: its physical schema (PostgreSQL schema, MySQL database); None for the default.
        clock: stamps ``created_at``/``updated_at``/``recorded_at`` (real UTC time by default).
        metadata: ``MetaData`` to define the tables on (a private one by default).

    Attributes:
        engine: the engine given.
        tables: the orchestration tables.
        clock: the clock.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        metadata: sa.MetaData | None = None,
    ) -> None:
        if not isinstance(engine, sa.Engine):
            raise InvalidArgumentError(
                f"SqlAlchemyStorage needs an sqlalchemy Engine, got {engine!r}."
            )
        self.engine = engine
        # The step connection the storage writes through, per thread: the run's own thread
        # binds it; another thread (the keep-alive's escalation alert) keeps its own
        # transactions (a connection is not to be shared between threads).
        self._local = threading.local()
        self._steps_seen: dict[RunId, tuple[StepId, ...]] = {}
        self.tables: OrchestrationTables = make_tables(metadata, schema=schema)
        self._hot = HotPath(engine, self.tables)
        self._journal_ids = IdBlocks(engine, self.tables.progress)
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        error = getattr(dbapi, "Error", None)
        self._errors: tuple[type[Exception], ...] = (sa.exc.DBAPIError,)
        if isinstance(error, type) and issubclass(error, Exception):
            self._errors += (error,)
        self.clock: Clock = SystemClock() if clock is None else clock

    def __repr__(self) -> str:
        return f"SqlAlchemyStorage({describe(self.engine)!r})"

    def ensure_schema(self) -> int:
        """Create the missing orchestration tables and record the schema version.

        Idempotent; when the schema exists it costs one query.

        Returns:
            The schema version of the database.

        Raises:
            StorageError: unreachable database, DDL refused, or a schema newer than this code.
        """
        return ensure_schema(self.engine, self.tables, at=self._now())

    #: The same as :meth:`ensure_schema` (named after ``create_all``).
    create_schema = ensure_schema

    # ----------------------------------------------------------------------- runs

    def _state(self, what: str, query: sa.Select[Any]) -> Run | None:
        with self._tx(what) as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else self._seen(codec.run_from_json(row.state, row.steps))

    def _seen(self, run: Run) -> Run:
        self._steps_seen[run.id] = run.steps
        return run

    def create_run(self, run: Run) -> None:
        """Store a new run; ``StorageError`` if its id exists."""
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"create_run() needs a Run, got {run!r}.")
        now = self._now()
        values = {**codec.run_columns(run), "created_at": now, "updated_at": now}
        with self._tx(f"create_run({run.id!r})") as conn:
            try:
                conn.execute(self.tables.batches.insert().values(values))
            except sa.exc.IntegrityError as exc:
                raise StorageError(
                    f"migration_batches: run {run.id} already exists. Use a new run id, or"
                    " save_run() to update it."
                ) from exc
        self._steps_seen[run.id] = run.steps

    def _runs(self) -> sa.Select[Any]:
        """Rows of runs (not queue entries)."""
        t = self.tables.batches
        return sa.select(t.c.state, t.c.steps).where(t.c.phase != codec.QUEUE_PHASE)

    def get_run(self, run_id: RunId) -> Run | None:
        """The run with this id, or None."""
        query = self._runs().where(self.tables.batches.c.run_id == run_id)
        return self._state(f"get_run({run_id!r})", query)

    def save_run(self, run: Run, *, expected_version: int) -> None:
        """Replace the stored run if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the run is missing).
        """
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"save_run() needs a Run, got {run!r}.")
        t = self.tables.batches
        # Steps unchanged since we last wrote or read them (a run's plan does not change
        # while it runs) are not encoded or sent again. A stale view cannot slip through:
        # the compare-and-set on the version fails first.
        steps = self._steps_seen.get(run.id) != run.steps
        values = {**codec.run_columns(run, steps=steps), "updated_at": self._now()}
        del values["run_id"]
        with self._tx(f"save_run({run.id!r})", hot=True) as conn:
            if self._fast(conn):
                names = sorted(values)

                def build() -> Any:
                    return (
                        t.update()
                        .where(
                            t.c.run_id == sa.bindparam("w_run"),
                            t.c.version == sa.bindparam("w_v"),
                        )
                        .values({n: sa.bindparam(f"v_{n}") for n in names})
                    )

                name = "save:" + ",".join(names)
                params = {f"v_{n}": values[n] for n in names}
                params.update(w_run=run.id, w_v=expected_version)
                pipeline = pipeline_of(conn)
                if pipeline is not None and getattr(conn.dialect, "is_mariadb", False):
                    # Held back with a guard: the server checks its row count before the
                    # next statement runs (see _pipeline.CAS_GUARD).
                    pipeline.defer(self._hot.sql(name, build), params, tag="state")
                    pipeline.defer(CAS_GUARD, tag="state")
                    matched = 1
                elif pipeline is not None:
                    # Sent now, with the writes held back before it: its row count is
                    # checked before anything else runs.
                    text = pipeline.render(self._hot.sql(name, build), params)
                    matched = pipeline.send(text)
                else:
                    matched = self._hot.execute(conn, name, build, params)
            else:
                cas = t.update().where(t.c.run_id == run.id, t.c.version == expected_version)
                matched = int(conn.execute(cas.values(values)).rowcount)
            if matched == 1:
                self._steps_seen[run.id] = run.steps
            else:
                found = conn.execute(sa.select(t.c.version).where(t.c.run_id == run.id)).scalar()
                raise ConcurrentUpdateError(
                    "migration_batches",
                    run.id,
                    expected_version,
                    None if found is None else int(found),
                )

    def list_runs(self, target: str | None = None) -> Sequence[Run]:
        """Runs (of *target*, or all), oldest first."""
        t = self.tables.batches
        query = self._runs().order_by(t.c.id)
        if target is not None:
            query = query.where(t.c.target == target)
        rows = self._rows("list_runs()", query)
        return [self._seen(codec.run_from_json(row.state, row.steps)) for row in rows]

    def run_times(self, target: str) -> dict[RunId, tuple[int, int | None]]:
        """When each run of *target* was created and last saved (``YYYYMMDDHHMMSS``)."""
        t = self.tables.batches
        query = (
            sa.select(t.c.run_id, t.c.created_at, t.c.updated_at)
            .where(t.c.phase != codec.QUEUE_PHASE, t.c.target == target)
            .order_by(t.c.id)
        )
        return {
            row.run_id: (
                int(row.created_at),
                None if row.updated_at is None else int(row.updated_at),
            )
            for row in self._rows(f"run_times({target!r})", query)
        }

    def latest_run(self, target: str) -> Run | None:
        """The most recently created run of *target*, or None."""
        t = self.tables.batches
        query = self._runs().where(t.c.target == target).order_by(t.c.id.desc())
        return self._state(f"latest_run({target!r})", query)

    # ----------------------------------------------------------------------- queue

    def enqueue(self, entry: QueueEntry) -> QueueEntry:
        """Store a new queue entry; returns it with its id (the row's)."""
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"enqueue() needs a QueueEntry, got {entry!r}.")
        values = {
            **codec.queue_columns(entry),
            "run_id": f"queue:{uuid.uuid4().hex}",
            "updated_at": self._now(),
        }
        with self._tx(f"enqueue({entry.target!r})") as conn:
            entry_id = codec.new_id(conn.execute(self.tables.batches.insert().values(values)))
        return attrs.evolve(entry, id=entry_id)

    def _entries(self) -> sa.Select[Any]:
        t = self.tables.batches
        return sa.select(t).where(t.c.phase == codec.QUEUE_PHASE).order_by(t.c.id)

    def queue_entry(self, entry_id: int) -> QueueEntry | None:
        """The queue entry with this id, or None."""
        rows = self._rows(
            f"queue_entry({entry_id})", self._entries().where(self.tables.batches.c.id == entry_id)
        )
        return codec.queue_from_row(rows[0]) if rows else None

    def queue_entries(
        self, target: str | None = None, *, active: bool = False
    ) -> Sequence[QueueEntry]:
        """Queue entries (of *target*, or all; only queued and running ones if *active*), by
        id."""
        t = self.tables.batches
        query = self._entries()
        if target is not None:
            query = query.where(t.c.target == target)
        if active:
            query = query.where(t.c.outcome.in_(sorted(s.value for s in ACTIVE)))
        return [codec.queue_from_row(r) for r in self._rows("queue_entries()", query)]

    def save_entry(self, entry: QueueEntry, *, expected_version: int) -> None:
        """Replace the stored entry if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the entry is missing).
        """
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"save_entry() needs a QueueEntry, got {entry!r}.")
        t = self.tables.batches
        values = {**codec.queue_columns(entry), "updated_at": self._now()}
        del values["created_at"]  # when it was queued never changes
        where = (
            (t.c.id == entry.id)
            & (t.c.phase == codec.QUEUE_PHASE)
            & (t.c.version == expected_version)
        )
        with self._tx(f"save_entry({entry.id})") as conn:
            if conn.execute(t.update().where(where).values(values)).rowcount == 1:
                return
            found = conn.execute(
                sa.select(t.c.version).where(t.c.id == entry.id, t.c.phase == codec.QUEUE_PHASE)
            ).scalar()
        raise ConcurrentUpdateError(
            "migration_batches",
            f"queue:{entry.id}",
            expected_version,
            None if found is None else int(found),
        )
