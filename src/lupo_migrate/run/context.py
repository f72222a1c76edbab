"""How a step's statements reach the database: the context handlers run statements through
(imperative shell), over the ``Target`` protocol of :mod:`lupo_migrate.core.ports`.

:class:`StepContext` is what :func:`lupo_migrate.run.step.apply_step` hands a handler: each
statement it runs is journalled (write-ahead where it may commit on its own), waited for when
other sessions hold its tables, and turned into the run's errors when the database refuses it.
"""

from __future__ import annotations

import array
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, overload

import attrs

from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.errors import BlockedError, ConnectionLostError, StatementError, StorageError
from lupo_migrate.core.model import DOWN_OFFSET, UNDO_BASE, Step, StepId
from lupo_migrate.core.ports import Clock, Storage, Target
from lupo_migrate.run.shared import _commits_nothing, _family, _in_transaction, _read_under, _reason
from lupo_migrate.sql.online import AS_WRITTEN, COPY, attempts
from lupo_migrate.sql.session_state import reads_last_statement
from lupo_migrate.sql.touches import touches

__all__ = ["HeldWhileHolding", "KeptRows", "StepContext"]

#: Seconds between two looks for the sessions holding a table (see
#: StepContext._await_holders); MySQL's INNODB_TRX is refreshed only when last read over
#: 0.1 s ago.
_LOOK: Final = 0.2
#: Journal rows kept (see StepContext.buffer) beyond which they are written, in the step's
#: transaction, before its next statement: a file of 100,000 statements holds no more.
_CHUNK: Final = 5000


class KeptRows(Sequence[tuple[int, str, int, int]]):
    """Journal rows kept to be written together: (statement index, statement, started at,
    done at) each, the numbers in arrays (a step of 100,000 statements keeps 100,000 rows:
    as tuples of Python ints they took over 100 bytes each besides the statement)."""

    def __init__(self) -> None:
        self._numbers = array.array("q")  # index, started, done of each row in turn
        self._statements: list[str] = []

    def append(self, index: int, statement: str, started: int, done: int) -> None:
        self._numbers.extend((index, started, done))
        self._statements.append(statement)

    def __len__(self) -> int:
        return len(self._statements)

    @overload
    def __getitem__(self, at: int) -> tuple[int, str, int, int]: ...

    @overload
    def __getitem__(self, at: slice) -> list[tuple[int, str, int, int]]: ...

    def __getitem__(
        self, at: int | slice
    ) -> tuple[int, str, int, int] | list[tuple[int, str, int, int]]:
        if isinstance(at, slice):
            return [self[i] for i in range(*at.indices(len(self)))]
        statement = self._statements[at]  # IndexError as a list's
        at = at % len(self._statements)
        index, started, done = self._numbers[3 * at : 3 * at + 3]
        return index, statement, started, done


class HeldWhileHolding(BlockedError):
    """Other sessions hold a table a DDL statement of a step in a transaction must change,
    while the step's earlier statements hold locks of their own (PostgreSQL): the step is to
    be rolled back, its holders waited for with nothing held, and the step tried again (see
    :func:`lupo_migrate.run.step.apply_step`)."""

    def __init__(
        self,
        step_id: str,
        path: str,
        *,
        sessions: Sequence[str],
        index: int,
        tables: Sequence[str],
    ) -> None:
        super().__init__(step_id, path, sessions=sessions, waited=0.0, index=index)
        self.tables = tuple(tables)


class _Refused(Exception):
    """The server cannot run a statement as online as the ``online`` setting requires."""

    def __init__(self, strategy: str, mode: str, why: str = "") -> None:
        if mode == COPY:
            text = (
                f"online: copy cannot copy this table exactly: {why}; nothing ran. Use"
                " `-- online: auto` in the file's header to let the server alter it"
            )
        elif mode == "inplace":
            text = (
                f"online: {mode} allows no algorithm that blocks writes, and the server refused"
                f" {strategy}; nothing ran. Split the change, or let this file block writes"
                " with `-- online: auto` in its header"
            )
        else:
            text = (
                f"online: {mode} requires ALGORITHM=INSTANT, which the server refused;"
                " nothing ran. Use `-- online: inplace` or `auto` in the file's header"
            )
        super().__init__(text)


