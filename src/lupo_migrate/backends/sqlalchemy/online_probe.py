"""Which algorithm each MySQL/MariaDB ``ALTER TABLE`` / ``CREATE INDEX`` of a plan will run
with, found out before the run (``apply --dry-run``) by trying it on an empty copy.

For each statement :func:`lupo_migrate.sql.online.attempts` chooses for, the table it changes
is copied empty (``CREATE TABLE ... LIKE``: same columns, indexes, engine and row format) into
lupo_migrate's own schema, the statement is run on the copy with each clause in turn, most
online first, and the first the server accepts is the answer; the copy is dropped. The
server's answer does not depend on the rows, so the empty copy answers for the real table,
and nothing of the application's is touched. A table the plan creates first, or a target
without lupo_migrate's schema yet (nothing is created for a dry run), is answered when the
run gets there.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._driver import raw
from lupo_migrate.backends.sqlalchemy.online_copy import refusal
from lupo_migrate.sql.online import (
    AS_WRITTEN,
    COPY,
    INPLACE,
    INSTANT,
    REFUSED,
    attempts,
    retarget,
    table_of,
)
from lupo_migrate.sql.touches import touches

__all__ = ["SAID", "probe_strategies"]

#: What each strategy means to the person reading the plan.
SAID: Final = {
    INSTANT: "instant: ALGORITHM=INSTANT, a change of metadata only",
    INPLACE: "inplace: ALGORITHM=INPLACE, LOCK=NONE, writes go on while it runs",
    AS_WRITTEN: "as written: the server cannot run it without blocking writes (it may copy"
    " the table)",
    COPY: "copy: an online copy (a shadow table kept up to date by triggers, filled in"
    " chunks, then swapped in by RENAME); writes go on while it runs",
}


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _exists(conn: sa.Connection, schema: str | None, table: str) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM information_schema.tables"
                " WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
            ),
            {"schema": schema, "name": table},
        ).scalar()
    )


def probe_strategies(
    engine: sa.Engine,
    statements: Sequence[tuple[str, str]],
    *,
    scratch: str,
    least_rows: int = 10_000,
) -> list[str | None]:
    """For each of *statements* (the statement, and the ``online`` mode its file runs
    with): what it will run with (a line for the plan), or None when nothing is chosen for
    it (see :mod:`lupo_migrate.sql.online`). *scratch*: lupo_migrate's
    own schema, where the empty copies are made (when it does not exist, every answer is
    "when it runs"). One copy per table serves all the statements that change it, in order,
    so a statement is tried on the table as the ones before it left it. An online copy
    is said where the table, as it is now, can be copied (*least_rows*: the fewest rows
    ``auto`` copies a table for)."""
    out: list[str | None] = []
    copies: dict[tuple[str | None, str], str | None] = {}  # None: that copy is unusable
    with engine.connect() as conn:
        ready = bool(
            conn.execute(
                sa.text("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": scratch},
            ).scalar()
        )
        try:
            for statement, mode in statements:
                tries = attempts(statement, "mysql", mode)
                written = table_of(statement)
                key = _table(statement)
                if not tries or written is None or key is None:
                    kept = copies.get(key) if key is not None else None
                    if kept is not None:  # it names its own algorithm: run on the copy too
                        said, usable = _try(
                            conn, ((AS_WRITTEN, statement),), kept, least_rows, mode
                        )
                        if not usable:
                            copies[key] = None  # type: ignore[index]
                            raw(conn, f"DROP TABLE IF EXISTS {kept}")
                    out.append(None)
                    continue
                if not ready:
                    out.append(f"checked when it runs (no {scratch} schema to try it in yet)")
                    continue
                if key not in copies:
                    copies[key] = _copy(conn, key, scratch)
                copy = copies[key]
                if copy is None:
                    out.append(f"checked when it runs ({written} does not exist yet)")
                    continue
                said, usable = _try(conn, tries, copy, least_rows, mode)
                if not usable:
                    copies[key] = None
                    raw(conn, f"DROP TABLE IF EXISTS {copy}")
                out.append(said)
        finally:
            for copy in copies.values():
                if copy is not None:
                    raw(conn, f"DROP TABLE IF EXISTS {copy}")
    return out


def _table(statement: str) -> tuple[str | None, str] | None:
    """(schema, table) the statement alters or indexes, unquoted."""
    found = [t for t in touches(statement, dialect="mysql") if t.kind == "table"]
    return (found[0].schema, found[0].name) if found else None


def _copy(conn: sa.Connection, key: tuple[str | None, str], scratch: str) -> str | None:
    """An empty copy of the table *key* in *scratch*; None when the table does not exist."""
    schema, table = key
    if not _exists(conn, schema, table):
        return None
    copy = f"{_quote(scratch)}.{_quote('lupo_probe_' + uuid.uuid4().hex[:12])}"
    source = f"{_quote(schema)}.{_quote(table)}" if schema else _quote(table)
    raw(conn, f"CREATE TABLE {copy} LIKE {source}")
    return copy


def _try(
    conn: sa.Connection,
    tries: Sequence[tuple[str, str]],
    copy: str,
    least_rows: int,
    mode: str,
) -> tuple[str, bool]:
    """The line for the first of *tries* the server accepts on *copy* (which it then holds),
    and whether *copy* is still like the table (False after an error other than a refusal:
    the statements after it are not tried on it). An online copy is judged on the real
    table (the statement still runs on *copy*, to keep it like the table)."""
    why = ""
    for number, (strategy, text) in enumerate(tries, 1):
        if strategy == COPY:
            dbapi = conn.connection.dbapi_connection
            why = refusal(dbapi, text, least_rows=least_rows, required=mode == COPY) or ""
            if why and number < len(tries):
                continue
            if why:
                return f"refused: online: copy cannot copy this table exactly: {why}", True
        probe = retarget(text, copy)
        assert probe is not None
        try:
            raw(conn, probe)
        except conn.dialect.loaded_dbapi.Error as error:
            args = getattr(error, "args", None) or (None,)
            if args[0] in REFUSED:
                continue
            return f"could not be tried on an empty copy ({args[-1]}); decided when it runs", False
        said = SAID[strategy]
        return (f"{said} (no online copy: {why})" if why else said), True
    return "refused: the server cannot run it as online as the online setting requires", True
