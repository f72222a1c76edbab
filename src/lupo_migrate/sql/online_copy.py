"""An online copy on MySQL/MariaDB: an ``ALTER TABLE`` the server can only do by copying the
table (and blocking writes while it does) done instead on a shadow table, while the
application keeps writing (functional core: what to send and when; the shell is
``backends/sqlalchemy/online_copy``).

How it goes, each part restartable (see the shell for the order and for recovery):

1. A *checkpoint* table (one row: the statement's digest, the last key copied, the rows
   copied, the operator's controls) and a *shadow* table (``CREATE TABLE ... LIKE`` the
   original, then the ``ALTER`` applied to the empty shadow, where it takes no time).
2. Three triggers on the original note the key of every row the application writes in a
   *change log* table (after an insert, an update (old and new key) and a delete), in the
   application's own transaction. They write nothing else: the application's writes never
   wait for the copy, and the copy never waits for them.
3. The rows there before the triggers are copied in chunks by primary key (plain reads, no
   row locks), each chunk and the checkpoint's new position in one transaction: killed at
   any moment, the copy resumes after the last chunk that committed, and no row is copied
   twice. After each chunk the change log is applied: for each key noted, the shadow's row
   is made the original's row as it is now (or removed), and the entries are deleted, in
   one transaction. A change committed after a chunk read its row is noted, so it is
   applied after that chunk: the shadow converges. Chunks are sized so each takes about a
   target time (:func:`next_chunk`), and the copy waits while the server is busy
   (:func:`throttled`). A clash on a unique key other than the primary (rows of different
   moments side by side) is retried after the log is applied; a clash that stays fails the
   copy, as it fails the plain ``ALTER`` (never a silently dropped row: :func:`chunk_sql`).
4. The switch: three more triggers write the application's changes straight into the
   shadow, the log's triggers are dropped, and what the log still holds is applied with
   the original's rows read under a shared lock (a change racing with it waits, then
   writes the shadow itself). Both tables are then the same, and stay so.
5. The cut-over: one ``RENAME TABLE original TO old, shadow TO original``, atomic, under a
   short lock wait, retried with a growing pause when the wait runs out; then the triggers
   are dropped and the old table is kept as the run's backup (dropped with its other
   backups when its decision window closes).

6. The swap-back (``copy_swap_back``, off by default): at the switch, the shadow gets
   triggers of its own that note keys in a second log (a cascade: the application's write
   to the original writes the shadow, which notes the key). After the cut-over the old table
   is moved among the backups, and three triggers on the table (the shadow until then)
   write each change into the old table as well, converted to the old definition, under a
   strict ``sql_mode`` and a handler: a change the old table cannot take (a value beyond its
   type, a clash on a unique key the alteration dropped) never fails the application's
   write, it marks the swap-back spent instead. The second log is applied to the old table
   (the keys noted between the ``RENAME`` and those triggers), then dropped. Rolling the step
   back within the decision window is then one ``RENAME TABLE`` swapping the tables again:
   the old definition, the rows as they were, and every row written since. It is refused
   (and the rollback copies as before) when the mark is set, when the triggers are gone or
   the table's definition changed since (a later run altered it), or when the old table is
   gone. While it swaps, a second connection holds the mark's row, so that a write that
   would set it keeps the table's lock and the swap waits for it, then sees the mark.

Why a change log rather than triggers writing the shadow from the start (as
pt-online-schema-change does): an ``INSERT ... SELECT`` into a table with an
``AUTO_INCREMENT`` column holds a table lock for its whole length on MariaDB by default
(``innodb_autoinc_lock_mode`` 1), so every application insert through such a trigger waited
for each chunk, and a row changed inside the chunk deadlocked the two (measured: deadlock
errors, 1213, in the writer of ``tests/test_online_copy.py``). The change log keeps the
application's writes and the copy apart until the switch, which is short.

All the names the copy creates start with the run's backup prefix (``lupo_bk_<run>_``): the
fingerprints and checks leave them out, as they leave out backups.

A statement is copied only when that gives the plain ``ALTER``'s result exactly: refused
(:func:`statement_refusal`, :func:`table_refusal`) for column renames, a new unique or
primary key, foreign keys on or to the table, triggers of the table's own (they would stay on
the old table), no primary key, or a new ``NOT NULL`` column with no default.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Final

import attrs

__all__ = [
    "CLASH",
    "SEQ",
    "STRICT",
    "ColumnFacts",
    "CopyNames",
    "TableFacts",
    "apply_sql",
    "back_trigger_sql",
    "back_write_sql",
    "chunk_bound_sql",
    "chunk_sql",
    "copy_columns",
    "definition",
    "digest",
    "eta",
    "key_in",
    "locked_rows_sql",
    "log_table_sql",
    "log_trigger_sql",
    "names_for",
    "next_chunk",
    "statement_refusal",
    "swap_refusal",
    "table_refusal",
    "throttled",
    "trigger_sql",
    "write_chunk_sql",
]

#: MySQL/MariaDB's longest identifier.
_LONGEST: Final = 64
#: The first rows a copy moves in one chunk, and the bounds of later chunk sizes.
FIRST_CHUNK: Final = 1000
LEAST_CHUNK: Final = 100
MOST_CHUNK: Final = 100_000


def digest(statement: str) -> str:
    """A short digest of *statement*: the checkpoint holds it, so a copy is resumed only by
    the statement that began it."""
    return hashlib.sha256(statement.encode()).hexdigest()[:32]


@attrs.frozen
class CopyNames:
    """The names an online copy of one table creates (unquoted)."""

    table: str
    shadow: str
    old: str
    checkpoint: str
    log: str
    triggers: tuple[str, str, str]  # the log's: after insert, update, delete
    sync_triggers: tuple[str, str, str]  # the shadow's, from the switch on
    back_log: str = ""  # the swap-back's log, of the keys written from the switch on
    back_log_triggers: tuple[str, str, str] = ("", "", "")  # on the shadow, into back_log
    back_triggers: tuple[str, str, str] = ("", "", "")  # on the table, into the old one
    revert: str = ""  # the swap-back's record (in the backup schema)
    swapped: str = ""  # the table with the new definition, once swapped back
    backup_prefix: str = ""  # the backup prefix the names begin with
    base: str = ""  # the backup prefix and the run's 12 characters: every name's beginning


def _name(prefix: str, table: str) -> str:
    name = prefix + table
    if len(name) <= _LONGEST:
        return name
    tail = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{name[: _LONGEST - 9]}_{tail}"


def names_for(backup_prefix: str, run_id: str, table: str) -> CopyNames:
    """The names of run *run_id*'s online copy of *table* (unquoted).

    >>> names_for("lupo_bk_", "0123456789abcdef", "t").shadow
    'lupo_bk_0123456789ab_new_t'
    """
    base = f"{backup_prefix}{run_id[:12]}_"
    return CopyNames(
        table=table,
        shadow=_name(f"{base}new_", table),
        old=_name(f"{base}old_", table),
        checkpoint=_name(f"{base}chk_", table),
        log=_name(f"{base}log_", table),
        triggers=(
            _name(f"{base}ins_", table),
            _name(f"{base}upd_", table),
            _name(f"{base}del_", table),
        ),
        sync_triggers=(
            _name(f"{base}sin_", table),
            _name(f"{base}sup_", table),
            _name(f"{base}sde_", table),
        ),
        back_log=_name(f"{base}blg_", table),
        back_log_triggers=(
            _name(f"{base}bli_", table),
            _name(f"{base}blu_", table),
            _name(f"{base}bld_", table),
        ),
        back_triggers=(
            _name(f"{base}bin_", table),
            _name(f"{base}bup_", table),
            _name(f"{base}bde_", table),
        ),
        revert=_name(f"{base}rev_", table),
        swapped=_name(f"{base}swp_", table),
        backup_prefix=backup_prefix,
        base=base,
    )


#: The change log's own column (the key's columns follow).
SEQ: Final = "lupo_seq"


def log_table_sql(names: CopyNames, table: str, key: Sequence[str], *, back: bool = False) -> str:
    """The change log: a sequence number (``UUID_SHORT()``: unique, and no
    ``AUTO_INCREMENT`` lock for the application's inserts to queue on) and the key's
    columns, typed as the original's (*back*: the swap-back's log)."""
    log = names.back_log if back else names.log
    return (
        f"CREATE TABLE {_q(log)} ({_q(SEQ)} BIGINT UNSIGNED NOT NULL DEFAULT 0"
        " PRIMARY KEY)"
        f" ENGINE=InnoDB SELECT {_list(key)} FROM {table} WHERE 1 = 0"
    )


def log_trigger_sql(
    names: CopyNames, table: str, key: Sequence[str], *, back: bool = False
) -> tuple[str, str, str]:
    """The three triggers that note in the change log the key of each row the application
    writes to *table* (quoted): after insert (the new key), update (the old and the new),
    delete (the old). *back*: the swap-back's, on the shadow, into its own log."""
    log = _q(names.back_log if back else names.log)
    cols = f"{_q(SEQ)}, {_list(key)}"
    new = f"(UUID_SHORT(), {_list(key, 'NEW.')})"
    old = f"(UUID_SHORT(), {_list(key, 'OLD.')})"
    ins, upd, dele = (_q(n) for n in (names.back_log_triggers if back else names.triggers))
    return (
        f"CREATE TRIGGER {ins} AFTER INSERT ON {table} FOR EACH ROW"
        f" INSERT INTO {log} ({cols}) VALUES {new}",
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {table} FOR EACH ROW"
        f" INSERT INTO {log} ({cols}) VALUES {old}, {new}",
        f"CREATE TRIGGER {dele} AFTER DELETE ON {table} FOR EACH ROW"
        f" INSERT INTO {log} ({cols}) VALUES {old}",
    )


