"""What a run records about its steps: the ledger, the validation findings and the journal.

Part of :class:`~lupo_migrate.backends.sqlalchemy.storage.SqlAlchemyStorage` (mixed into it): the
ledger of applied steps (``migration_files``, with operator-accepted checksums), the findings
(``migration_validation_log``) and the statement journal (``migration_progress``). Apart from
the run rows because these are the rows written per step and per statement: the ledger row and
the journal marks are most of the hot path (precompiled statements, the pipeline on a bound
connection); the run's own compare-and-set, ``save_run``, stays with the run rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _codec as codec
from lupo_migrate.backends.sqlalchemy._pipeline import Pipeline, pipeline_of
from lupo_migrate.backends.sqlalchemy._storage_base import StorageBase
from lupo_migrate.core.errors import InvalidArgumentError, StorageError
from lupo_migrate.core.model import AppliedStep, Finding, JournalEntry, RunId, StepId

__all__ = ["LedgerMixin"]

#: Journal rows sent in one INSERT by ``journal_finished`` (its memory, not its commits).
_ROWS_AT_ONCE: Final = 2000
#: Rows from which ``journal_finished`` sends what it held at once on MySQL (fewer travel
#: with the step's next statement), and the size of one held multi-row INSERT.
_HELD_ROWS: Final = 200
_PACKET: Final = 1 << 20


class LedgerMixin(StorageBase):
    """The ledger, findings and journal methods of ``SqlAlchemyStorage``."""

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
        entry = _entry(run_id, step_id, index, statement, at, done_at)
        row = codec.journal_to_row(entry)
        what = f"journal_intent({run_id!r}, {step_id!r}, {index})"
        try:
            named = self._journal_ids.take()  # see _ids: never a generated key
        except StorageError as exc:
            raise StorageError(f"{what}: {exc}") from exc
        if named is not None:
            row = {"id": named, **row}
        with self._tx(what, hot=True) as conn:
            if self._fast(conn):
                pipeline = pipeline_of(conn)
                if pipeline is not None and named is not None:
                    # Held back: an intent travels with the statement it announces (urgent),
                    # a row written finished with the step's next intent or its end.
                    params = {f"v_{n}": v for n, v in row.items()}
                    pipeline.defer(self._hot.intent_sql(list(row)), params, urgent=done_at is None)
                    return attrs.evolve(entry, id=named)
                return attrs.evolve(entry, id=self._hot.journal_intent(conn, row))
            insert = self.tables.progress.insert().values(row)
            result = conn.execute(insert)
            return attrs.evolve(entry, id=named if named is not None else codec.new_id(result))

    def journal_finished(
        self, run_id: RunId, step_id: StepId, rows: Sequence[tuple[int, str, int, int]]
    ) -> None:
        """Write the journal rows of statements that finished, (index, statement, started
        at, done at) each, in one write: statements that commit nothing by themselves, run in
        a transaction of the target that is their record (if the process dies, none of them
        stays, so nothing is announced first). Bound to the step's connection, the rows join
        that transaction; apart from it (SQLite's ``app.lupo.db``) they are written in one
        of their own. A file of 100,000 statements costs a few writes here, not 100,000."""
        if not rows:
            return
        what = f"journal_finished({run_id!r}, {step_id!r}, {len(rows)} statement(s))"
        try:
            ids = self._journal_ids.take_many(len(rows))  # one block: see _ids
        except StorageError as exc:
            raise StorageError(f"{what}: {exc}") from exc
        with self._tx(what, hot=True) as conn:
            pipeline = pipeline_of(conn) if self._fast(conn) else None
            for start in range(0, len(rows), _ROWS_AT_ONCE):  # a long step's: not all at once
                values = []
                for at in range(start, min(start + _ROWS_AT_ONCE, len(rows))):
                    index, statement, started, done = rows[at]
                    entry = _entry(run_id, step_id, index, statement, started, done)
                    row = codec.journal_to_row(entry)
                    values.append(row if ids is None else {"id": ids[at], **row})
                if pipeline is not None and ids is not None:
                    self._hold_rows(pipeline, values)
                else:
                    if pipeline is not None:
                        pipeline.send()  # what is held goes first: the rows keep their order
                    conn.execute(self.tables.progress.insert(), values)
            if pipeline is not None and len(rows) >= _HELD_ROWS:
                pipeline.send()  # a long step's rows do not wait in memory for its end

    def _hold_rows(self, pipeline: Pipeline, values: Sequence[Mapping[str, Any]]) -> None:
        """Hold journal rows back in the step connection's pipeline (see ``_pipeline``), as
        multi-row INSERTs of at most about 1 MB: a few rows travel with the next statement
        (no round trip of their own), as the rows written one by one did."""
        sql = self._hot.intent_sql(list(values[0]))
        head, _, template = sql.partition(" VALUES ")
        parts: list[str] = []
        size = 0
        for row in values:
            part = pipeline.render(template, {f"v_{n}": v for n, v in row.items()})
            parts.append(part)
            size += len(part)
            if size >= _PACKET:
                pipeline.defer(f"{head} VALUES {', '.join(parts)}")
                parts, size = [], 0
        if parts:
            pipeline.defer(f"{head} VALUES {', '.join(parts)}")

    def journal_done(self, entry_id: int, at: int) -> None:
        """Mark a journal entry finished; ``StorageError`` if there is no such entry."""
        t = self.tables.progress
        with self._tx(f"journal_done({entry_id})", hot=True) as conn:
            pipeline = pipeline_of(conn) if self._fast(conn) else None
            if pipeline is not None:
                # Held back until the step's next intent or its end (an UPDATE changes
                # ROW_COUNT()). The id came from journal_intent on this connection: it exists.
                pipeline.defer(self._hot.done_sql(), {"entry_id": entry_id, "at": at})
                return
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


def _entry(
    run_id: RunId, step_id: StepId, index: int, statement: str, at: int, done_at: int | None
) -> JournalEntry:
    """A journal entry not written yet (id 0)."""
    return JournalEntry(
        id=0,
        run_id=run_id,
        step_id=step_id,
        index=index,
        statement=statement,
        started_at=at,
        done_at=done_at,
    )
