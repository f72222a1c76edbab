"""``SqlAlchemyStorage``: the Storage protocol on the orchestration tables of any SQL database.

Each method runs in one transaction of its own (``engine.begin()``). ``save_run`` is a
compare-and-set (``UPDATE ... WHERE run_id = :id AND version = :expected``) with a row-count
check. Driver errors become :class:`~lupo_migrate.errors.StorageError` with a one-line message
(the driver's own words, the URL without password, what to do) and the original chained.

Besides the protocol, the storage writes the tables the orchestrator needs: the plan
(``record_plan``), operator-accepted checksums, alerts, rollback decisions, the target's
phase in ``migration_system_state``, and the run queue (the
:class:`~lupo_migrate.typing.RunQueue` protocol: queue entries are rows of
``migration_batches`` told apart by their phase, see ``_codec``; run queries never see them).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import sqlalchemy as sa

from lupo_migrate._clock import to_stamp
from lupo_migrate._model import (
    AppliedStep,
    Finding,
    JournalEntry,
    Phase,
    Run,
    RunId,
    Step,
    StepId,
)
from lupo_migrate._queue import ACTIVE, QueueEntry
from lupo_migrate.backends.memory import SystemClock
from lupo_migrate.errors import ConcurrentUpdateError, InvalidArgumentError, StorageError
from lupo_migrate.ext.sqlalchemy import _codec as codec
from lupo_migrate.ext.sqlalchemy._creating import ensure_schema
from lupo_migrate.ext.sqlalchemy._hot import HotPath
from lupo_migrate.ext.sqlalchemy._pipeline import CAS_GUARD, pipeline_of
from lupo_migrate.ext.sqlalchemy._tables import (
    OrchestrationTables,
    describe,
    ensure_state_row,
    make_tables,
    reason,
)
from lupo_migrate.typing import Clock

__all__ = ["SqlAlchemyStorage"]


class SqlAlchemyStorage:
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
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        error = getattr(dbapi, "Error", None)
        self._errors: tuple[type[Exception], ...] = (sa.exc.DBAPIError,)
        if isinstance(error, type) and issubclass(error, Exception):
            self._errors += (error,)
        self.clock: Clock = SystemClock() if clock is None else clock

    def __repr__(self) -> str:
        return f"SqlAlchemyStorage({describe(self.engine)!r})"

    # ----------------------------------------------------------------------- plumbing

    def _now(self) -> int:
        return to_stamp(self.clock.now())

    @property
    def _bound(self) -> sa.Connection | None:
        bound: sa.Connection | None = getattr(self._local, "connection", None)
        return bound

    @_bound.setter
    def _bound(self, connection: sa.Connection | None) -> None:
        self._local.connection = connection

    @contextmanager
    def bound(self, connection: Any) -> Iterator[bool]:
        """While the block runs, write through *connection*, inside its transaction.

        The orchestrator binds the storage to a step's connection so that the step's journal
        rows, ledger row and next run state commit together with the step (one commit instead
        of one per write; on MySQL, DDL's implicit commit also commits the intent before the
        statement). Only a connection of this storage's own engine can be bound: yields
        whether it was; otherwise every method keeps its own transaction.
        """
        ok = isinstance(connection, sa.Connection) and connection.engine is self.engine
        if not ok or self._bound is not None:
            yield False
            return
        self._bound = connection
        try:
            yield True
        finally:
            self._bound = None

    def _fast(self, conn: sa.Connection) -> bool:
        """Whether to use the precompiled hot statements (bound to a step's connection)."""
        return conn is self._bound and self._hot.usable

    @contextmanager
    def _tx(self, what: str, *, hot: bool = False) -> Iterator[sa.Connection]:
        """A connection for one operation: the bound one, else a transaction of its own.

        On a bound connection with a pipeline, anything but the hot writes (which deal with
        the pipeline themselves) first sends the writes held back, to keep their order.
        """
        bound = self._bound
        try:
            if bound is not None:
                pipeline = None if hot else pipeline_of(bound)
                if pipeline is not None:
                    pipeline.send()
                yield bound
                return
            with self.engine.begin() as conn:
                yield conn
        except self._errors as exc:  # SQLAlchemy's, and the driver's own from the hot path
            raise StorageError(
                f"{what} failed on {describe(self.engine)}: {reason(exc)}. Check the database is"
                " reachable and holds the orchestration tables (SqlAlchemyStorage.ensure_schema())."
            ) from exc

    def _rows(self, what: str, query: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
        with self._tx(what) as conn:
            return conn.execute(query).all()

    def _change(self, what: str, statement: sa.Executable) -> int:
        """Run one INSERT/UPDATE/DELETE in its own transaction; the number of rows matched."""
        with self._tx(what) as conn:
            return int(conn.execute(statement).rowcount)

    def _of_run(self, table: sa.Table, run_id: RunId | None) -> sa.Select[Any]:
        query = sa.select(table).order_by(table.c.id)
        return query if run_id is None else query.where(table.c.run_id == run_id)

    def _state(self, what: str, query: sa.Select[Any]) -> Run | None:
        with self._tx(what) as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else self._seen(codec.run_from_json(row.state, row.steps))

    def _seen(self, run: Run) -> Run:
        self._steps_seen[run.id] = run.steps
        return run

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

    # ----------------------------------------------------------------------- ledger

    def record_applied(self, entry: AppliedStep) -> None:
        """Add (or replace, in place) the ledger row of ``entry.step_id`` on ``entry.target``.

        Replacing clears an operator's acceptance (the new checksum is the applied one).
        """
        if not isinstance(entry, AppliedStep):
            raise InvalidArgumentError(f"record_applied() needs an AppliedStep, got {entry!r}.")
        t = self.tables.files
        values = codec.applied_to_row(entry)
        row = {**values, "accepted_by": None, "accepted_at": None}
        with self._tx(f"record_applied({entry.target!r}, {entry.step_id!r})", hot=True) as conn:
            dialect = conn.dialect.name
            if dialect in ("mysql", "postgresql", "sqlite"):
                # One statement (an upsert), not an UPDATE then an INSERT: a run writes one
                # ledger row per step, so this is on the hot path.
                keys = ("target", "step_id")
                if self._fast(conn):
                    names = sorted(row)
                    params = {f"v_{n}": row[n] for n in names}
                    name = "applied:" + ",".join(names)

                    def build() -> Any:
                        binds: dict[str, Any] = {n: sa.bindparam(f"v_{n}") for n in names}
                        return _upsert(dialect, t, binds, keys)

                    pipeline = pipeline_of(conn)
                    if pipeline is not None:
                        pipeline.defer(self._hot.sql(name, build), params)
                    else:
                        self._hot.execute(conn, name, build, params)
                    return
                conn.execute(_upsert(dialect, t, row, keys))
                return
            where = (t.c.target == entry.target) & (t.c.step_id == entry.step_id)
            if conn.execute(t.update().where(where).values(row)).rowcount == 0:
                conn.execute(t.insert().values(row))

    def remove_applied(self, target: str, step_id: StepId) -> None:
        """Drop a ledger row (the step was rolled back); no error if absent."""
        t = self.tables.files
        drop = t.delete().where(t.c.target == target, t.c.step_id == step_id)
        self._change(f"remove_applied({target!r}, {step_id!r})", drop)

    def applied(self, target: str) -> Mapping[StepId, AppliedStep]:
        """The ledger of *target*, by step id, in the order rows were recorded."""
        t = self.tables.files
        rows = self._rows(
            f"applied({target!r})", sa.select(t).where(t.c.target == target).order_by(t.c.id)
        )
        return {row.step_id: codec.applied_from_row(row) for row in rows}

    def accept_checksum(
        self, target: str, step_id: StepId, checksum: str, operator: str, at: int
    ) -> None:
        """Record that *operator* accepts *checksum* as the applied checksum of a ledger row.

        Raises:
            StorageError: *step_id* is not in the ledger of *target*.
        """
        t = self.tables.files
        values = {"checksum": checksum, "accepted_by": operator, "accepted_at": at}
        accept = t.update().where(t.c.target == target, t.c.step_id == step_id).values(values)
        if not self._change(f"accept_checksum({target!r}, {step_id!r})", accept):
            raise StorageError(
                f"migration_files: step {step_id} is not applied on {target}; only an"
                " applied step's checksum can be accepted."
            )

    def accepted(self, target: str) -> Mapping[StepId, tuple[str, int]]:
        """Operator-accepted checksums of *target*: step id -> (operator, when)."""
        t = self.tables.files
        query = (
            sa.select(t.c.step_id, t.c.accepted_by, t.c.accepted_at)
            .where(t.c.target == target, t.c.accepted_by.is_not(None))
            .order_by(t.c.id)
        )
        rows = self._rows(f"accepted({target!r})", query)
        return {row.step_id: (row.accepted_by, int(row.accepted_at)) for row in rows}

    # ----------------------------------------------------------------------- findings, journal

    def record_findings(self, run_id: RunId, findings: Sequence[Finding]) -> None:
        """Append findings to a run's validation log."""
        findings = list(findings)
        if not all(isinstance(finding, Finding) for finding in findings):
            raise InvalidArgumentError(f"record_findings() needs Finding values, got {findings!r}.")
        if not findings:
            return
        now = self._now()
        rows = [codec.finding_to_row(run_id, f, now) for f in findings]
        with self._tx(f"record_findings({run_id!r})") as conn:
            for row in rows:  # one by one: ids keep the order on every dialect
                conn.execute(self.tables.validation_log.insert().values(row))

    def findings(self, run_id: RunId) -> Sequence[Finding]:
        """A run's findings, in the order recorded."""
        rows = self._rows(f"findings({run_id!r})", self._of_run(self.tables.validation_log, run_id))
        return [codec.finding_from_row(row) for row in rows]

    def journal_intent(
        self,
        run_id: RunId,
        step_id: StepId,
        index: int,
        statement: str,
        at: int,
        *,
        done_at: int | None = None,
    ) -> JournalEntry:
        """Write the intent to run a statement (finished at *done_at*, if given)."""
        entry = JournalEntry(
            id=0,
            run_id=run_id,
            step_id=step_id,
            index=index,
            statement=statement,
            started_at=at,
            done_at=done_at,
        )
        row = codec.journal_to_row(entry)
        with self._tx(f"journal_intent({run_id!r}, {step_id!r}, {index})", hot=True) as conn:
            if self._fast(conn):
                pipeline = pipeline_of(conn)
                if pipeline is not None:
                    # Held back: it travels with the statement it announces. The id is a
                    # handle until then, which journal_done() accepts; a row written finished
                    # is never marked done, so it gets no handle (id 0).
                    params = {f"v_{n}": v for n, v in row.items()}
                    handle = pipeline.defer(
                        self._hot.intent_sql(list(row)), params, want_id=done_at is None
                    )
                    return attrs.evolve(entry, id=int(handle or 0))
                return attrs.evolve(entry, id=self._hot.journal_intent(conn, row))
            insert = self.tables.progress.insert().values(row)
            return attrs.evolve(entry, id=codec.new_id(conn.execute(insert)))

    def journal_done(self, entry_id: int, at: int) -> None:
        """Mark a journal entry finished; ``StorageError`` if there is no such entry."""
        t = self.tables.progress
        with self._tx(f"journal_done({entry_id})", hot=True) as conn:
            pipeline = pipeline_of(conn) if self._fast(conn) else None
            if pipeline is not None:
                if entry_id < 0:
                    entry_id = pipeline.resolve(entry_id)
                pipeline.defer(self._hot.done_sql(), {"entry_id": entry_id, "at": at})
                return  # the id came from journal_intent on this connection: it exists
            if self._fast(conn):
                matched = self._hot.journal_done(conn, entry_id, at)
            else:
                change = t.update().where(t.c.id == entry_id).values(done_at=at)
                matched = int(conn.execute(change).rowcount)
        if not matched:
            raise StorageError(
                f"migration_progress: no journal entry {entry_id}; only ids returned by"
                " journal_intent() can be marked done."
            )

    def journal(self, run_id: RunId) -> Sequence[JournalEntry]:
        """A run's journal entries in order."""
        rows = self._rows(f"journal({run_id!r})", self._of_run(self.tables.progress, run_id))
        return [codec.journal_from_row(row) for row in rows]

    # ----------------------------------------------------------------------- plan, alerts

    def record_plan(self, run_id: RunId, steps: Sequence[Step]) -> None:
        """Write a run's plan to ``migration_dependencies`` (replacing any earlier one).

        One row per dependency edge, and one with ``depends_on`` NULL for a step without
        dependencies, so the rows hold every step in plan order (``position``).
        """
        t = self.tables.dependencies
        rows = [
            {"run_id": run_id, "position": pos, "step_id": step.id, "depends_on": dep}
            for pos, step in enumerate(steps)
            for dep in (step.depends_on or (None,))
        ]
        with self._tx(f"record_plan({run_id!r})") as conn:
            conn.execute(t.delete().where(t.c.run_id == run_id))
            for row in rows:
                conn.execute(t.insert().values(row))

    def planned(self, run_id: RunId) -> Mapping[StepId, tuple[StepId, ...]]:
        """The plan :meth:`record_plan` wrote: step id -> its dependencies, in plan order."""
        t = self.tables.dependencies
        query = sa.select(t).where(t.c.run_id == run_id).order_by(t.c.position, t.c.id)
        rows = self._rows(f"planned({run_id!r})", query)
        plan: dict[StepId, tuple[StepId, ...]] = {}
        for row in rows:
            edge = () if row.depends_on is None else (row.depends_on,)
            plan[row.step_id] = plan.get(row.step_id, ()) + edge
        return plan

    def record_alert(self, run_id: RunId | None, level: str, message: str, at: int) -> codec.Alert:
        """Add an alert (``level``: info, warning, critical...); returns it with its id."""
        values = {"run_id": run_id, "level": level, "message": message, "created_at": at}
        with self._tx("record_alert()") as conn:
            alert_id = codec.new_id(conn.execute(self.tables.alerts.insert().values(values)))
        return codec.Alert(id=alert_id, run_id=run_id, level=level, message=message, created_at=at)

    def alerts(self, run_id: RunId | None = None, *, unresolved: bool = False) -> list[codec.Alert]:
        """Alerts (of *run_id*, or all; only unresolved ones if asked), oldest first."""
        t = self.tables.alerts
        query = self._of_run(t, run_id)
        if unresolved:
            query = query.where(t.c.resolved_at.is_(None))
        return [codec.alert_from_row(row) for row in self._rows("alerts()", query)]

    def close_alert(self, alert_id: int, at: int, *, resolved: bool = True) -> None:
        """Mark an alert resolved (or only acknowledged, with ``resolved=False``)."""
        t = self.tables.alerts
        column = "resolved_at" if resolved else "acknowledged_at"
        self._change(
            f"close_alert({alert_id})", t.update().where(t.c.id == alert_id).values({column: at})
        )

    # ----------------------------------------------------------------------- rollback log

    def record_decision(self, decision: codec.RollbackDecision) -> codec.RollbackDecision:
        """Add *decision* to ``migration_rollback_log``; returns it with the id given to it."""
        insert = self.tables.rollback_log.insert().values(codec.decision_to_row(decision))
        with self._tx(f"record_decision({decision.run_id!r})") as conn:
            return attrs.evolve(decision, id=codec.new_id(conn.execute(insert)))

    def decide(
        self, decision_id: int, *, status: str, operator: str, at: int, detail: str | None = None
    ) -> None:
        """Record an operator's decision on a rollback-log row (``StorageError`` if absent)."""
        t = self.tables.rollback_log
        values: dict[str, Any] = {"status": status, "decided_by": operator, "decided_at": at}
        if detail is not None:
            values["detail"] = detail
        if not self._change(
            f"decide({decision_id})", t.update().where(t.c.id == decision_id).values(values)
        ):
            raise StorageError(f"migration_rollback_log: no decision {decision_id}.")

    def decisions(self, run_id: RunId | None = None) -> list[codec.RollbackDecision]:
        """Rollback-log rows (of *run_id*, or all), oldest first."""
        query = self._of_run(self.tables.rollback_log, run_id)
        return [codec.decision_from_row(row) for row in self._rows("decisions()", query)]

    # ----------------------------------------------------------------------- system state

    def system_state(self, target: str) -> codec.SystemState | None:
        """The ``migration_system_state`` row of *target* (phase, lock, freeze), or None."""
        t = self.tables.system_state
        rows = self._rows(f"system_state({target!r})", sa.select(t).where(t.c.target == target))
        return codec.state_from_row(rows[0]) if rows else None

    def set_phase(self, target: str, phase: Phase | None, run_id: RunId | None, at: int) -> None:
        """Record *target*'s phase and current run (None, None when no run works on it)."""
        t = self.tables.system_state
        values = {"phase": None if phase is None else Phase(phase).value, "run_id": run_id}
        with self._tx(f"set_phase({target!r})") as conn:
            ensure_state_row(conn, self.tables, target)
            conn.execute(
                t.update().where(t.c.target == target).values({**values, "updated_at": at})
            )

    def record_fingerprint(self, target: str, text: str, at: int) -> None:
        """Keep *target*'s schema fingerprint (JSON) as a run left it: the drift reference."""
        t = self.tables.system_state
        with self._tx(f"record_fingerprint({target!r})") as conn:
            ensure_state_row(conn, self.tables, target)
            conn.execute(
                t.update().where(t.c.target == target).values(fingerprint=text, updated_at=at)
            )

    def fingerprint(self, target: str) -> str | None:
        """The fingerprint :meth:`record_fingerprint` kept for *target*, or None."""
        t = self.tables.system_state
        rows = self._rows(
            f"fingerprint({target!r})", sa.select(t.c.fingerprint).where(t.c.target == target)
        )
        return None if not rows or rows[0][0] is None else str(rows[0][0])


def _upsert(
    dialect: str, table: sa.Table, row: Mapping[str, Any], keys: Sequence[str]
) -> sa.Executable:
    """INSERT *row*, or update every other column where the *keys* already exist."""
    changes = {k: v for k, v in row.items() if k not in keys}
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql as sa_mysql

        mysql_insert = sa_mysql.insert(table).values(dict(row))
        return mysql_insert.on_duplicate_key_update(changes)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as sa_postgresql

        pg_insert = sa_postgresql.insert(table).values(dict(row))
        return pg_insert.on_conflict_do_update(index_elements=list(keys), set_=changes)
    from sqlalchemy.dialects import sqlite as sa_sqlite

    lite_insert = sa_sqlite.insert(table).values(dict(row))
    return lite_insert.on_conflict_do_update(index_elements=list(keys), set_=changes)