def key_in(key: Sequence[str], count: int, prefix: str = "") -> str:
    """``key IN (%s, ...)`` for *count* keys (a row constructor for a composite key)."""
    if count < 1:
        raise ValueError("no keys")
    if len(key) == 1:
        return f"{prefix}{_q(key[0])} IN ({', '.join('%s' for _ in range(count))})"
    one = "(" + ", ".join("%s" for _ in key) + ")"
    return f"({_list(key, prefix)}) IN ({', '.join(one for _ in range(count))})"


def apply_sql(
    names: CopyNames, table: str, columns: Sequence[str], key: Sequence[str], count: int
) -> tuple[str, str]:
    """Applying *count* keys of the change log (before the switch): the shadow's rows of
    those keys deleted, then the original's rows of them, as they are now, inserted (the
    keys are the parameters of each)."""
    cols = _list(columns)
    return (
        f"DELETE FROM {_q(names.shadow)} WHERE {key_in(key, count)}",
        f"INSERT INTO {_q(names.shadow)} ({cols}) SELECT {_list(columns, 'src.')} FROM"
        f" {table} AS src WHERE {key_in(key, count, 'src.')} {_keep_newer(names, key)}",
    )


#: What an online copy cannot reproduce exactly, found in the statement's text (after the
#: table's name): (pattern, why).
_REFUSED_TEXT: Final = (
    (r"\b(?:change|rename)\s+(?:column\s+)?(?!to\b|as\b)", "it renames a column"),
    (r"\brename\s+(?:to|as)\b", "it renames the table"),
    (
        r"\badd\s+(?:constraint\s+(?:`[^`]*`|\w+)\s+)?(?:unique|primary)\b",
        "it adds a unique or primary key (rows written meanwhile could clash with it)",
    ),
    (
        r"\Acreate\s+(?:or\s+replace\s+)?unique\b",
        "it adds a unique key (rows written meanwhile could clash with it)",
    ),
    (r"\bdrop\s+primary\s+key\b", "it drops the primary key the copy goes by"),
    (r"\bforeign\s+key\b", "it adds a foreign key"),
    (r"\bpartition", "it works on partitions"),
    (r"\b(?:discard|import)\s+tablespace\b", "it works on the tablespace"),
)
_REFUSED: Final = tuple((re.compile(p, re.IGNORECASE), why) for p, why in _REFUSED_TEXT)


