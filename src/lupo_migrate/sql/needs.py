"""What a rollback must keep before a statement runs, so that undoing it loses no row.

Pure: a statement's text in, :class:`Need` values out, one per table the statement changes.
The pre-images (``backends.sqlalchemy._preimage``) take only what these say, so that an additive
change to a big table costs no copy of it:

* ``shape``: only the table's definition changes (``ADD COLUMN``, ``CREATE INDEX``, ``RENAME``,
  ``DROP INDEX``, a trigger on it...). Its definition before the run undoes it; its rows stay
  as they are, whatever their number.
* ``columns``: named columns go (``DROP COLUMN``): their values are set aside by key.
* ``drop``: the table goes (``DROP TABLE``): it is set aside whole (a soft drop), or copied.
* ``rows``: rows may change (``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``MODIFY``,
  ``CHANGE``, ``ALTER COLUMN ... TYPE``, ``CONVERT TO``, and any clause not known here): the
  rows are copied, so that the rollback can put back, by key, the rows the run changed.

A statement whose effects cannot be told from its text gives no need here: ``touches`` calls
it *unknown*, and the run's checks say so before it runs.
"""

from __future__ import annotations

import functools
from typing import Final

import attrs

from lupo_migrate.sql.split import family
from lupo_migrate.sql.touches import clauses, touches, words

__all__ = ["COLUMNS", "DROP", "ROWS", "SHAPE", "Need", "needs", "strongest"]

SHAPE: Final = "shape"
COLUMNS: Final = "columns"
DROP: Final = "drop"
ROWS: Final = "rows"
#: From the least to the most a rollback must keep.
_ORDER: Final = {SHAPE: 0, COLUMNS: 1, DROP: 2, ROWS: 3}

#: ALTER TABLE clauses (first words) that change the definition only.
_SHAPE_HEADS: Final = frozenset(
    {
        "ADD", "RENAME", "ALGORITHM", "LOCK", "FORCE", "ENGINE", "AUTO_INCREMENT", "COMMENT",
        "ROW_FORMAT", "KEY_BLOCK_SIZE", "STATS_PERSISTENT", "STATS_AUTO_RECALC",
        "STATS_SAMPLE_PAGES", "PACK_KEYS", "CHECKSUM", "DELAY_KEY_WRITE", "DEFAULT",
        "CHARACTER", "CHARSET", "COLLATE", "ORDER", "OWNER", "ENABLE", "DISABLE", "VALIDATE",
        "CLUSTER", "INHERIT", "NO", "REPLICA", "OF", "NOT", "WITH", "WITHOUT", "RESET",
        "PAGE_CHECKSUM", "TRANSACTIONAL", "MIN_ROWS", "MAX_ROWS", "AVG_ROW_LENGTH",
        "ENCRYPTED", "ENCRYPTION_KEY_ID", "INSERT_METHOD",
    }
)  # fmt: skip
#: What a DROP clause may name besides a column (all but PARTITION keep the rows).
_DROP_OTHER: Final = frozenset(
    {"INDEX", "KEY", "PRIMARY", "FOREIGN", "CONSTRAINT", "CHECK", "PERIOD", "DEFAULT"}
)
#: ALTER [COLUMN] c <these>: the column's definition only, not its values.
_ALTER_COLUMN_SHAPE: Final = frozenset({"SET", "DROP", "ADD", "RESTART", "VISIBLE", "INVISIBLE"})


@attrs.frozen
class Need:
    """What a rollback must keep of one table before a statement changes it.

    Attributes:
        table: the table's name, unquoted.
        schema: the schema the statement names, or None.
        what: ``shape``, ``columns``, ``drop`` or ``rows`` (see the module docstring).
        columns: for ``columns``, the columns that go.
    """

    table: str
    schema: str | None
    what: str
    columns: tuple[str, ...] = ()


def strongest(whats: list[str]) -> str:
    """The need that keeps the most of *whats* (``shape`` for none)."""
    return max(whats, key=_ORDER.__getitem__, default=SHAPE)


