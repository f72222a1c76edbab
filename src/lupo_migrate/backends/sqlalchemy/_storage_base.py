"""The plumbing every part of ``SqlAlchemyStorage`` shares: which connection an operation uses.

An operation writes through the step connection the storage is bound to, else in a transaction
of its own, and turns driver errors into :class:`~lupo_migrate.core.errors.StorageError`. Apart from
:mod:`~lupo_migrate.backends.sqlalchemy.storage` so that the parts of the class
(:mod:`~lupo_migrate.backends.sqlalchemy._storage_ledger`,
:mod:`~lupo_migrate.backends.sqlalchemy._storage_orchestrator`) build on one small typed base
rather than on the whole class. ``SqlAlchemyStorage.__init__`` sets the attributes declared here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._ids import IdBlocks
from lupo_migrate.backends.sqlalchemy._pipeline import pipeline_of
from lupo_migrate.backends.sqlalchemy._run_writes import HotPath
from lupo_migrate.backends.sqlalchemy._tables import OrchestrationTables, describe, reason
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import StorageError
from lupo_migrate.core.model import RunId
from lupo_migrate.core.ports import Clock

__all__ = ["StorageBase"]


class StorageBase:
    """The engine, the tables and the connection plumbing of ``SqlAlchemyStorage``."""

    engine: sa.Engine
    tables: OrchestrationTables
    clock: Clock
    # The step connection bound per thread (see ``bound``), the precompiled hot statements,
    # and the exception classes that become StorageError (SQLAlchemy's and the driver's).
    _local: threading.local
    _hot: HotPath
    # The ids journal rows are written with (see ``_ids``: a generated key would change the
    # step's LAST_INSERT_ID() or lastval()).
    _journal_ids: IdBlocks
    _errors: tuple[type[Exception], ...]

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