def statement_refusal(rest: str) -> str | None:
    """Why the alteration *rest* (the statement after its table's name) cannot be done by
    an online copy, or None.

    >>> statement_refusal("MODIFY amount BIGINT NOT NULL") is None
    True
    >>> statement_refusal("CHANGE a b INT")
    'it renames a column'
    >>> statement_refusal("ADD UNIQUE KEY u (k)")
    'it adds a unique or primary key (rows written meanwhile could clash with it)'
    """
    rest = rest.strip()
    for pattern, why in _REFUSED:
        if pattern.search(rest):
            return why
    return None


@attrs.frozen
class ColumnFacts:
    """A column, as the catalog tells it."""

    name: str
    nullable: bool
    has_default: bool
    generated: bool
    auto_increment: bool = False


@attrs.frozen
class TableFacts:
    """What decides whether a table can be copied online."""

    columns: tuple[ColumnFacts, ...]
    key: tuple[str, ...]  # the primary key's columns, in order; empty: none
    referenced_by: tuple[str, ...] = ()  # tables whose foreign keys refer to it
    foreign_keys: tuple[str, ...] = ()  # its own foreign keys
    triggers: tuple[str, ...] = ()  # its own triggers
    engine: str = "InnoDB"


def table_refusal(facts: TableFacts) -> str | None:
    """Why the table *facts* describe cannot be copied online, or None."""
    if facts.engine.lower() != "innodb":
        return (
            f"its engine is {facts.engine}, not InnoDB (a chunk and its checkpoint must"
            " commit together)"
        )
    if not facts.key:
        return "it has no primary key to copy it by"
    if facts.referenced_by:
        return f"foreign keys of {', '.join(facts.referenced_by)} refer to it"
    if facts.foreign_keys:
        return f"it has foreign keys ({', '.join(facts.foreign_keys)})"
    if facts.triggers:
        return f"it has triggers ({', '.join(facts.triggers)}), which would stay on the old table"
    return None


