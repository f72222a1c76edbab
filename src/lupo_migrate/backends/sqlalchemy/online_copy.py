"""An online copy on MySQL/MariaDB (imperative shell of :mod:`lupo_migrate.sql.online_copy`,
which says how it works and why each part is safe).

:func:`copy_online` runs one on a step's connection; :func:`underway` finds the copies
under way, or what a run's copies left (a process killed mid-copy); :func:`settle` finishes
a copy that had cut over and drops one that had not (or leaves it to be resumed), and
:func:`set_control` is how another process pauses, throttles or postpones one. Everything
goes through the driver's own cursor.

The checkpoint table (one row) holds the statement's digest, the phase (``preparing``,
``copying``, ``switching``), the columns copied, the last key copied and the bound the copy
runs to (JSON), the rows copied and estimated, and the operator's controls: ``paused``,
``postponed`` (the cut-over waits), ``most_threads`` and ``chunk_time`` (throttling, NULL:
the run's setting).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from lupo_migrate.backends.sqlalchemy._snapshot import BACKUP_PREFIX
from lupo_migrate.core.retry import lock_retry_pause
from lupo_migrate.sql import online_copy as oc
from lupo_migrate.sql import pt_osc as pt
from lupo_migrate.sql.online import after_table, retarget, table_of

__all__ = [
    "CopyFailed",
    "CopySettings",
    "NotCopyable",
    "ReplicaLag",
    "Underway",
    "copy_online",
    "end_run_swap_backs",
    "end_swap_backs",
    "kept_swap_backs",
    "refusal",
    "set_control",
    "settle",
    "swap_back",
    "underway",
]

#: Seconds between two looks at a paused or postponed copy's controls.
_LOOK: Final = 0.5
#: Seconds between two progress reports.
_REPORT: Final = 1.0
#: MySQL's "Lock wait timeout exceeded" (a metadata lock too: lock_wait_timeout).
_LOCK_WAIT: Final = 1205
#: The checkpoint's columns as _Copy._checkpoint names them.
_CHECKPOINT: Final = (
    "digest",
    "phase",
    "columns",
    "key",
    "last",
    "bound",
    "copied",
    "estimated",
    "paused",
    "postponed",
    "most_threads",
    "chunk_time",
)
#: ER_BAD_FIELD_ERROR: a checkpoint made before a column was added.
_NO_COLUMN: Final = 1054
#: A clash on another unique key (``sql.online_copy.CLASH``).
_CLASH: Final = oc.CLASH
#: Tries of a chunk that clashes on another unique key (the log applied between two).
_CLASH_TRIES: Final = 3
#: Rounds of the log applied before the switch, and the round size that ends them.
_CATCH_UP: Final = 20
_SMALL: Final = 1000


def _swap_triggers(backup_prefix: str) -> re.Pattern[str]:
    """The names of a swap-back's triggers on a table, of any run."""
    return re.compile(re.escape(backup_prefix) + r"\w{12}_(?:bin|bup|bde)_")


#: The triggers of a swap-back (``sql.online_copy``), of any run.
_SWAP_TRIGGER: Final = _swap_triggers(BACKUP_PREFIX)
_UNQUOTE: Final = re.compile(r"`((?:[^`]|``)*)`|([^.`\s]+)")


class NotCopyable(Exception):
    """The statement, or its table, cannot be copied online exactly; nothing was changed."""


class CopyFailed(Exception):
    """The online copy failed; what it made is dropped, the original table is untouched."""


@attrs.frozen
class CopySettings:
    """How an online copy goes.

    Attributes:
        chunk_time: seconds each chunk should take (its row locks are held that long).
        most_threads: the copy waits while the server's ``Threads_running`` is above this (0:
            never).
        least_rows: in ``auto``, tables with fewer rows (the catalog's estimate) are altered
            as written: copying them blocks writes only briefly.
        cutover_wait: seconds the cut-over's ``RENAME`` waits for the table's lock (queries
            queue behind it meanwhile) before it gives up and is tried again.
        cutover_tries: tries of the cut-over before the copy fails.
        backoff: the first pause between two tries (doubled each time, see
            ``core.retry``).
        replica_lag: called before each chunk for the worst replica lag in seconds (None:
            unknown); the copy waits while it is above *most_lag*.
        swap_back: keep the old table current after the cut-over, for a rollback that
            swaps it back (see ``sql.online_copy``).
    """

    chunk_time: float = 0.1
    most_threads: int = 25
    least_rows: int = 10_000
    cutover_wait: int = 1
    cutover_tries: int = 4
    backoff: float = 1.0
    most_lag: float = 1.0
    replica_lag: Callable[[], float | None] | None = None
    swap_back: bool = False


def _split(table: str) -> tuple[str | None, str]:
    parts = [a.replace("``", "`") if a else b for a, b in _UNQUOTE.findall(table)]
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Cursor:
    """The driver's cursor on a connection, with the few reads a copy makes."""

    def __init__(self, dbapi: Any) -> None:
        self.dbapi = dbapi

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, params or None)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()

    def run(self, sql: str, *params: Any) -> int:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, params or None)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def exists(self, name: str) -> bool:
        found = self.rows(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = %s",
            name,
        )
        return bool(found)

    def triggers(self, table: str) -> list[str]:
        return [
            str(r[0])
            for r in self.rows(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS"
                " WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = %s",
                table,
            )
        ]

    def columns(self, table: str) -> tuple[oc.ColumnFacts, ...]:
        rows = self.rows(
            "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT, EXTRA FROM"
            " information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
            " ORDER BY ORDINAL_POSITION",
            table,
        )
        return tuple(
            oc.ColumnFacts(
                name=str(name),
                nullable=str(nullable).upper() == "YES",
                has_default=default is not None,
                generated="GENERATED" in str(extra).upper(),
                auto_increment="AUTO_INCREMENT" in str(extra).upper(),
            )
            for name, nullable, default, extra in rows
        )

    def facts(self, table: str) -> tuple[oc.TableFacts, int, int | None]:
        """The table's facts, its estimated rows and its next AUTO_INCREMENT value."""
        found = self.rows(
            "SELECT ENGINE, TABLE_ROWS, AUTO_INCREMENT FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'",
            table,
        )
        if not found:
            raise NotCopyable(f"{table} is not a table of this database")
        engine, rows, counter = found[0]
        key = tuple(
            str(r[0])
            for r in self.rows(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA ="
                " DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                table,
            )
        )
        referenced_by = tuple(
            sorted(
                {
                    str(r[0])
                    for r in self.rows(
                        "SELECT TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE"
                        " WHERE REFERENCED_TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME"
                        " = %s AND NOT (TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s)",
                        table,
                        table,
                    )
                }
            )
        )
        foreign = tuple(
            str(r[0])
            for r in self.rows(
                "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS"
                " WHERE TABLE_SCHEMA"
                " = DATABASE() AND TABLE_NAME = %s AND CONSTRAINT_TYPE = 'FOREIGN KEY'",
                table,
            )
        )
        facts = oc.TableFacts(
            columns=self.columns(table),
            key=key,
            referenced_by=referenced_by,
            foreign_keys=foreign,
            triggers=tuple(self.triggers(table)),
            engine=str(engine or ""),
        )
        return facts, int(rows or 0), None if counter is None else int(counter)

    def status(self, variable: str) -> int | None:
        found = self.rows("SHOW GLOBAL STATUS LIKE %s", variable)
        try:
            return int(found[0][1]) if found else None
        except (TypeError, ValueError):
            return None

    def commit(self) -> None:
        self.dbapi.commit()

    def rollback(self) -> None:
        self.dbapi.rollback()