@functools.lru_cache(maxsize=4096)
def needs(sql: str, *, dialect: str) -> tuple[Need, ...]:
    """What a rollback must keep of each table *sql* (one statement) changes.

    (Cached: a run asks about each statement more than once.)

    Args:
        sql: one statement, rendered as it will run.
        dialect: a dialect name or family (``mysql``, ``mariadb``, ``postgresql``, ``sqlite``).
    """
    fam = family(dialect)
    found = touches(sql, dialect=fam)
    tables = [t for t in found if t.kind == "table"]
    if not tables:
        return ()
    if all(t.action in ("write", "drop", "rename") for t in tables):
        toks: list[tuple[str, str]] = []  # the actions say all: no need to read the words
        up: list[str] = [""]
    else:
        toks = words(sql, fam)
        up = [t.upper() if k == "word" else "" for k, t in toks]
    head = up[0]
    out: list[Need] = []
    for touch in tables:
        what: str | None
        columns: tuple[str, ...]
        if touch.action == "write":
            what, columns = ROWS, ()
        elif touch.action == "drop":
            what, columns = DROP, ()
        elif touch.action == "create":
            what, columns = _created(up), ()
        elif touch.action == "rename":
            what, columns = SHAPE, ()
        elif head == "ALTER" and "TABLE" in up[1:4]:
            what, columns = _altered(toks, up)
        else:  # CREATE INDEX / TRIGGER ... ON t, DROP INDEX ... ON t
            what, columns = SHAPE, ()
        if what is None:
            continue
        same = next((n for n in out if (n.table, n.schema) == (touch.name, touch.schema)), None)
        if same is None:
            out.append(Need(touch.name, touch.schema, what, columns))
        elif _ORDER[what] > _ORDER[same.what]:
            out[out.index(same)] = Need(touch.name, touch.schema, what, columns)
    return tuple(out)


def _created(up: list[str]) -> str | None:
    """A table the statement creates needs nothing (undoing it drops it), unless it may
    replace one (``CREATE OR REPLACE``) or fill one that was there (``IF NOT EXISTS ...
    SELECT``)."""
    if "OR" in up[1:3] and "REPLACE" in up[2:4]:
        return DROP
    if up[1:6].count("EXISTS") and ("SELECT" in up or "AS" in up):
        return ROWS
    return None


def _altered(toks: list[tuple[str, str]], up: list[str]) -> tuple[str, tuple[str, ...]]:
    """The need of an ``ALTER TABLE``: the strongest of its clauses'."""
    i = up.index("TABLE") + 1
    if "IGNORE" in up[1:i]:
        return ROWS, ()  # ALTER IGNORE TABLE deletes the rows a new unique key rejects
    while i < len(up) and up[i] in ("IF", "EXISTS", "ONLY"):
        i += 1
    # skip the table's (possibly qualified) name
    while i < len(toks) and toks[i][0] in ("word", "ident"):
        if i + 1 < len(toks) and toks[i + 1][1] == ".":
            i += 2
            continue
        i += 1
        break
    whats: list[str] = []
    dropped: list[str] = []
    for clause in clauses(toks, i):
        what, column = _clause(clause)
        whats.append(what)
        if column is not None:
            dropped.append(column)
    what = strongest(whats)
    return what, tuple(dropped) if what == COLUMNS else ()


def _clause(clause: list[tuple[str, str]]) -> tuple[str, str | None]:
    """One ALTER TABLE clause's need, and the column it drops (if it drops one)."""
    cup = [t.upper() if k == "word" else "" for k, t in clause] + ["", "", "", ""]
    first = cup[0]
    if first == "DROP":
        if cup[1] == "PARTITION" or cup[1:3] == ["SYSTEM", "VERSIONING"]:
            return ROWS, None
        if cup[1] in _DROP_OTHER:
            return SHAPE, None
        at = 1 + (cup[1] == "COLUMN")
        at += 2 if cup[at : at + 2] == ["IF", "EXISTS"] else 0
        if at < len(clause) and clause[at][0] in ("word", "ident"):
            return COLUMNS, _unquote(clause[at])
        return ROWS, None
    if first == "ALTER":
        if cup[1] in ("INDEX", "KEY", "CONSTRAINT", "CHECK"):
            return SHAPE, None
        at = 1 + (cup[1] == "COLUMN")
        action = cup[at + 1]
        if action == "SET" and cup[at + 2] == "DATA":
            return ROWS, None  # SET DATA TYPE
        if action in _ALTER_COLUMN_SHAPE:
            return SHAPE, None
        return ROWS, None  # TYPE ..., and what is not known here
    if first in _SHAPE_HEADS:
        if first == "DEFAULT" and cup[1] not in ("CHARACTER", "CHARSET", "COLLATE"):
            return ROWS, None
        return SHAPE, None
    return ROWS, None  # MODIFY, CHANGE, CONVERT, partitions, tablespaces, anything else


def _unquote(token: tuple[str, str]) -> str:
    kind, text = token
    if kind == "ident" and len(text) >= 2:
        return text[1:-1].replace(text[-1] * 2, text[-1])
    return text