def copy_columns(
    before: Sequence[ColumnFacts], after: Sequence[ColumnFacts], key: Sequence[str]
) -> tuple[tuple[str, ...], str | None]:
    """The columns copied from the original (*before*) to the shadow (*after*): those of
    both that are not generated; and why the copy cannot be exact, or None (a key column
    dropped, a new ``NOT NULL`` column without a default, which the plain ``ALTER`` fills
    with its type's zero and an ``INSERT`` refuses).

    >>> a = ColumnFacts("a", False, False, False)
    >>> b = ColumnFacts("b", True, True, False)
    >>> copy_columns([a, b], [a], ["a"])
    (('a',), None)
    >>> copy_columns([a], [a, ColumnFacts("c", False, False, False)], ["a"])[1]
    'it adds c NOT NULL without a default'
    """
    old = {c.name.lower(): c for c in before}
    new = {c.name.lower(): c for c in after}
    for name in key:
        if name.lower() not in new:
            return (), f"it drops {name}, a column of the primary key"
    for column in after:
        fresh = column.name.lower() not in old
        filled = column.nullable or column.has_default or column.generated
        if fresh and not (filled or column.auto_increment):
            return (), f"it adds {column.name} NOT NULL without a default"
    columns = tuple(
        c.name
        for c in before
        if c.name.lower() in new and not c.generated and not new[c.name.lower()].generated
    )
    missing = [k for k in key if k.lower() not in {c.lower() for c in columns}]
    if missing:
        return (), f"{missing[0]}, a column of the primary key, is generated"
    return columns, None


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _list(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + _q(n) for n in names)