class ReplicaLag:
    """The worst lag of *urls*' replication, in seconds, read before each chunk (``SHOW ALL
    SLAVES STATUS`` on MariaDB, ``SHOW REPLICA STATUS`` on MySQL): ``inf`` when one does
    not replicate (its SQL thread stopped, no replication configured) or cannot be reached.
    """

    def __init__(self, urls: Sequence[str], connect: Callable[[str], Any]) -> None:
        self._urls = tuple(urls)
        self._connect = connect
        self._open: dict[str, Any] = {}

    def __call__(self) -> float | None:
        if not self._urls:
            return None
        worst = 0.0
        for url in self._urls:
            try:
                worst = max(worst, self._lag(url))
            except Exception:  # out of reach: the copy waits, and looks again
                self._open.pop(url, None)
                return math.inf
        return worst

    def _lag(self, url: str) -> float:
        dbapi = self._open.get(url)
        if dbapi is None:
            dbapi = self._open[url] = self._connect(url)
        cursor = dbapi.cursor()
        try:
            for show in ("SHOW ALL SLAVES STATUS", "SHOW REPLICA STATUS"):
                try:
                    cursor.execute(show)
                except Exception as exc:
                    if _code(exc) == 1064:  # the other server's spelling
                        continue
                    raise
                names = [d[0] for d in cursor.description or ()]
                rows = cursor.fetchall()
                break
            else:  # pragma: no cover - one of the two is known to every server
                return math.inf
        finally:
            cursor.close()
        if not rows:
            return math.inf  # not a replica
        lags = []
        for row in rows:
            found = dict(zip(names, row, strict=False))
            value = found.get("Seconds_Behind_Master", found.get("Seconds_Behind_Source"))
            lags.append(math.inf if value is None else float(value))
        return max(lags)

    def close(self) -> None:
        for dbapi in self._open.values():
            _quietly(dbapi.close)
        self._open.clear()


def _refusal(
    statement: str, facts: oc.TableFacts, rows: int, least_rows: int, required: bool
) -> str | None:
    # An earlier run's swap-back triggers are not the table's own: the copy ends them.
    own = tuple(t for t in facts.triggers if not _SWAP_TRIGGER.match(t))
    facts = attrs.evolve(facts, triggers=own)
    why = oc.statement_refusal(after_table(statement) or "") or oc.table_refusal(facts)
    if why is None and not required and rows < least_rows:
        why = f"it holds about {rows} rows (copy_min_rows is {least_rows})"
    return why


def refusal(dbapi: Any, statement: str, *, least_rows: int, required: bool) -> str | None:
    """Why *statement* could not be done by an online copy of its table as it is now (what
    the statement's text and the table's catalog say; the columns it leaves are checked when
    it runs, on the shadow), or None. Reads only."""
    written = table_of(statement)
    if written is None:
        return "it is not an ALTER TABLE or CREATE INDEX"
    schema, name = _split(written)
    cur = _Cursor(dbapi)
    if schema is not None and schema != cur.rows("SELECT DATABASE()")[0][0]:
        return f"{written} is in another database than the connection's"
    try:
        facts, rows, _counter = cur.facts(name)
    except NotCopyable as exc:
        return str(exc)
    return _refusal(statement, facts, rows, least_rows, required)


def _code(error: BaseException) -> object:
    orig = getattr(error, "orig", None) or error
    return (getattr(orig, "args", None) or [None])[0]


def create_checkpoint(
    cur: _Cursor,
    names: oc.CopyNames,
    statement: str,
    estimated: int,
    phase: str,
    old_table: str | None = None,
) -> None:
    """Create the copy's checkpoint table, its one row in *phase* (committed). *old_table*:
    the name an external executor gives the old table at its cut-over (``sql.pt_osc``)."""
    cur.run(
        f"CREATE TABLE {_q(names.checkpoint)} (id TINYINT PRIMARY KEY,"
        " digest CHAR(32) NOT NULL, phase VARCHAR(16) NOT NULL, statement LONGTEXT NOT NULL,"
        " columns_copied LONGTEXT NULL, key_columns LONGTEXT NULL, last_key LONGTEXT NULL,"
        " bound LONGTEXT NULL, copied BIGINT NOT NULL DEFAULT 0, estimated BIGINT NOT NULL"
        " DEFAULT 0, paused TINYINT NOT NULL DEFAULT 0, postponed TINYINT NOT NULL"
        " DEFAULT 0, most_threads INT NULL, chunk_time DOUBLE NULL, old_table VARCHAR(64) NULL)"
        " ENGINE=InnoDB"
    )
    cur.run(
        f"INSERT INTO {_q(names.checkpoint)} (id, digest, phase, statement, estimated,"
        " old_table) VALUES (1, %s, %s, %s, %s, %s)",
        oc.digest(statement),
        phase,
        statement,
        estimated,
        old_table,
    )
    cur.commit()


