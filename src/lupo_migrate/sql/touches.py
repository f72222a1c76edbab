"""What a SQL statement touches: the objects it creates, changes, drops or writes rows into.

Pure: a statement's text in, ``Touch`` values out. The orchestrator records the pre-image of
every object a plan touches before it runs, and compares them again after a rollback; a
statement whose effects cannot be told from its text (``CALL``, ``EXECUTE``, ``LOAD``... and
anything not recognised) is reported as touching *unknown* objects, so the plan can say before
anything runs that only a down section can undo it.

Names are returned unquoted, with their schema when the statement names one.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from typing import Final

import attrs

from lupo_migrate.sql.split import CODE, COMMENT, HINT, QUOTED, scan

__all__ = [
    "Touch",
    "clauses",
    "head_words",
    "in_schema",
    "iter_words",
    "leading_word",
    "name_at",
    "touches",
    "words",
]

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*|\d[\w.]*|\S")
#: Statements that change nothing lasting (session state, reads, transaction control).
_NEUTRAL: Final = frozenset(
    {
        "SELECT", "SHOW", "START", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
        "EXPLAIN", "DESCRIBE", "DESC", "USE", "DO", "SET", "ANALYZE", "OPTIMIZE", "CHECK",
        "LOCK", "UNLOCK", "FLUSH", "VALUES", "WITH", "COMMENT", "GRANT", "REVOKE",
        "VACUUM", "CHECKPOINT", "REINDEX", "CLUSTER",  # upkeep: no row nor object changes
    }
)  # fmt: skip
#: SQLite pragmas that only read, or set the connection's own behaviour.
_SESSION_PRAGMAS: Final = frozenset(
    {
        "FOREIGN_KEYS", "DEFER_FOREIGN_KEYS", "LEGACY_ALTER_TABLE", "RECURSIVE_TRIGGERS",
        "IGNORE_CHECK_CONSTRAINTS", "BUSY_TIMEOUT", "CASE_SENSITIVE_LIKE", "FOREIGN_KEY_CHECK",
        "INTEGRITY_CHECK", "QUICK_CHECK", "TABLE_INFO", "TABLE_XINFO", "INDEX_LIST",
        "INDEX_INFO", "FOREIGN_KEY_LIST",
    }
)  # fmt: skip
#: How many tokens are read first: enough for an ``INSERT``'s head (see :func:`_insert`).
_HEAD: Final = 12
_KINDS: Final = {
    "TABLE": "table",
    "VIEW": "view",
    "TRIGGER": "trigger",
    "PROCEDURE": "routine",
    "FUNCTION": "routine",
    "EVENT": "event",
    "INDEX": "index",
    "SCHEMA": "schema",
    "DATABASE": "schema",
}


@attrs.frozen
class Touch:
    """One object a statement affects.

    Attributes:
        kind: ``table``, ``view``, ``trigger``, ``routine``, ``event``, ``schema`` (a MySQL
            database, a PostgreSQL schema) or ``unknown``.
        name: the object's name, unquoted (for ``unknown``: the statement's first word).
        action: ``create``, ``alter``, ``drop``, ``rename`` (to *new_name*) or ``write``
            (rows inserted, changed or deleted).
        schema: the schema the statement names, or None.
        new_name: for ``rename``, the new name.
        new_schema: for ``rename``, the schema the new name names (a move), or None.
    """

    kind: str
    name: str
    action: str
    schema: str | None = None
    new_name: str | None = None
    new_schema: str | None = None


def in_schema(found: tuple[Touch, ...], schema: str | None) -> list[Touch]:
    """*found* as seen from one schema (*schema*; None names the connection's default, as
    do unqualified names): objects of other schemas left out, a table moved out of it as
    dropped, a table moved into it as created."""
    here = (None, schema)
    out: list[Touch] = []
    for touch in found:
        if touch.action == "rename" and touch.kind == "table":
            source = touch.schema in here
            target = touch.new_schema in here
            if source and not target:
                out.append(Touch("table", touch.name, "drop"))
                continue
            if target and not source and touch.new_name is not None:
                out.append(Touch("table", touch.new_name, "create"))
                continue
            if source and target:
                out.append(attrs.evolve(touch, schema=None, new_schema=None))
            continue
        if touch.schema in here:
            out.append(attrs.evolve(touch, schema=None) if touch.schema is not None else touch)
    return out


#: The quick readings below take plain ASCII names and spaces only (anything else, a name
#: with ``$``, ``é`` or a no-break space, is left to the tokens): they compile in a few
#: hundred microseconds, where _WORD's Unicode classes with case folding took 80 ms a start.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SP = r"[ \t\r\n\f\v]"
#: An ``INSERT``/``REPLACE`` whose head (up to its table) holds no comment, quote or bracket:
#: what :func:`_insert` reads from its tokens, read by one match. Anything else: the tokens.
_HEAD_WORDS = r"(?i:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)"
_PLAIN_INSERT = re.compile(
    rf"{_SP}*(?i:INSERT|REPLACE)(?:{_SP}+{_HEAD_WORDS})*+(?:{_SP}+(?i:OR){_SP}+{_NAME})?+"
    rf"(?:{_SP}+(?i:INTO))?+{_SP}+"
    rf"(?!(?:{_HEAD_WORDS}|(?i:OR|INTO))(?![A-Za-z0-9_]))"  # no keyword taken for a name
    rf"(?:(?P<schema>{_NAME}){_SP}*\.{_SP}*)?(?P<name>{_NAME})"
    rf"(?=[ \t\r\n\f\v(]|\Z)(?={_SP}*(?:\(|{_NAME}(?:[ \t\r\n\f\v(]|\Z)|\Z))",
    re.ASCII,
)
_LEADING = re.compile(rf"{_SP}*({_NAME})(?=[ \t\r\n\f\v(;]|\Z)", re.ASCII)


def leading_word(sql: str) -> str | None:
    """The statement's first word, when it is a plain word followed by a space, ``(`` or
    ``;`` (no comment, quote or label in the way); else None (read its tokens)."""
    found = _LEADING.match(sql)
    return found.group(1) if found is not None else None


_EXECUTABLE = re.compile(r"/\*!\d*(?P<body>.*)\*/\Z", re.DOTALL)


def words(sql: str, fam: str) -> list[tuple[str, str]]:
    """Significant tokens: (``word``|``ident``|``string``|``punct``|``hint``, text). A MySQL
    executable comment (``/*!40101 SET ... */``, as mysqldump writes them) is read as the
    code it holds: the server runs it."""
    return list(iter_words(sql, fam))


def head_words(sql: str, fam: str, count: int) -> list[tuple[str, str]]:
    """The first *count* tokens of :func:`words`, reading no further into *sql* than they
    need (a statement of 100,000 rows is not read to learn that it starts ``INSERT INTO t``)."""
    return list(itertools.islice(iter_words(sql, fam), count))


def iter_words(sql: str, fam: str) -> Iterator[tuple[str, str]]:
    """:func:`words`, one at a time, as the statement is read."""
    for token in scan(sql, dialect=fam):
        executable = _EXECUTABLE.match(token.text) if token.kind == HINT else None
        if executable is not None:
            yield from iter_words(executable.group("body"), fam)
        elif token.kind == CODE:
            for w in _WORD.findall(token.text):
                yield ("word" if w[0].isalpha() or w[0] == "_" else "punct", w)
        elif token.kind != COMMENT:
            yield ("ident" if token.kind == QUOTED else token.kind, token.text)


def name_at(toks: list[tuple[str, str]], i: int) -> tuple[str, int]:
    """The (possibly qualified) name starting at token *i*, as written, and the index after."""
    parts: list[str] = []
    while i < len(toks) and toks[i][0] in ("word", "ident"):
        parts.append(toks[i][1])
        if i + 1 < len(toks) and toks[i + 1][1] == ".":
            i += 2
            continue
        i += 1
        break
    return ".".join(parts), i


def clauses(toks: list[tuple[str, str]], start: int) -> list[list[tuple[str, str]]]:
    """The comma-separated clauses of *toks* from *start* on (an ``ALTER TABLE``'s list),
    split at parenthesis depth 0; empty clauses left out."""
    out: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for tok in toks[start:]:
        if tok[0] == "punct" and tok[1] in "()":
            depth += 1 if tok[1] == "(" else -1
        if tok == ("punct", ",") and depth == 0:
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


def _parts(toks: list[tuple[str, str]], i: int) -> tuple[str | None, str, int]:
    """(schema, name) unquoted at token *i*, and the index after."""
    parts: list[str] = []
    while i < len(toks) and toks[i][0] in ("word", "ident"):
        kind, text = toks[i]
        parts.append(_unquote(text) if kind == "ident" else text)
        if i + 1 < len(toks) and toks[i + 1][1] == ".":
            i += 2
            continue
        i += 1
        break
    if not parts:
        return None, "", i
    return (parts[-2] if len(parts) > 1 else None), parts[-1], i


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in '`"[' and text[-1] in '`"]':
        close = text[-1]
        return text[1:-1].replace(close + close, close)
    return text


@functools.lru_cache(maxsize=4096)
def touches(sql: str, *, dialect: str) -> tuple[Touch, ...]:
    """The objects *sql* (one statement) affects; empty for statements that change nothing.
    (Cached: a run asks about each statement several times: lint, pre-images, waits.)

    Args:
        sql: one statement, rendered as it will run.
        dialect: ``mysql``, ``postgresql`` or ``sqlite`` (a dialect family).
    """
    plain = _PLAIN_INSERT.match(sql)
    if plain is not None:  # the commonest statement of a big file, read without the scanner
        return (Touch("table", plain.group("name"), "write", plain.group("schema")),)
    toks = head_words(sql, dialect, _HEAD)
    if toks and toks[0][1].upper() in ("INSERT", "REPLACE"):
        return _insert(toks, [t.upper() if k == "word" else "" for k, t in toks])
    if len(toks) == _HEAD:
        toks = words(sql, dialect)
    up = [t.upper() if k == "word" else "" for k, t in toks]
    if not up:
        return ()
    head = up[0]
    if head in _NEUTRAL and not (head == "SET" and up[1:2] in (["GLOBAL"], ["PERSIST"])):
        return ()
    if head == "PRAGMA" and up[1:2] and up[1] in _SESSION_PRAGMAS:
        return ()
    if head == "CREATE":
        return _create(toks, up)
    if head == "ALTER":
        return _alter(toks, up)
    if head == "DROP":
        return _drop(toks, up)
    if head == "RENAME" and up[1:2] == ["TABLE"]:
        return _rename(toks, 2)
    if head == "TRUNCATE":
        schema, name, _ = _parts(toks, 2 if up[1:2] == ["TABLE"] else 1)
        return (Touch("table", name, "write", schema),)
    if head == "UPDATE":
        return _tables_until(toks, up, 1, {"SET"}, "write")
    if head == "DELETE":
        if "FROM" in up:
            at = up.index("FROM")
            before = _tables_until(toks, up, 1, {"FROM"}, "write")
            if before:  # DELETE t1, t2 FROM ...: the named tables lose rows
                return before
            return _tables_until(toks, up, at + 1, {"WHERE", "USING", "ORDER", "LIMIT"}, "write")
        return _tables_until(toks, up, 1, {"WHERE"}, "write")
    return (Touch("unknown", toks[0][1], "alter"),)


def _insert(toks: list[tuple[str, str]], up: list[str]) -> tuple[Touch, ...]:
    """``INSERT``/``REPLACE``: rows written to the table it names (read from its first
    :data:`_HEAD` tokens: the longest head, ``INSERT LOW_PRIORITY IGNORE INTO s . t``, has 7)."""
    i = 1
    while i < len(up) and up[i] in ("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"):
        i += 1
    if up[i : i + 1] == ["OR"]:  # SQLite: INSERT OR REPLACE / OR IGNORE
        i += 2
    if up[i : i + 1] == ["INTO"]:
        i += 1
    schema, name, _ = _parts(toks, i)
    return (Touch("table", name, "write", schema),)


def _skip(up: list[str], i: int, *options: str) -> int:
    while i < len(up) and up[i] in options:
        i += 1
    return i


def _create(toks: list[tuple[str, str]], up: list[str]) -> tuple[Touch, ...]:
    i = _skip(up, 1, "OR", "REPLACE", "TEMPORARY", "TEMP", "UNIQUE", "FULLTEXT", "SPATIAL")
    i = _skip(up, i, "ALGORITHM", "=", "UNDEFINED", "MERGE", "TEMPTABLE")
    if up[i : i + 1] == ["DEFINER"]:  # DEFINER = user@host [SQL SECURITY ...]
        while i < len(up) and up[i] not in _KINDS:
            i += 1
    i = _skip(up, i, "SQL", "SECURITY", "DEFINER", "INVOKER", "AGGREGATE")
    kind = _KINDS.get(up[i] if i < len(up) else "")
    if kind is None:
        return (Touch("unknown", "CREATE", "alter"),)
    if "TEMPORARY" in up[1:i] or "TEMP" in up[1:i]:
        return ()  # gone with the session
    i = _skip(up, i + 1, "IF", "NOT", "EXISTS", "CONCURRENTLY")
    schema, name, i = _parts(toks, i)
    if kind == "schema":
        return (Touch("schema", name, "create"),)
    if kind in ("index", "trigger"):
        on = up.index("ON", i) if "ON" in up[i:] else -1
        t_schema, table, _ = _parts(toks, on + 1) if on >= 0 else (None, "", 0)
        if kind == "index":
            return (Touch("table", table, "alter", t_schema),)
        return (Touch("trigger", name, "create", schema), Touch("table", table, "alter", t_schema))
    return (Touch(kind, name, "create", schema),)


def _alter(toks: list[tuple[str, str]], up: list[str]) -> tuple[Touch, ...]:
    i = _skip(up, 1, "ONLINE", "IGNORE")
    kind = _KINDS.get(up[i] if i < len(up) else "")
    if kind is None:
        return (Touch("unknown", "ALTER", "alter"),)
    i = _skip(up, i + 1, "IF", "EXISTS", "ONLY")
    schema, name, i = _parts(toks, i)
    found = [Touch(kind, name, "alter", schema)]
    for at in range(i, len(up) - 1):
        if up[at] == "RENAME" and up[at + 1] in ("TO", "AS") and kind == "table":
            new_schema, new, _ = _parts(toks, at + 2)
            found.append(Touch(kind, name, "rename", schema, new, new_schema))
        elif (
            up[at] == "RENAME"
            and up[at + 1] not in ("COLUMN", "INDEX", "KEY", "CONSTRAINT", "TO")
            and kind == "table"
            and toks[at + 1][0] in ("word", "ident")
        ):
            new_schema, new, _ = _parts(toks, at + 1)  # MySQL: ALTER TABLE a RENAME b
            found.append(Touch(kind, name, "rename", schema, new, new_schema))
        elif up[at : at + 2] == ["SET", "SCHEMA"] and kind == "table":  # PostgreSQL: a move
            _, new_schema, _ = _parts(toks, at + 2)
            found.append(Touch(kind, name, "rename", schema, name, new_schema or None))
    return tuple(found)


def _drop(toks: list[tuple[str, str]], up: list[str]) -> tuple[Touch, ...]:
    i = _skip(up, 1, "TEMPORARY")
    kind = _KINDS.get(up[i] if i < len(up) else "")
    if kind is None:
        return (Touch("unknown", "DROP", "drop"),)
    if "TEMPORARY" in up[1:i]:
        return ()
    i = _skip(up, i + 1, "IF", "EXISTS", "CONCURRENTLY")
    if kind == "index":  # MySQL: DROP INDEX i ON t; elsewhere the table is not named
        on = up.index("ON", i) if "ON" in up[i:] else -1
        if on < 0:
            schema, name, _ = _parts(toks, i)
            return (Touch("unknown", f"index {name}", "drop"),)
        t_schema, table, _ = _parts(toks, on + 1)
        return (Touch("table", table, "alter", t_schema),)
    found = []
    while i < len(toks):
        schema, name, i = _parts(toks, i)
        if not name:
            break
        found.append(Touch(kind, name, "drop", schema))
        if i < len(toks) and toks[i][1] == ",":
            i += 1
            continue
        break
    return tuple(found)


def _rename(toks: list[tuple[str, str]], i: int) -> tuple[Touch, ...]:
    found = []
    while i < len(toks):
        schema, name, i = _parts(toks, i)
        if not name or i >= len(toks) or toks[i][1].upper() != "TO":
            break
        new_schema, new, i = _parts(toks, i + 1)
        found.append(Touch("table", name, "rename", schema, new, new_schema))
        if i < len(toks) and toks[i][1] == ",":
            i += 1
            continue
        break
    return tuple(found)


def _tables_until(
    toks: list[tuple[str, str]], up: list[str], i: int, stop: set[str], action: str
) -> tuple[Touch, ...]:
    """Table names from token *i* up to a *stop* keyword: comma lists and JOINs, aliases
    skipped."""
    found: list[Touch] = []
    expect = True
    depth = 0
    while i < len(toks) and not (depth == 0 and up[i] in stop):
        kind, text = toks[i]
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif depth == 0 and expect and kind in ("word", "ident"):
            if up[i] in ("LOW_PRIORITY", "IGNORE", "QUICK", "ONLY"):
                i += 1
                continue
            schema, name, i = _parts(toks, i)
            found.append(Touch("table", name, action, schema))
            expect = False
            continue
        elif depth == 0 and (text == "," or up[i] == "JOIN"):
            expect = True
        i += 1
    return tuple(found)