@attrs.define
class StepContext:
    """The ``StepContext`` handed to handlers: journalled statements on the step's connection."""

    storage: Storage
    clock: Clock
    target: Target
    root: Path
    run_id: str
    step: Step
    target_name: str
    connection: Any
    dialect: str
    names: Mapping[str, str]
    renames: Mapping[str, str]
    #: Indexes of this step's statements the journal records as done (kept up to date here,
    #: so the journal is read once per run, not once per step).
    finished: set[int] = attrs.field(factory=set)
    executed: int = 0
    #: Whether the storage writes through the step's own connection (same transaction).
    shared: bool = False
    #: The step runs apart: each statement commits on its own (see ``sql.apart``).
    apart: bool = False
    #: Journal rows of finished statements, kept to be written together (None: each is
    #: written as it goes): the rows of statements that commit nothing by themselves, whose
    #: transaction is their record. Written at the step's end, before a statement that is
    #: announced first (MySQL DDL), and, where the storage shares the step's transaction,
    #: every :data:`_CHUNK` rows. Where the storage is elsewhere (SQLite's ``app.lupo.db``)
    #: every statement of a step in one transaction is kept, and written at its end.
    buffer: KeptRows | None = None
    #: Called with each statement (and the step's connection) before it runs: pre-images of
    #: what it touches. It may return the statement to send instead (a soft drop, which
    #: moves a table aside rather than dropping it); the journal keeps the statement as
    #: written.
    before: Callable[[str, Any], str | None] | None = None

    #: Seconds to wait for other sessions holding a table a DDL statement changes (None: do
    #: not look; the DDL's own short lock wait still bounds how long it queues).
    wait_bound: float | None = None
    #: The directory agent-file and documentation steps change.
    files_root: Path | None = None
    #: Told of each statement that ran: (step id, index, seconds waited for the database,
    #: the strategy it ran with on MySQL/MariaDB or None; see ``sql.online``).
    observe: Callable[[StepId, int, float, str | None], None] | None = None
    #: How ALTER TABLE / CREATE INDEX go on MySQL/MariaDB (``sql.online``: auto, instant,
    #: inplace, off).
    online: str = "off"
    #: Told of an online copy's progress (``sql.online_copy``): a mapping with ``event``.
    report: Callable[[Mapping[str, Any]], None] | None = None
    #: Why the run is asked to stop (None: it is not); an online copy checks between chunks.
    stopped: Callable[[], str | None] | None = None
    #: The online copy's settings (keyword arguments of the target's ``online_copy``).
    copy_options: Mapping[str, Any] = attrs.field(factory=dict)

    def _copy(self, text: str) -> str | None:
        """*text* by an online copy; why it could not be (nothing ran), or None: done."""
        copy = getattr(self.target, "online_copy", None)
        if copy is None:
            return "this database has no online copy"
        why: str | None = copy(
            self.connection,
            text,
            run_id=self.run_id,
            required=self.online == COPY,
            report=self.report or (lambda _data: None),
            stopped=self.stopped or (lambda: None),
            **self.copy_options,
        )
        if why is not None and self.report is not None:
            self.report({"event": "not_copied", "reason": why})
        return why

    def _send(self, sent: str) -> str | None:
        """Send *sent*, on MySQL/MariaDB with the most online algorithm the server accepts
        (``sql.online``); the strategy it ran with (None: nothing was chosen)."""
        # Only a target that tells a refused algorithm from other errors is asked.
        refused = getattr(self.target, "algorithm_refused", None)
        tries = attempts(sent, _family(self.target), self.online) if refused else ()
        if not tries or refused is None:
            self.target.execute(self.connection, sent)
            return None
        for number, (strategy, text) in enumerate(tries, 1):
            if strategy == COPY:
                why = self._copy(text)
                if why is None:
                    return strategy
                if number == len(tries):
                    raise _Refused(strategy, self.online, why)
                continue
            try:
                self.target.execute(self.connection, text)
            except Exception as exc:
                if not refused(exc):
                    raise
                if number == len(tries):
                    if strategy == AS_WRITTEN:
                        raise
                    raise _Refused(strategy, self.online) from exc
                continue
            return strategy
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    def record(self, text: str) -> int:
        """Keep an undo record of this step in the journal, finished at once; its index.

        Written through the storage's own transaction unless the storage shares the step's
        (then it commits with what it undoes): handlers whose work is outside the database
        (files) run unshared, so a record is durable before the change it undoes.
        """
        index = UNDO_BASE + sum(1 for i in self.finished if i >= UNDO_BASE)
        while index in self.finished:
            index += 1
        at = to_stamp(self.clock.now())
        self.storage.journal_intent(self.run_id, self.step.id, index, text, at, done_at=at)
        self.finished.add(index)
        return index

    def records(self) -> list[tuple[int, str]]:
        """This step's undo records, oldest first: those of the run that applied it (for a
        completed run rolled back later) and of this run."""
        runs = [self.run_id]
        applied = self.storage.applied(self.target_name).get(self.step.id)
        if applied is not None and applied.run_id != self.run_id:
            runs.insert(0, applied.run_id)
        return [
            (entry.index, entry.statement)
            for run_id in runs
            for entry in self.storage.journal(run_id)
            if entry.step_id == self.step.id and entry.index >= UNDO_BASE
        ]

    def read_text(self, relpath: str) -> str:
        return _read_under(self.root, relpath, self.step)

    def _await_holders(self, statement: str, index: int) -> None:
        """Before DDL on existing tables: wait (up to ``wait_bound``) for the other sessions
        whose transactions hold them; the DDL is not sent meanwhile, so nothing queues behind
        it. Still held then: ``BlockedError`` naming them (transient: nothing ran)."""
        holders = getattr(self.target, "holders", None)
        if holders is None or self.wait_bound is None or _in_transaction(statement):
            return
        tables = sorted(
            {
                t.name
                for t in touches(statement, dialect=_family(self.target))
                if t.kind == "table" and t.action != "create" and t.schema is None
            }
        )
        if not tables:
            return
        began = time.monotonic()
        while True:
            found = holders(tables, self.connection)
            if not found:  # None: the server cannot tell; the DDL's lock wait bounds it
                return
            if self.executed and self.target.transactional_ddl and not self.apart:
                # Waiting here would keep what the step's earlier statements locked, in its
                # transaction, and the application's queries on those tables behind it:
                # the step is rolled back first, then waits with nothing held.
                raise HeldWhileHolding(
                    self.step.id, self.step.path, sessions=found, index=index, tables=tables
                )
            waited = time.monotonic() - began
            if waited >= self.wait_bound:
                raise BlockedError(
                    self.step.id, self.step.path, sessions=found, waited=waited, index=index
                )
            time.sleep(min(_LOOK, self.wait_bound - waited))

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        self._await_holders(statement, index)
        started = to_stamp(self.clock.now())
        # A statement that commits with its journal row gets one row, written after it ran;
        # one that may commit on its own (MySQL DDL) is announced first (write-ahead). On a
        # shared connection the rows written after wait for the step's next write-ahead
        # intent, or its end: nothing of lupo_migrate's runs between two of its statements
        # that cannot commit, so neither sees what the other left in the session.
        sent = statement
        if self.before is not None:
            sent = self.before(statement, self.connection) or statement
        transactional = self.target.transactional_ddl and not self.apart
        after = self.shared and (transactional or _commits_nothing(statement))
        kept = self.buffer is not None and (after or not self.shared)
        entry = None
        if not kept:
            self.write_kept()  # before anything announced: the rows keep their order
            if not after:
                entry = self.storage.journal_intent(
                    self.run_id, self.step.id, index, statement, started
                )
        elif (
            self.shared and len(self.buffer or ()) >= _CHUNK and not reads_last_statement(statement)
        ):
            self.write_kept()  # in the step's transaction: a long step's rows, not all held
        began = time.perf_counter()
        try:
            strategy = self._send(sent)
        except StorageError:
            raise  # a journal or ledger write that travelled with the statement failed
        except Exception as exc:
            suspects = getattr(self.target, "lock_wait_suspects", None)
            named = suspects(exc, self.connection) if suspects is not None else None
            if named is not None:  # it gave up waiting for a lock: nothing of it ran
                raise BlockedError(
                    self.step.id,
                    self.step.path,
                    sessions=named or ("no other open transaction is left",),
                    waited=float(getattr(self.target, "lock_wait_timeout", 0)),
                    index=index,
                    timed_out=True,
                ) from exc
            lost = getattr(self.target, "connection_lost", None)
            if lost is not None and lost(exc):
                raise ConnectionLostError(
                    self.step.id,
                    self.step.path,
                    index=index,
                    statement=statement,
                    reason=_reason(exc),
                ) from exc
            reason = _reason(exc)
            if isinstance(exc, _Refused):
                cause = exc.__cause__
                reason = str(exc) if cause is None else f"{_reason(cause)} ({exc})"
            raise StatementError(
                self.step.id,
                self.step.path,
                index=index,
                line=line,
                statement=statement,
                reason=reason,
                what=f"down statement {index - DOWN_OFFSET + 1}"
                if DOWN_OFFSET <= index < UNDO_BASE
                else None,
            ) from exc
        self.executed += 1
        if self.observe is not None:
            self.observe(self.step.id, index, time.perf_counter() - began, strategy)
        done = to_stamp(self.clock.now())
        if kept:
            assert self.buffer is not None
            self.buffer.append(index, statement, started, done)
        elif entry is None:
            self.storage.journal_intent(
                self.run_id, self.step.id, index, statement, started, done_at=done
            )
        else:
            self.storage.journal_done(entry.id, done)
        self.finished.add(index)

    def write_kept(self) -> None:
        """Write the journal rows kept in :attr:`buffer` (one write), and forget them."""
        if self.buffer:
            self.storage.journal_finished(  # type: ignore[attr-defined]
                self.run_id, self.step.id, self.buffer
            )
            self.buffer = KeptRows()

    def done(self) -> frozenset[int]:
        return frozenset(self.finished)