@attrs.define
class _Copy:
    cur: _Cursor
    statement: str
    table: str  # unquoted, in the connection's database
    names: oc.CopyNames
    settings: CopySettings
    report: Callable[[Mapping[str, Any]], None]
    stopped: Callable[[], str | None]
    backup_schema: str | None
    required: bool
    columns: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    _last_report: float = 0.0
    #: The checkpoint table is known to exist (no catalog look before each chunk).
    _made: bool = False
    #: This copy made (or found) its checkpoint: what it made is its own to drop.
    created: bool = False
    #: The key is one whole-number column whose values are dense (at most twice as many
    #: values as rows): chunks end by arithmetic.
    _dense: bool = False

    # --- the checkpoint -------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any] | None:
        if not self._made and not self.cur.exists(self.names.checkpoint):
            return None
        self._made = True
        rows = self.cur.rows(
            f"SELECT digest, phase, columns_copied, key_columns, last_key, bound, copied,"
            f" estimated, paused, postponed, most_threads, chunk_time FROM"
            f" {_q(self.names.checkpoint)} WHERE id = 1"
        )
        self.cur.commit()  # the next read sees what another process set meanwhile
        if not rows:
            return None
        found = dict(zip(_CHECKPOINT, rows[0], strict=True))
        for name in ("columns", "key", "last", "bound"):
            found[name] = None if found[name] is None else json.loads(found[name])
        return found

    def _create_checkpoint(self, estimated: int) -> None:
        self.created = True
        create_checkpoint(self.cur, self.names, self.statement, estimated, "preparing")

    # --- what is made, and dropped -------------------------------------------------------
    def discard(self) -> None:
        """Drop what the copy made, triggers first (a trigger writing into a dropped table
        would fail the application's writes); the original table is not touched."""
        for name in (*self.names.triggers, *self.names.sync_triggers):
            self._ddl(f"DROP TRIGGER IF EXISTS {_q(name)}")
        for name in self.names.back_log_triggers:  # on the shadow
            self._ddl(f"DROP TRIGGER IF EXISTS {_q(name)}")
        for table in (self.names.shadow, self.names.log, self.names.back_log):
            self._ddl(f"DROP TABLE IF EXISTS {_q(table)}")
        self._ddl(f"DROP TABLE IF EXISTS {_q(self.names.checkpoint)}")
        self._made = False

    def _ddl(self, sql: str) -> None:
        _ddl(self.cur, sql, self.settings)

    def _phase(self, phase: str) -> None:
        self.cur.run(f"UPDATE {_q(self.names.checkpoint)} SET phase = %s WHERE id = 1", phase)
        self.cur.commit()

    def _prepare(self) -> None:
        # An earlier run's swap-back of this table ends here: its triggers would stay on
        # the table this copy sets aside (that run's rollback copies again instead).
        end_swap_backs(self.cur, self.names, table=self.table)
        facts, estimated, counter = self.cur.facts(self.table)
        why = _refusal(self.statement, facts, estimated, self.settings.least_rows, self.required)
        if why is not None:
            raise NotCopyable(why)
        if self.cur.exists(self.names.old):
            raise CopyFailed(
                f"{self.names.old} is in the way (an earlier copy's old table); drop it or"
                " run `lupo-migrate recover`"
            )
        left = [t for t in self.cur.triggers(self.table) if t in self._own_triggers]
        if left or self.cur.exists(self.names.shadow) or self.cur.exists(self.names.log):
            self.discard()
        self._create_checkpoint(estimated)
        shadow = _q(self.names.shadow)
        self.cur.run(f"CREATE TABLE {shadow} LIKE {_q(self.table)}")
        altered = retarget(self.statement, shadow)
        if altered is None:  # pragma: no cover - the caller matched it
            raise NotCopyable("it is not an ALTER TABLE or CREATE INDEX")
        try:
            self.cur.run(altered)
        except Exception as exc:
            raise CopyFailed(f"the change failed on the empty shadow table: {exc}") from exc
        shadow_columns = self.cur.columns(self.names.shadow)
        columns, why = oc.copy_columns(facts.columns, shadow_columns, facts.key)
        if why is not None:
            raise NotCopyable(why)
        if counter is not None:
            self.cur.run(f"ALTER TABLE {shadow} AUTO_INCREMENT = {int(counter)}")
        self.columns, self.key = columns, facts.key
        self.cur.run(oc.log_table_sql(self.names, _q(self.table), self.key))
        for sql in oc.log_trigger_sql(self.names, _q(self.table), self.key):
            self._ddl(sql)
        # The copy runs to the last key there now: rows inserted later are in the log.
        cols = ", ".join(_q(k) for k in self.key)
        top = self.cur.rows(
            f"SELECT {cols} FROM {_q(self.table)} ORDER BY "
            + ", ".join(f"{_q(k)} DESC" for k in self.key)
            + " LIMIT 1"
        )
        bound = None if not top else [_plain(v) for v in top[0]]
        self.cur.run(
            f"UPDATE {_q(self.names.checkpoint)} SET phase = 'copying', columns_copied = %s,"
            " key_columns = %s, bound = %s WHERE id = 1",
            json.dumps(list(columns)),
            json.dumps(list(self.key)),
            json.dumps(bound),
        )
        self.cur.commit()

    @property
    def _own_triggers(self) -> tuple[str, ...]:
        return (*self.names.triggers, *self.names.sync_triggers)

    # --- the copy ------------------------------------------------------------------------
    def run(self) -> None:
        found = self._checkpoint()
        self.created = found is not None
        if found is not None and found["digest"] != oc.digest(self.statement):
            raise CopyFailed(
                f"{self.names.checkpoint} belongs to another statement's online copy of"
                f" {self.table}; `lupo-migrate recover` settles it"
            )
        if found is not None and found["phase"] == pt.PHASE:
            # Begun by pt-online-schema-change (the executor setting changed since): its
            # triggers go first, or they would write into a shadow no longer there.
            discard_external(self.cur, self.names)
            self._made, found = False, None
        present = set(self.cur.triggers(self.table))
        capturing = set(self.names.triggers) <= present or set(self.names.sync_triggers) <= present
        resumable = (
            found is not None
            and found["phase"] in ("copying", "switching")
            and self.cur.exists(self.names.shadow)
            and self.cur.exists(self.names.log)
            and capturing
        )
        if resumable:
            assert found is not None
            self.columns, self.key = tuple(found["columns"]), tuple(found["key"])
            self.report(
                {
                    "event": "resumed",
                    "table": self.table,
                    "copied": found["copied"],
                    "last": found["last"],
                }
            )
        else:
            if found is not None:
                self.discard()
            self._prepare()
            found = self._checkpoint()
            assert found is not None
        if found["phase"] == "copying":
            self._copy(found)
        self._switch()
        self._cut_over()

    def _copy(self, found: Mapping[str, Any]) -> None:
        bound = found["bound"]
        last = found["last"]
        copied = int(found["copied"])
        total = max(int(found["estimated"]), copied)
        size = oc.FIRST_CHUNK
        began = time.monotonic()
        start_copied = copied
        table = _q(self.table)
        if bound is not None and len(bound) == 1 and isinstance(bound[0], int):
            least = self.cur.rows(f"SELECT MIN({_q(self.key[0])}) FROM {table}")[0][0]
            span = int(bound[0]) - int(least if least is not None else bound[0]) + 1
            self._dense = span <= 2 * max(total, 1)  # sparse keys: chunks by the index
        while bound is not None and last != bound:
            controls = self._checkpoint() or {}
            self._wait_while_held(controls)
            chunk_time = float(controls.get("chunk_time") or self.settings.chunk_time)
            tick = time.monotonic()
            inserted, end = self._chunk(table, last, bound, size)
            seconds = time.monotonic() - tick
            copied += inserted
            last = end
            size = oc.next_chunk(size, max(inserted, 1), seconds, chunk_time)
            self._apply(size)
            now = time.monotonic()
            if last == bound or now - self._last_report >= _REPORT:
                self._last_report = now
                total = max(total, copied)
                self.report(
                    {
                        "event": "progress",
                        "table": self.table,
                        "copied": copied,
                        "total": total,
                        "chunk": size,
                        "eta": oc.eta(copied - start_copied, total - start_copied, now - began),
                    }
                )

    def _chunk(
        self, table: str, last: list[Any] | None, bound: list[Any], size: int
    ) -> tuple[int, list[Any]]:
        """Copy the chunk of about *size* rows after *last* (None: from the start) with the
        checkpoint's new position, in one transaction; the rows inserted and the chunk's last
        key. A clash on another unique key is tried again after the log is applied."""
        after = [] if last is None else oc.after_params(self.key, last)
        if self._dense and last is not None:
            # A dense whole-number key: the chunk's end by arithmetic (the chunk's size
            # adapts to the rows it finds), not by walking the index.
            end = [int(last[0]) + size]
        elif last is None:
            ends = self.cur.rows(oc.chunk_bound_sql(table, self.key, True), size - 1)
            end = [_plain(v) for v in ends[0]] if ends else bound
        else:
            ends = self.cur.rows(oc.chunk_bound_sql(table, self.key, False), *after, size - 1)
            end = [_plain(v) for v in ends[0]] if ends else bound
        if _beyond(end, bound):
            end = bound
        sql = oc.chunk_sql(self.names, table, self.columns, self.key, last is None)
        for attempt in range(1, _CLASH_TRIES + 1):
            try:
                inserted = max(self.cur.run(sql, *after, *oc.after_params(self.key, end)), 0)
                self.cur.run(
                    f"UPDATE {_q(self.names.checkpoint)} SET last_key = %s,"
                    " copied = copied + %s WHERE id = 1",
                    json.dumps(end),
                    inserted,
                )
                self.cur.commit()
                return inserted, end
            except Exception as exc:
                self.cur.rollback()
                if _code(exc) != _CLASH:
                    raise
                if attempt == _CLASH_TRIES:
                    raise CopyFailed(
                        f"a row of {self.table} with key up to {end} clashes on a unique key"
                        " of the new definition (the plain ALTER fails on it too)"
                    ) from exc
                self._apply(oc.MOST_CHUNK)
        raise AssertionError("unreachable")  # pragma: no cover

    def _log(self, most: int) -> list[tuple[Any, tuple[Any, ...]]]:
        """Up to *most* entries of the change log: (sequence, key) each."""
        cols = ", ".join(_q(c) for c in (oc.SEQ, *self.key))
        rows = self.cur.rows(
            f"SELECT {cols} FROM {_q(self.names.log)} ORDER BY {_q(oc.SEQ)} LIMIT %s", most
        )
        return [(r[0], tuple(r[1:])) for r in rows]

    def _forget(self, entries: Sequence[tuple[Any, tuple[Any, ...]]]) -> None:
        seqs = [seq for seq, _key in entries]
        marks = ", ".join("%s" for _ in seqs)
        self.cur.run(f"DELETE FROM {_q(self.names.log)} WHERE {_q(oc.SEQ)} IN ({marks})", *seqs)

    def _apply(self, most: int) -> int:
        """Apply up to *most* entries of the change log (before the switch): the shadow's
        rows of their keys made the original's as they are now, the entries deleted, in one
        transaction; the entries applied. A clash on another unique key leaves them for the
        next round (rows of different moments side by side; the chunk retries say when it
        stays)."""
        entries = self._log(most)
        if not entries:
            self.cur.commit()
            return 0
        keys = sorted({key for _seq, key in entries}, key=repr)
        flat = [v for key in keys for v in key]
        remove, insert = oc.apply_sql(self.names, _q(self.table), self.columns, self.key, len(keys))
        try:
            self.cur.run(remove, *flat)
            self.cur.run(insert, *flat)
            self._forget(entries)
            self.cur.commit()
        except Exception as exc:
            self.cur.rollback()
            if _code(exc) != _CLASH:
                raise
            return 0
        return len(entries)

    def _switch(self) -> None:
        """Catch up with the log, then let the application's changes write the shadow
        straight, and apply what the log still holds with the original's rows read under a
        shared lock: the shadow is then the original, and stays so."""
        found = self._checkpoint() or {}
        if found.get("phase") == "copying":
            for _round in range(_CATCH_UP):
                if self._apply(oc.MOST_CHUNK) < _SMALL:
                    break
            said = False
            while (self._checkpoint() or {}).get("postponed"):
                if not said:
                    said = True
                    self.report({"event": "postponed", "table": self.table})
                why = self.stopped()
                if why:
                    raise CopyFailed(f"stopped: {why}")
                self._apply(oc.MOST_CHUNK)
                time.sleep(_LOOK)
            self._phase("switching")
        if self.settings.swap_back:
            self._note_for_swap_back()
        present = set(self.cur.triggers(self.table))
        statements = oc.trigger_sql(self.names, _q(self.table), self.columns, self.key)
        for name, sql in zip(self.names.sync_triggers, statements, strict=True):
            if name not in present:
                self._ddl(sql)
        for name in self.names.triggers:
            self._ddl(f"DROP TRIGGER IF EXISTS {_q(name)}")
        table = _q(self.table)
        write = oc.write_chunk_sql(self.names, self.columns, self.key)
        while True:
            entries = self._log(oc.MOST_CHUNK)
            if not entries:
                self.cur.commit()
                return
            keys = sorted({key for _seq, key in entries}, key=repr)
            flat = [v for key in keys for v in key]
            try:
                rows = self.cur.rows(
                    oc.locked_rows_sql(table, self.columns, self.key, len(keys)), *flat
                )
                remove, _insert = oc.apply_sql(self.names, table, self.columns, self.key, len(keys))
                self.cur.run(remove, *flat)
                if rows:
                    cursor = self.cur.dbapi.cursor()
                    try:
                        cursor.executemany(write, rows)
                    finally:
                        cursor.close()
                self._forget(entries)
                self.cur.commit()
            except Exception as exc:
                self.cur.rollback()
                if _code(exc) == _CLASH:
                    raise CopyFailed(
                        f"a row of {self.table} clashes on a unique key of the new definition"
                        " (the plain ALTER fails on it too)"
                    ) from exc
                raise

    def _note_for_swap_back(self) -> None:
        """From the switch on, the keys written to the shadow are noted in the swap-back's
        log (by the cascade of the original's triggers, then by the application itself once
        the shadow is the table), until the triggers that keep the old table current are
        made after the cut-over (see :func:`finish`)."""
        if not self.cur.exists(self.names.back_log):
            self.cur.run(oc.log_table_sql(self.names, _q(self.table), self.key, back=True))
        present = set(self.cur.triggers(self.names.shadow))
        statements = oc.log_trigger_sql(self.names, _q(self.names.shadow), self.key, back=True)
        for name, sql in zip(self.names.back_log_triggers, statements, strict=True):
            if name not in present:
                self._ddl(sql)

    def _wait_while_held(self, controls: Mapping[str, Any]) -> None:
        """Wait while the copy is paused, the server busy or a replica behind; a stop asked
        meanwhile fails the copy. The log is applied meanwhile, so that it stays short."""
        said = ""
        while True:
            why = self.stopped()
            if why:
                raise CopyFailed(f"stopped: {why}")
            if controls.get("paused"):
                reason = "paused by an operator (`lupo-migrate resume` goes on)"
            else:
                most = controls.get("most_threads")
                most = self.settings.most_threads if most is None else int(most)
                lag = self.settings.replica_lag() if self.settings.replica_lag else None
                running = self.cur.status("Threads_running") if most > 0 else None
                reason = oc.throttled(running, most, lag, self.settings.most_lag)
            if not reason:
                return
            if reason != said:
                said = reason
                self.report({"event": "throttled", "table": self.table, "reason": reason})
            time.sleep(_LOOK)
            controls = self._checkpoint() or {}

    def _cut_over(self) -> None:
        rename = (
            f"RENAME TABLE {_q(self.table)} TO {_q(self.names.old)},"
            f" {_q(self.names.shadow)} TO {_q(self.table)}"
        )
        wait = self.cur.rows("SELECT @@SESSION.lock_wait_timeout")[0][0]
        self.cur.run(f"SET SESSION lock_wait_timeout = {int(self.settings.cutover_wait)}")
        try:
            for attempt in range(1, self.settings.cutover_tries + 1):
                try:
                    self.cur.run(rename)
                    break
                except Exception as exc:
                    if _code(exc) != _LOCK_WAIT:
                        raise
                    if attempt == self.settings.cutover_tries:
                        raise CopyFailed(
                            f"the cut-over could not take {self.table}'s lock in"
                            f" {attempt} tries of {self.settings.cutover_wait} s"
                        ) from exc
                    pause = lock_retry_pause(attempt, self.settings.backoff, random.random())
                    self.report({"event": "cutover_retry", "table": self.table, "attempt": attempt})
                    time.sleep(pause)
        finally:
            self.cur.run(f"SET SESSION lock_wait_timeout = {int(wait)}")
        self.report({"event": "cut_over", "table": self.table})
        # The statement has run: what is left to tidy (triggers on the old table, moving it
        # among the backups, the checkpoint) must not make it count as failed. A connection
        # lost here is raised (recovery sees the cut-over and finishes); another failure is
        # told (``tidy_failed``, on stderr too), with the copy's own tables and triggers left
        # under the run's backup prefix, where `lupo-migrate copies` lists them.
        try:
            finish(self.cur, self.names, self.backup_schema)
        except Exception as exc:
            if _lost(exc):
                raise
            self.report({"event": "tidy_failed", "table": self.table, "reason": str(exc)})


