"""Writes held back to travel with the next statement: MySQL multi-statement packets.

On MySQL/MariaDB a step's journal marks, its ledger row and the savepoint that opens it are
not sent one by one: they wait in the step connection's :class:`Pipeline` and go, in order,
in the same packet as a later statement (PyMySQL with ``CLIENT.MULTI_STATEMENTS``). The
server runs a packet's statements in order and stops at the first error, so a write held back
still happens before the statement it precedes, and the statement does not run if the write
fails. A step then costs two round trips on MariaDB (its DDL, its DML; its journal row, ledger
row and the run's next state travel with the next step's first statement), three on MySQL,
instead of nine.

Which statement a write travels with: an *urgent* write (the savepoint and the session reset
that open a step, the write-ahead intent of a statement that may commit on its own) goes with
the next statement, and takes every write held before it along; the others (the rows of
statements that ran, done marks, the ledger row, the run's state) wait for the next urgent
write or for :meth:`Pipeline.send`. So between two statements of a step that cannot commit on
their own nothing of lupo_migrate's runs, and what the session remembers of the first
(``ROW_COUNT()``, the warnings) is what the second sees, as in the ``mysql`` client; the held
writes commit with the DDL or the commit that follows, as before. In a long step (a seed of
100,000 INSERTs) the held rows go with the next statement once 200 are waiting, unless that
statement reads what its predecessor left in the session (``ROW_COUNT()``, ``FOUND_ROWS()``,
warnings, ``LAST_INSERT_ID()``, ``@@`` variables).

What must be known before anything else runs is checked by the server before it runs: the
run's state is written by a compare-and-set followed by :data:`CAS_GUARD` on MariaDB (an
error, which stops the packet, unless exactly one row matched), so it can travel with the next
statement too; on MySQL, which has no compound statements outside stored programs, it is sent
at once and its row count checked (``send`` with the write as the packet's last statement).

The target attaches a pipeline to its step connection (``connection.info``) and detaches it
when the connection is released; the storage, bound to the same connection, finds it with
:func:`pipeline_of`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, Final

import sqlalchemy as sa

from lupo_migrate.core.errors import StorageError
from lupo_migrate.sql.session_state import reads_last_statement

__all__ = [
    "CAS_GUARD",
    "KEY",
    "MULTI_STATEMENTS",
    "Pipeline",
    "attach",
    "detach",
    "pipeline_of",
    "supports_pipelining",
]

#: Where a connection's pipeline lives in ``Connection.info``.
KEY: Final = "lupo_migrate.pipeline"
#: Fails the packet unless the write before it matched exactly one row (MariaDB).
CAS_GUARD: Final = (
    "IF ROW_COUNT() <> 1 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT ="
    " 'lupo_migrate: the run state changed under this run (compare-and-set failed)'; END IF"
)
#: ``CLIENT.MULTI_STATEMENTS`` in the MySQL protocol: the connection flag pipelining needs.
MULTI_STATEMENTS: Final = 1 << 16
#: ``COM_QUERY`` and the ``SERVER_MORE_RESULTS_EXISTS`` status flag of the MySQL protocol.
_COM_QUERY: Final = 3
_MORE_RESULTS: Final = 8


@functools.cache
def _lean_reader() -> Any:
    """PyMySQL's result class when it has the internals the lean reply reader uses (see
    ``Pipeline._results``), else None. Pipelines exist on PyMySQL connections only."""
    from pymysql.connections import Connection, MySQLResult

    wanted = ("_execute_command", "_read_packet")
    readers = ("_read_result_packet", "_read_load_local_packet")
    if all(hasattr(Connection, n) for n in wanted) and all(
        hasattr(MySQLResult, n) for n in readers
    ):
        return MySQLResult
    return None  # pragma: no cover - another PyMySQL


def _length_encoded(data: bytes, at: int) -> tuple[int, int]:
    """The MySQL length-encoded integer at *data[at]*, and where the next field starts."""
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[at + 1 : at + 1 + size], "little"), at + 1 + size


def supports_pipelining(connection: sa.Connection) -> bool:
    """Whether *connection* is a PyMySQL connection opened with multi-statement packets."""
    dbapi = connection.connection.dbapi_connection
    flags = getattr(dbapi, "client_flag", 0)
    return isinstance(flags, int) and bool(flags & MULTI_STATEMENTS) and hasattr(dbapi, "query")


def pipeline_of(connection: sa.Connection) -> Pipeline | None:
    """The pipeline attached to *connection*, or None."""
    pipeline = connection.info.get(KEY)
    return pipeline if isinstance(pipeline, Pipeline) else None


def attach(connection: sa.Connection) -> Pipeline:
    """Attach a new, empty pipeline to *connection*."""
    pipeline = Pipeline(connection.connection.dbapi_connection)
    connection.info[KEY] = pipeline
    return pipeline


def detach(connection: sa.Connection) -> None:
    """Remove *connection*'s pipeline (its held writes are dropped)."""
    connection.info.pop(KEY, None)


#: Held rows (of statements that ran) beyond which they go with the next statement.
_MOST_HELD: Final = 200