def trigger_sql(
    names: CopyNames, table: str, columns: Sequence[str], key: Sequence[str]
) -> tuple[str, str, str]:
    """The three triggers that carry the application's writes to *table* (quoted) straight
    into the shadow, from the switch on: after insert, update, delete."""
    shadow = _q(names.shadow)
    cols = _list(columns)
    new = _list(columns, "NEW.")
    same = " AND ".join(f"{shadow}.{_q(k)} <=> OLD.{_q(k)}" for k in key)
    moved = " OR ".join(f"NOT (OLD.{_q(k)} <=> NEW.{_q(k)})" for k in key)
    replace = f"REPLACE INTO {shadow} ({cols}) VALUES ({new})"
    ins, upd, dele = (_q(n) for n in names.sync_triggers)
    return (
        f"CREATE TRIGGER {ins} AFTER INSERT ON {table} FOR EACH ROW {replace}",
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {table} FOR EACH ROW BEGIN"
        f" DELETE FROM {shadow} WHERE ({moved}) AND {same}; {replace}; END",
        f"CREATE TRIGGER {dele} AFTER DELETE ON {table} FOR EACH ROW"
        f" DELETE FROM {shadow} WHERE {same}",
    )


def _compare(key: Sequence[str], before: str, last: str) -> str:
    """``(k1, k2) op (%s, %s)`` spelt out so that the primary key's index serves it: each
    column before the last compared with *before* (``>`` or ``<``) once those before it are
    equal, the last with *last*."""
    parts = []
    for i, k in enumerate(key):
        equal = [f"{_q(e)} = %s" for e in key[:i]]
        here = f"{_q(k)} {last if i == len(key) - 1 else before} %s"
        parts.append("(" + " AND ".join([*equal, here]) + ")")
    return "(" + " OR ".join(parts) + ")"


def _after(key: Sequence[str]) -> str:
    """``(k1, k2) > (%s, %s)``, spelt out."""
    return _compare(key, ">", ">")


def _upto(key: Sequence[str]) -> str:
    """``(k1, k2) <= (%s, %s)``, spelt out."""
    return _compare(key, "<", "<=")


def after_params(key: Sequence[str], last: Sequence[object]) -> list[object]:
    """The parameters of :func:`_after`'s condition for the position *last*."""
    return [v for i in range(len(key)) for v in last[: i + 1]]


def chunk_bound_sql(table: str, key: Sequence[str], first: bool) -> str:
    """The query for the last key of the next chunk: the key *size* rows on (``LIMIT``
    takes the offset as its one parameter after the position's); *first*: from the start."""
    cols = _list(key)
    where = "" if first else f" WHERE {_after(key)}"
    return f"SELECT {cols} FROM {table} FORCE INDEX (PRIMARY){where} ORDER BY {cols} LIMIT %s, 1"


def chunk_sql(
    names: CopyNames, table: str, columns: Sequence[str], key: Sequence[str], first: bool
) -> str:
    """Copy the rows after the position (unless *first*) up to a bound, both as parameters,
    into the shadow, read as they were when the statement began (no row lock: a change
    committed since is in the change log, applied after the chunk). A row already in the
    shadow (applied from the log) is left as it is; a clash on another unique key fails
    (:data:`CLASH`, see :data:`_FAIL`), as the plain ``ALTER`` would, rather than drop a
    row or change its key."""
    cols = _list(columns)
    where = _upto(key) if first else f"{_after(key)} AND {_upto(key)}"
    return (
        f"INSERT INTO {_q(names.shadow)} ({cols}) SELECT {_list(columns, 'src.')} FROM"
        f" {table} AS src FORCE INDEX (PRIMARY) WHERE {where} {_keep_newer(names, key)}"
    )


#: What a clash on another unique key sets the key to: a subquery of two rows, which fails
#: (:data:`CLASH`). Not NULL: MariaDB sets an ``AUTO_INCREMENT`` key updated to NULL to 0,
#: with no error and no warning (measured), which took the row's key away silently.
_FAIL: Final = "(SELECT 1 UNION ALL SELECT 2)"
#: ER_SUBQUERY_NO_1_ROW: the error :data:`_FAIL` raises, a clash on another unique key.
CLASH: Final = 1242


def _keep_newer(names: CopyNames, key: Sequence[str]) -> str:
    """The clause that leaves a row already in the shadow as it is, and fails on a clash on
    another unique key (see :func:`chunk_sql`)."""
    shadow = _q(names.shadow)
    same = " AND ".join(f"{shadow}.{_q(k)} <=> VALUES({_q(k)})" for k in key)
    keep = ", ".join(f"{shadow}.{_q(k)} = IF({same}, {shadow}.{_q(k)}, {_FAIL})" for k in key)
    return f"ON DUPLICATE KEY UPDATE {keep}"