def _ddl(cur: _Cursor, sql: str, settings: CopySettings) -> None:
    """A DDL statement on the original's lock (triggers): tried again when its short lock
    wait runs out."""
    for attempt in range(1, settings.cutover_tries + 1):
        try:
            cur.run(sql)
            return
        except Exception as exc:
            if _code(exc) != _LOCK_WAIT or attempt == settings.cutover_tries:
                raise
            time.sleep(lock_retry_pause(attempt, settings.backoff, random.random()))


def _plain(value: Any) -> Any:
    """A key value as JSON keeps it (bytes as text; dates as their text)."""
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _beyond(end: Sequence[Any], bound: Sequence[Any]) -> bool:
    try:
        return list(end) > list(bound)
    except TypeError:
        return False


def finish(cur: _Cursor, names: oc.CopyNames, backup_schema: str | None) -> None:
    """After the cut-over: the triggers (now on the old table) dropped, the old table moved
    among the backups, the swap-back armed (when its log was made at the switch), the
    checkpoint dropped."""
    for name in (*names.triggers, *names.sync_triggers):
        cur.run(f"DROP TRIGGER IF EXISTS {_q(name)}")
    cur.run(f"DROP TABLE IF EXISTS {_q(names.log)}")
    if backup_schema is not None and cur.exists(names.old):
        current = cur.rows("SELECT DATABASE()")[0][0]
        if current != backup_schema:
            cur.run(f"RENAME TABLE {_q(names.old)} TO {_q(backup_schema)}.{_q(names.old)}")
    if cur.exists(names.back_log):
        _arm_swap_back(cur, names, backup_schema)
    cur.run(f"DROP TABLE IF EXISTS {_q(names.checkpoint)}")