class Pipeline:
    """The writes held back on one MySQL connection, sent with its next statement."""

    def __init__(self, dbapi_connection: Any) -> None:
        self._dbapi = dbapi_connection
        # One cursor for the pipeline's life: a step sends a few packets and renders several
        # writes, and a cursor per call was a measurable share of a long run's time.
        self._cursor = dbapi_connection.cursor()
        # (sql, handle, tag, urgent)
        self._held: list[tuple[str, int | None, str | None, bool]] = []
        # How many of the held writes must go with the next statement: up to the last urgent
        # one (kept as writes come and go: scanning for it made a step of n statements n²).
        self._urgent = 0
        self._ids: dict[int, int] = {}
        self._handles = 0

    def __len__(self) -> int:
        return len(self._held)

    def render(self, sql: str, params: Mapping[str, Any]) -> str:
        """*sql* with *params* escaped in by the driver (as it does for every query); whole
        numbers and NULLs, most of a journal row, are written out directly."""
        escape = self._dbapi.escape
        return sql % {
            key: str(value) if type(value) is int else "NULL" if value is None else escape(value)
            for key, value in params.items()
        }

    def defer(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        want_id: bool = False,
        tag: str | None = None,
        urgent: bool = False,
    ) -> int | None:
        """Hold a write back until the next :meth:`send`, or, if *urgent*, the next
        :meth:`run` (which takes it, and every write held before it, along).

        Returns:
            With *want_id*, a handle (negative) that :meth:`resolve` turns into the row's
            auto-increment id once it is sent; else None.
        """
        text = self.render(sql, params) if params else sql
        handle = None
        if want_id:
            self._handles -= 1
            handle = self._handles
        self._held.append((text, handle, tag, urgent))
        if urgent:
            self._urgent = len(self._held)
        return handle

    def discard(self, since: str | None = None) -> set[str]:
        """Drop the held writes (a rollback would undo them anyway); the tags dropped. With
        *since*, only from the first write tagged so: those before it stay held (the earlier
        step's writes, waiting to travel with this step's first statement)."""
        cut = 0
        if since is not None:
            cut = next((i for i, (_, _, tag, _) in enumerate(self._held) if tag == since), 0)
        held, self._held = self._held[cut:], self._held[:cut]
        self._urgent = min(self._urgent, cut)
        return {tag for _, _, tag, _ in held if tag is not None}

    def resolve(self, handle: int) -> int:
        """The id of the row inserted by the write behind *handle* (sending it if held)."""
        if handle not in self._ids:
            self.send()
        try:
            return self._ids.pop(handle)
        except KeyError:
            raise StorageError(f"journal entry handle {handle} is unknown") from None

    def run(self, statement: str) -> int:
        """Send a step's *statement*, with the held writes that must run before it: up to
        the last urgent one (none: *statement* goes alone). The others stay held, to run
        after it. Its row count.

        Raises:
            StorageError: a held write failed (nothing after it ran).
            Exception: the driver's error for *statement* itself.
        """
        count = self._urgent
        if len(self._held) - count >= _MOST_HELD and not reads_last_statement(statement):
            # A long step's rows would pile up (memory, one huge packet at its end): they go
            # now, unless the statement reads what the one before it left in the session.
            count = len(self._held)
        return self._send(count, statement)

    def send(self, statement: str | None = None) -> int:
        """Send all the held writes and then *statement* in one packet; the last one's row
        count.

        Raises:
            StorageError: a held write failed (nothing after it ran).
            Exception: the driver's error for *statement* itself.
        """
        return self._send(len(self._held), statement)

    def _send(self, count: int, statement: str | None) -> int:
        """Send the first *count* held writes and then *statement* in one packet."""
        held, self._held = self._held[:count], self._held[count:]
        self._urgent = max(0, self._urgent - count)
        texts = [text for text, _, _, _ in held]
        if statement is not None:
            texts.append(statement)
        if not texts:
            return 0
        index = 0
        last = 0
        try:
            for rows, row_id in self._results(";\n".join(texts)):
                if index < len(held) and held[index][1] is not None:
                    self._ids[held[index][1]] = row_id  # type: ignore[index]
                index += 1
                last = rows
        except Exception as exc:
            if index < len(held):
                raise StorageError(
                    f"a journal, ledger or savepoint write failed: {exc}; the statement after"
                    " it did not run"
                ) from exc
            raise
        return last

    def _results(self, packet: str) -> Iterator[tuple[int, int]]:
        """Send *packet*; (row count, last insert id) of each of its statements, in order.

        The replies of lupo_migrate's own writes and of DDL are OK packets: they are read
        here, two length-encoded integers and the status flags, instead of through a cursor
        (which builds a result, a packet wrapper and its own bookkeeping for each reply). A
        reply that is not an OK packet (a result set, a ``LOAD DATA LOCAL`` request) is read
        by PyMySQL itself. A driver without the internals this needs goes through the cursor.
        """
        dbapi = self._dbapi
        result_class = _lean_reader()
        if result_class is None:  # pragma: no cover - another PyMySQL
            cursor = self._cursor
            cursor.execute(packet)
            while True:
                yield int(cursor.rowcount), int(cursor.lastrowid or 0)
                if not cursor.nextset():
                    return
        dbapi._execute_command(_COM_QUERY, packet)
        while True:
            reply = dbapi._read_packet()  # raises the server's error as PyMySQL does
            data = reply.get_all_data()
            if data[0] == 0 and len(data) >= 7:  # an OK packet
                rows, at = _length_encoded(data, 1)
                row_id, at = _length_encoded(data, at)
                dbapi.server_status = status = data[at] | data[at + 1] << 8
                more = status & _MORE_RESULTS
            else:  # a result set (a migration's SELECT), LOAD DATA LOCAL: PyMySQL reads it
                result = result_class(dbapi)
                if reply.is_load_local_packet():
                    result._read_load_local_packet(reply)
                else:
                    result._read_result_packet(reply)
                result.connection = None
                rows, row_id = int(result.affected_rows or 0), int(result.insert_id or 0)
                more = result.has_next
            yield rows, row_id
            if not more:
                return