def locked_rows_sql(table: str, columns: Sequence[str], key: Sequence[str], count: int) -> str:
    """The original's rows of *count* keys, read under a shared lock (after the switch: a
    change racing with the read waits for it, then writes the shadow itself)."""
    return f"SELECT {_list(columns)} FROM {table} WHERE {key_in(key, count)} LOCK IN SHARE MODE"


def write_chunk_sql(names: CopyNames, columns: Sequence[str], key: Sequence[str]) -> str:
    """The rows :func:`locked_rows_sql` read, written into the shadow (one row of
    parameters each; the driver sends them as one multi-row ``INSERT``, which takes no
    ``AUTO_INCREMENT`` table lock: the application writes the shadow too by then)."""
    marks = ", ".join("%s" for _ in columns)
    return (
        f"INSERT INTO {_q(names.shadow)} ({_list(columns)}) VALUES ({marks})"
        f" {_keep_newer(names, key)}"
    )


def next_chunk(size: int, rows: int, seconds: float, target: float) -> int:
    """The next chunk's size, after one of *size* rows (*rows* of them found) took
    *seconds*: scaled toward *target* seconds, by at most a factor of 2 up or 4 down at a
    time, within [:data:`LEAST_CHUNK`, :data:`MOST_CHUNK`].

    >>> next_chunk(1000, 1000, 0.1, 0.5)
    2000
    >>> next_chunk(1000, 1000, 2.0, 0.5)
    250
    """
    if target <= 0:
        raise ValueError(f"the chunk target time must be above 0, not {target}")
    if rows <= 0 or seconds <= 0:
        wanted = size * 2.0
    else:
        wanted = size * min(2.0, max(0.25, target / seconds))
    return int(min(MOST_CHUNK, max(LEAST_CHUNK, wanted)))


def throttled(threads_running: int | None, most: int, lag: float | None, most_lag: float) -> str:
    """Why the copy should wait before its next chunk ('' to go on): the server runs more
    than *most* threads (``Threads_running``), or a replica lags more than *most_lag*
    seconds. A figure that could not be read (None) does not hold the copy.

    >>> throttled(40, 25, None, 1.0)
    'the server runs 40 threads (at most 25)'
    >>> throttled(3, 25, 0.2, 1.0)
    ''
    >>> throttled(3, 25, math.inf, 1.0)
    'a replica does not replicate (stopped, or out of reach)'
    """
    if threads_running is not None and most > 0 and threads_running > most:
        return f"the server runs {threads_running} threads (at most {most})"
    if lag is not None and math.isinf(lag):
        return "a replica does not replicate (stopped, or out of reach)"
    if lag is not None and lag > most_lag:
        return f"a replica lags {lag:.1f} s (at most {most_lag:g})"
    return ""


def eta(copied: int, total: int, seconds: float) -> float | None:
    """Seconds left to copy *total* rows, at the pace of *copied* in *seconds* (None: no
    pace yet).

    >>> eta(250, 1000, 1.0)
    3.0
    """
    if copied <= 0 or seconds <= 0:
        return None
    return max(0.0, (total - copied) * seconds / copied)


#: The ``sql_mode`` the swap-back's triggers are made under (a trigger runs under the mode
#: it was made under): a value the old table cannot hold fails, rather than being cut.
STRICT: Final = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
#: MySQL's "table doesn't exist": the swap-back's record gone (a dump restored elsewhere).
_NO_TABLE: Final = 1146