def _in(schema: str | None, name: str) -> str:
    """*name* quoted, qualified by *schema* (None: the connection's database)."""
    return _q(name) if schema is None else f"{_q(schema)}.{_q(name)}"


def _exists_in(cur: _Cursor, schema: str | None, name: str) -> bool:
    if schema is None:
        return cur.exists(name)
    found = cur.rows(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        schema,
        name,
    )
    return bool(found)


def _definition(cur: _Cursor, table: str) -> str | None:
    try:
        return oc.definition(str(cur.rows(f"SHOW CREATE TABLE {_q(table)}")[0][1]))
    except Exception as exc:
        if _code(exc) == 1146:  # no such table
            return None
        raise


def _strict(cur: _Cursor) -> str:
    """Set the session's ``sql_mode`` strict (see ``oc.STRICT``); the mode it had."""
    mode = str(cur.rows("SELECT @@SESSION.sql_mode")[0][0])
    cur.run("SET SESSION sql_mode = %s", oc.STRICT)
    return mode


def _arm_swap_back(cur: _Cursor, names: oc.CopyNames, backup_schema: str | None) -> None:
    """After the cut-over, with the old table among the backups: its record (the table's
    definition now), the triggers that keep the old table current, then the swap-back's
    log applied to it and dropped (see ``sql.online_copy``). Each part is skipped when done
    (a copy settled after a crash arms it again). A change the old table cannot take marks
    the swap-back spent, and its triggers go: the rollback undoes the step as written. Any
    other failure takes what it made away (nothing is left writing the old table) and is
    raised, to be told."""
    found = cur.rows(f"SELECT columns_copied, key_columns FROM {_q(names.checkpoint)} WHERE id = 1")
    cur.commit()
    columns, key = json.loads(found[0][0]), json.loads(found[0][1])
    old, revert = _in(backup_schema, names.old), _in(backup_schema, names.revert)
    table, settings = names.table, CopySettings()
    try:
        if not _exists_in(cur, backup_schema, names.revert):
            cur.run(
                f"CREATE TABLE {revert} (id TINYINT PRIMARY KEY, definition LONGTEXT NOT NULL,"
                " diverged INT NOT NULL DEFAULT 0, swapped TINYINT NOT NULL DEFAULT 0)"
                " ENGINE=InnoDB"
            )
            definition = _definition(cur, table) or ""
            cur.run(f"INSERT INTO {revert} (id, definition) VALUES (1, %s)", definition)
            cur.commit()
        mode = _strict(cur)
        try:
            present = set(cur.triggers(table))
            database = str(cur.rows("SELECT DATABASE()")[0][0])
            statements = oc.back_trigger_sql(names, _q(table), old, revert, columns, key, database)
            for name, sql in zip(names.back_triggers, statements, strict=True):
                if name not in present:
                    _ddl(cur, sql, settings)
            try:
                _apply_back_log(cur, names, old, columns, key)
            except Exception as exc:
                cur.rollback()
                if _lost(exc):
                    raise
                cur.run(f"UPDATE {revert} SET diverged = diverged + 1 WHERE id = 1")
                cur.commit()
                for name in names.back_triggers:
                    _ddl(cur, f"DROP TRIGGER IF EXISTS {_q(name)}", settings)
        finally:
            cur.run("SET SESSION sql_mode = %s", mode)
        for name in names.back_log_triggers:
            _ddl(cur, f"DROP TRIGGER IF EXISTS {_q(name)}", settings)
        cur.run(f"DROP TABLE IF EXISTS {_q(names.back_log)}")
    except Exception as exc:
        if _lost(exc):
            raise
        _quietly(cur.rollback)
        for sql in (
            *(
                f"DROP TRIGGER IF EXISTS {_q(n)}"
                for n in (*names.back_triggers, *names.back_log_triggers)
            ),
            f"DROP TABLE IF EXISTS {_q(names.back_log)}",
            f"UPDATE {revert} SET diverged = diverged + 1 WHERE id = 1",
        ):
            with contextlib.suppress(Exception):
                cur.run(sql)
        _quietly(cur.commit)
        raise


def _apply_back_log(
    cur: _Cursor, names: oc.CopyNames, old: str, columns: Sequence[str], key: Sequence[str]
) -> None:
    """The keys the swap-back's log noted, each made in *old* the table's row as it is now
    (read under a shared lock: a write racing with it waits, then its trigger writes *old*
    itself), or deleted from *old* when the table has it no more."""
    table = _q(names.table)
    write = oc.back_write_sql(old, columns, key)
    where = [columns.index(k) for k in key]
    cols = ", ".join(_q(c) for c in (oc.SEQ, *key))
    while True:
        entries = cur.rows(
            f"SELECT {cols} FROM {_q(names.back_log)} ORDER BY {_q(oc.SEQ)} LIMIT %s",
            oc.MOST_CHUNK,
        )
        if not entries:
            cur.commit()
            return
        keys = sorted({tuple(e[1:]) for e in entries}, key=repr)
        flat = [v for k in keys for v in k]
        rows = cur.rows(oc.locked_rows_sql(table, columns, key, len(keys)), *flat)
        there = {tuple(row[i] for i in where) for row in rows}
        gone = [k for k in keys if k not in there]
        if gone:
            cur.run(
                f"DELETE FROM {old} WHERE {oc.key_in(key, len(gone))}",
                *[v for k in gone for v in k],
            )
        if rows:
            cursor = cur.dbapi.cursor()
            try:
                cursor.executemany(write, rows)
            finally:
                cursor.close()
        seqs = [e[0] for e in entries]
        marks = ", ".join("%s" for _ in seqs)
        cur.run(f"DELETE FROM {_q(names.back_log)} WHERE {_q(oc.SEQ)} IN ({marks})", *seqs)
        cur.commit()


def end_swap_backs(cur: _Cursor, names: oc.CopyNames, *, table: str | None = None) -> list[str]:
    """Drop the swap-back triggers of every run on *table* (None: those of the run *names*
    belongs to, on any table), so that nothing writes into an old table about to be set
    aside or dropped; the triggers dropped."""
    if table is None:
        pattern = re.compile(re.escape(names.base) + r"(?:bin|bup|bde|bli|blu|bld)_")
        rows = cur.rows(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        )
    else:
        pattern = _swap_triggers(names.backup_prefix)
        rows = [(t,) for t in cur.triggers(table)]
    dropped = [str(r[0]) for r in rows if pattern.match(str(r[0]))]
    for name in dropped:
        _ddl(cur, f"DROP TRIGGER IF EXISTS {_q(name)}", CopySettings())
    return dropped


def kept_swap_backs(
    dbapi: Any, backup_prefix: str, run_id: str, backup_schema: str | None
) -> set[str]:
    """The names of run *run_id*'s swap-back records (``CopyNames.revert``): one catalog
    read, before anything else is looked at."""
    cur = _Cursor(dbapi)
    base = oc.names_for(backup_prefix, run_id, "").base
    pattern = base.replace("_", "\\_") + "rev\\_%"
    schema = "DATABASE()" if backup_schema is None else "%s"
    params = () if backup_schema is None else (backup_schema,)
    found = {
        str(r[0])
        for r in cur.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME LIKE %s",
            *params,
            pattern,
        )
    }
    cur.commit()
    return found


def end_run_swap_backs(dbapi: Any, backup_prefix: str, run_id: str) -> list[str]:
    """Drop run *run_id*'s swap-back triggers, on every table (its backups are about to be
    dropped); the triggers dropped."""
    cur = _Cursor(dbapi)
    dropped = end_swap_backs(cur, oc.names_for(backup_prefix, run_id, ""))
    cur.commit()
    return dropped