def back_trigger_sql(
    names: CopyNames,
    table: str,
    old: str,
    revert: str,
    columns: Sequence[str],
    key: Sequence[str],
    database: str,
) -> tuple[str, str, str]:
    """The three triggers on *table* (quoted, the new definition, in *database*) that write
    each change into *old* (quoted, qualified: the old table among the backups) too, for a
    swap-back. A change the old table refuses is not the application's failure: the handler
    marks the swap-back spent in *revert* (quoted) instead. The mark's own failure is
    raised, except when the record is gone (nothing can be swapped back then). They act
    only in *database* (a trigger's ``DATABASE()`` is its own): a dump of the table
    restored into another database on the same server carries them, and must not write
    into this one's old table."""
    cols = _list(columns)
    new = _list(columns, "NEW.")
    sets = ", ".join(f"{_q(c)} = NEW.{_q(c)}" for c in columns)
    same = " AND ".join(f"{_q(k)} <=> OLD.{_q(k)}" for k in key)
    mark = (
        "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN"
        f" DECLARE CONTINUE HANDLER FOR {_NO_TABLE} BEGIN END;"
        f" UPDATE {revert} SET diverged = diverged + 1 WHERE id = 1; END;"
    )
    here = "'" + database.replace("\\", "\\\\").replace("'", "''") + "'"
    ins, upd, dele = (_q(n) for n in names.back_triggers)

    def body(statement: str) -> str:
        return f"FOR EACH ROW BEGIN {mark} IF DATABASE() = {here} THEN {statement}; END IF; END"

    return (
        f"CREATE TRIGGER {ins} AFTER INSERT ON {table} "
        + body(f"INSERT INTO {old} ({cols}) VALUES ({new})"),
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {table} "
        + body(f"UPDATE {old} SET {sets} WHERE {same}"),
        f"CREATE TRIGGER {dele} AFTER DELETE ON {table} " + body(f"DELETE FROM {old} WHERE {same}"),
    )


def back_write_sql(old: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """Writing a row of the table into *old* (quoted, qualified), when the swap-back's log
    is applied (one row of parameters each): inserted, or its columns of the new definition
    set where its key is there (a column only the old table has keeps its value); a clash
    on another unique key fails (see :func:`chunk_sql`). The
    keys no longer in the table are deleted from *old* (``DELETE ... WHERE`` :func:`key_in`).
    """
    marks = ", ".join("%s" for _ in columns)
    same = " AND ".join(f"{old}.{_q(k)} <=> VALUES({_q(k)})" for k in key)
    lower = {k.lower() for k in key}
    rest = [c for c in columns if c.lower() not in lower]
    sets = [f"{old}.{_q(c)} = IF({same}, VALUES({_q(c)}), {old}.{_q(c)})" for c in rest]
    sets += [f"{old}.{_q(k)} = IF({same}, {old}.{_q(k)}, {_FAIL})" for k in key]
    return (
        f"INSERT INTO {old} ({_list(columns)}) VALUES ({marks})"
        f" ON DUPLICATE KEY UPDATE {', '.join(sets)}"
    )


_AUTO_INCREMENT: Final = re.compile(r" AUTO_INCREMENT=\d+")


def definition(create: str) -> str:
    """A table's ``SHOW CREATE TABLE`` text without its ``AUTO_INCREMENT`` counter (which
    every insert moves): what a swap-back compares.

    >>> definition("CREATE TABLE `t` (...) ENGINE=InnoDB AUTO_INCREMENT=12 DEFAULT CHARSET=x")
    'CREATE TABLE `t` (...) ENGINE=InnoDB DEFAULT CHARSET=x'
    """
    return _AUTO_INCREMENT.sub("", create)


def swap_refusal(
    *, diverged: int, triggers_there: bool, same_definition: bool, old_there: bool
) -> str | None:
    """Why a swap-back cannot give the old table back exactly (the rollback copies again
    instead), or None.

    >>> swap_refusal(diverged=0, triggers_there=True, same_definition=True, old_there=True)
    >>> swap_refusal(diverged=2, triggers_there=True, same_definition=True, old_there=True)
    '2 change(s) since the cut-over could not be written into the old table'
    """
    if diverged:
        return f"{diverged} change(s) since the cut-over could not be written into the old table"
    if not old_there:
        return "the old table is gone"
    if not triggers_there:
        return "the triggers keeping the old table current are gone"
    if not same_definition:
        return "the table was altered again since the cut-over"
    return None