def swap_back(
    dbapi: Any,
    guard: Any,
    *,
    backup_prefix: str,
    run_id: str,
    table: str,
    backup_schema: str | None,
    settings: CopySettings,
) -> str | None:
    """Swap run *run_id*'s old table of *table* back (``sql.online_copy``, step 6): one
    ``RENAME TABLE``, under the cut-over's short lock wait and its retries, while *guard* (a
    second connection) holds the record's row. None once swapped (also when it had been,
    by a process killed before it tidied), or why it cannot be (nothing was touched)."""
    cur = _Cursor(dbapi)
    names = oc.names_for(backup_prefix, run_id, _split(table)[1])
    revert, old = _in(backup_schema, names.revert), _in(backup_schema, names.old)
    if cur.exists(names.swapped) or _exists_in(cur, backup_schema, names.swapped):
        # Swapped by a process that died before it tidied (or before it said so).
        if _exists_in(cur, backup_schema, names.revert):
            cur.run(f"UPDATE {revert} SET swapped = 1 WHERE id = 1")
            cur.commit()
        _after_swap(cur, names, backup_schema)
        return None
    if not _exists_in(cur, backup_schema, names.revert):
        return "no swap-back was kept (copy_swap_back was off, or the backups were purged)"
    record = cur.rows(f"SELECT definition, diverged, swapped FROM {revert} WHERE id = 1")
    cur.commit()
    if record and record[0][2]:
        _after_swap(cur, names, backup_schema)
        return None
    check = _Cursor(guard)

    def refused(diverged: int) -> str | None:
        return oc.swap_refusal(
            diverged=diverged,
            triggers_there=set(names.back_triggers) <= set(cur.triggers(names.table)),
            same_definition=bool(record) and _definition(cur, names.table) == str(record[0][0]),
            old_there=_exists_in(cur, backup_schema, names.old),
        )

    why = refused(int(record[0][1]) if record else 0)
    if why is not None:
        return _spent(cur, names, why)
    wait = cur.rows("SELECT @@SESSION.lock_wait_timeout")[0][0]
    rename = f"RENAME TABLE {_q(names.table)} TO {_q(names.swapped)}, {old} TO {_q(names.table)}"
    try:
        for attempt in range(1, settings.cutover_tries + 1):
            # A write that would mark the record now waits for its row, holding the
            # table's lock: the RENAME cannot pass it, and gives up after its short wait.
            held = check.rows(f"SELECT diverged FROM {revert} WHERE id = 1 FOR UPDATE")
            diverged = int(held[0][0]) if held else 0
            if diverged:
                check.rollback()
                return _spent(cur, names, refused(diverged) or "")
            cur.run(f"SET SESSION lock_wait_timeout = {int(settings.cutover_wait)}")
            try:
                cur.run(rename)
                break
            except Exception as exc:
                check.rollback()
                if _code(exc) != _LOCK_WAIT or attempt == settings.cutover_tries:
                    raise
                time.sleep(lock_retry_pause(attempt, settings.backoff, random.random()))
        check.rollback()
    finally:
        _quietly(check.rollback)
        cur.run(f"SET SESSION lock_wait_timeout = {int(wait)}")
    cur.run(f"UPDATE {revert} SET swapped = 1 WHERE id = 1")
    cur.commit()
    _after_swap(cur, names, backup_schema)
    return None


def _spent(cur: _Cursor, names: oc.CopyNames, why: str) -> str:
    """A swap-back refused for *why*: its triggers dropped (the step is undone another way,
    and nothing should go on writing the old table, nor be taken for the table's own by the
    undo's pre-images); *why*."""
    for name in names.back_triggers:
        _ddl(cur, f"DROP TRIGGER IF EXISTS {_q(name)}", CopySettings())
    cur.commit()
    return why


def _after_swap(cur: _Cursor, names: oc.CopyNames, backup_schema: str | None) -> None:
    """The table of the new definition, swapped out: its triggers dropped (a table with
    triggers cannot move to another database), then moved among the backups."""
    for name in names.back_triggers:
        cur.run(f"DROP TRIGGER IF EXISTS {_q(name)}")
    elsewhere = backup_schema is not None and backup_schema != cur.rows("SELECT DATABASE()")[0][0]
    if elsewhere and cur.exists(names.swapped):
        cur.run(f"RENAME TABLE {_q(names.swapped)} TO {_in(backup_schema, names.swapped)}")


def copy_online(
    dbapi: Any,
    statement: str,
    table: str,
    *,
    run_id: str,
    backup_prefix: str,
    backup_schema: str | None,
    settings: CopySettings,
    report: Callable[[Mapping[str, Any]], None],
    stopped: Callable[[], str | None],
    required: bool,
) -> None:
    """Run *statement* (an ``ALTER TABLE`` of *table*, as written) by an online copy on the
    driver connection *dbapi*, resuming the run's earlier copy from its checkpoint.

    Raises :class:`NotCopyable` when the statement or the table cannot be copied exactly
    (nothing was changed: the caller sends the statement as written, or refuses), and
    :class:`CopyFailed` (or the driver's error) when it fails: then what it made is dropped
    and the original table is as it was; on a lost connection nothing can be dropped, and
    :func:`settle` does it when the run is recovered."""
    schema, name = _split(table)
    cur = _Cursor(dbapi)
    if schema is not None and schema != cur.rows("SELECT DATABASE()")[0][0]:
        raise NotCopyable(f"{table} is in another database than the connection's")
    copy = _Copy(
        cur=cur,
        statement=statement,
        table=name,
        names=oc.names_for(backup_prefix, run_id, name),
        settings=settings,
        report=report,
        stopped=stopped,
        backup_schema=backup_schema,
        required=required,
    )
    level = _isolation_now(cur)
    # Committed reads: each chunk reads the rows as committed when it begins, and the
    # switch's shared locks take no gap locks (see sql.online_copy).
    cur.run("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    try:
        copy.run()
    except Exception as exc:
        # Until the copy made its checkpoint, the step's own transaction is open on this
        # connection (the journal's intent for this statement is in it): it is left alone.
        # From then on the copy's DDL committed it, and what the copy made is dropped.
        if copy.created and not _lost(exc):
            _quietly(cur.rollback)
            _quietly(copy.discard)
        raise
    finally:
        _quietly(lambda: _isolation(cur, str(level)))


def _isolation_now(cur: _Cursor) -> str:
    try:
        return str(cur.rows("SELECT @@SESSION.tx_isolation")[0][0])  # MariaDB, MySQL 5.7
    except Exception:
        return str(cur.rows("SELECT @@SESSION.transaction_isolation")[0][0])  # MySQL 8


def _isolation(cur: _Cursor, level: str) -> None:
    cur.run(f"SET SESSION TRANSACTION ISOLATION LEVEL {level.replace('-', ' ')}")


def _quietly(action: Callable[[], None]) -> None:
    """*action*, its failure ignored: the failure being raised says more than this one."""
    with contextlib.suppress(Exception):
        action()


def _lost(error: BaseException) -> bool:
    """Whether *error* says the connection is gone (MySQL client errors 2006, 2013, 2055)."""
    return _code(error) in (2006, 2013, 2055) or "InterfaceError" in type(error).__name__


def state(dbapi: Any, backup_prefix: str, run_id: str, table: str) -> str | None:
    """Where run *run_id*'s copy of *table* stands: None (no copy), ``copying`` (not cut over:
    the original is untouched) or ``cut over`` (the table has its new definition)."""
    cur = _Cursor(dbapi)
    names = oc.names_for(backup_prefix, run_id, _split(table)[1])
    if not cur.exists(names.checkpoint):
        return None
    return _where(cur, names)


def _where(cur: _Cursor, names: oc.CopyNames) -> str:
    """``copying`` or ``cut over``: see :func:`state` (the checkpoint exists)."""
    phase, old = external_phase(cur, names)
    if phase == pt.PHASE:  # the tool's old table, not yet renamed among the backups
        cut = not cur.exists(names.shadow) and old is not None and cur.exists(old)
        return "cut over" if cut else "copying"
    return "copying" if cur.exists(names.shadow) or not cur.exists(names.old) else "cut over"


def external_phase(cur: _Cursor, names: oc.CopyNames) -> tuple[str | None, str | None]:
    """The checkpoint's phase, and the old table's name an external executor gives it (None
    for lupo_migrate's own copy, and in a checkpoint made before the column was)."""
    try:
        rows = cur.rows(f"SELECT phase, old_table FROM {_q(names.checkpoint)} WHERE id = 1")
    except Exception as exc:
        if _code(exc) != _NO_COLUMN:
            raise
        rows = [(r[0], None) for r in cur.rows(f"SELECT phase FROM {_q(names.checkpoint)}")]
    cur.commit()
    if not rows:
        return None, None
    phase, old = rows[0]
    return (None if phase is None else str(phase)), (None if old is None else str(old))


def finish_external(
    cur: _Cursor, names: oc.CopyNames, old: str | None, backup_schema: str | None
) -> None:
    """After an external executor's cut-over: its triggers dropped (they may be left on the
    old table, writing into the new one), its old table renamed as the run's, then as
    :func:`finish`."""
    database = str(cur.rows("SELECT DATABASE()")[0][0])
    for name in pt.triggers(database, names.table):
        cur.run(f"DROP TRIGGER IF EXISTS {_q(name)}")
    if old is not None and cur.exists(old) and not cur.exists(names.old):
        cur.run(f"RENAME TABLE {_q(old)} TO {_q(names.old)}")
    finish(cur, names, backup_schema)


def discard_own(cur: _Cursor, names: oc.CopyNames, statement: str) -> None:
    """Drop what lupo_migrate's own copy of *statement* made (see ``_Copy.discard``)."""
    _Copy(
        cur=cur,
        statement=statement,
        table=names.table,
        names=names,
        settings=CopySettings(),
        report=lambda _data: None,
        stopped=lambda: None,
        backup_schema=None,
        required=True,
    ).discard()


def discard_external(cur: _Cursor, names: oc.CopyNames) -> None:
    """Drop what an external executor's copy left before its cut-over, triggers first; the
    original table is not touched."""
    database = str(cur.rows("SELECT DATABASE()")[0][0])
    for name in pt.triggers(database, names.table):
        cur.run(f"DROP TRIGGER IF EXISTS {_q(name)}")
    for table in (names.shadow, names.checkpoint):
        cur.run(f"DROP TABLE IF EXISTS {_q(table)}")


def settle(
    dbapi: Any, backup_prefix: str, run_id: str, backup_schema: str | None, *, keep: bool
) -> list[str]:
    """What run *run_id*'s copies left, settled: a copy that had cut over is finished; one
    that had not is dropped (the original is untouched), or left to be resumed (*keep*).
    The tables settled."""
    cur = _Cursor(dbapi)
    done = []
    for copy in underway(dbapi, backup_prefix, run_id):
        names = oc.names_for(backup_prefix, run_id, copy.table)
        if names.checkpoint != copy.checkpoint:  # pragma: no cover - another table's name
            continue
        where = _where(cur, names)
        phase, old = external_phase(cur, names)
        if phase == pt.PHASE:
            if where == "cut over":
                finish_external(cur, names, old, backup_schema)
            elif not keep:
                discard_external(cur, names)
            else:
                continue  # not resumable: the step, run again, discards it and begins anew
        elif where == "cut over":
            finish(cur, names, backup_schema)
        elif not keep:
            discard_own(cur, names, copy.statement)
        else:
            continue
        done.append(names.table)
    return done


@attrs.frozen
class Underway:
    """An online copy under way (or left by a run that died), from its checkpoint."""

    run: str  # the first 12 characters of the run's id
    table: str
    phase: str
    copied: int
    estimated: int
    paused: bool
    postponed: bool
    most_threads: int | None
    chunk_time: float | None
    checkpoint: str
    statement: str


def underway(dbapi: Any, backup_prefix: str, run_id: str | None = None) -> list[Underway]:
    """The online copies whose checkpoints are in the connection's database (of run
    *run_id* only, when given)."""
    cur = _Cursor(dbapi)
    found = []
    run = "%" if run_id is None else run_id[:12].replace("_", "\\_")
    pattern = backup_prefix.replace("_", "\\_") + run + "\\_chk\\_%"
    for (name,) in cur.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME LIKE %s ORDER BY TABLE_NAME",
        pattern,
    ):
        rows = cur.rows(
            f"SELECT statement, phase, copied, estimated, paused, postponed, most_threads,"
            f" chunk_time FROM {_q(str(name))} WHERE id = 1"
        )
        written = table_of(str(rows[0][0])) if rows else None
        if not rows or written is None:
            continue
        statement, phase, copied, estimated, paused, postponed, most, chunk = rows[0]
        found.append(
            Underway(
                run=str(name)[len(backup_prefix) : len(backup_prefix) + 12],
                table=_split(written)[1],
                phase=str(phase),
                copied=int(copied),
                estimated=int(estimated),
                paused=bool(paused),
                postponed=bool(postponed),
                most_threads=None if most is None else int(most),
                chunk_time=None if chunk is None else float(chunk),
                checkpoint=str(name),
                statement=str(statement),
            )
        )
    cur.commit()
    return found


def set_control(dbapi: Any, checkpoint: str, **values: Any) -> None:
    """Set the operator's controls of the copy whose checkpoint table is *checkpoint*
    (``paused``, ``postponed``, ``most_threads``, ``chunk_time``); the copy reads them
    before each chunk, and before its cut-over."""
    allowed = {"paused", "postponed", "most_threads", "chunk_time"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown controls: {', '.join(sorted(unknown))}")
    cur = _Cursor(dbapi)
    sets = ", ".join(f"{name} = %s" for name in values)
    cur.run(f"UPDATE {_q(checkpoint)} SET {sets} WHERE id = 1", *values.values())
    cur.commit()
