"""What SQL text does when it runs: read, write, or cannot be told (functional core: no I/O).

Two users:

- :func:`effect` classifies the text a driver is about to send (one statement or several), as
  the server would run it: comments of every kind are skipped, MySQL/MariaDB executable
  comments (``/*! ... */``, ``/*!50001 ... */``, MariaDB ``/*M! ... */``) count as code, and
  each ``;``-separated statement is judged; the worst verdict wins. The write guard
  (:func:`lupo_migrate.backends.sqlalchemy.guard`) refuses everything that is not
  :attr:`Effect.READ` while writes are frozen.
- :func:`check_sql` flags, in a migration file, a statement whose first word is not a statement
  of SQL (``SELEC broken;``): ``lupo-migrate check`` reports it before anything runs.

The verdicts, by first word (after comments and opening parentheses)::

    ================================================ ==========================================
    statement                                        verdict
    ================================================ ==========================================
    ``SELECT``, ``VALUES``, ``TABLE``, ``SHOW``      read; with ``INTO`` a table (PostgreSQL
                                                     ``SELECT ... INTO t``): write; ``INTO @var``,
                                                     ``INTO OUTFILE/DUMPFILE``: read (no row
                                                     changes; the server's ``read_only`` allows
                                                     them too)
    ``SELECT ... FOR UPDATE/SHARE``, ``LOCK``        read: a lock changes no row (the write that
                                                     follows is refused)
    ``WITH ...``                                     write when it holds ``INSERT``, ``UPDATE``
                                                     (not ``FOR UPDATE``), ``DELETE``, ``MERGE``
                                                     or ``REPLACE INTO``; else as ``SELECT``
    ``EXPLAIN``/``DESCRIBE``/``DESC`` X              the verdict of X (``EXPLAIN ANALYZE``
                                                     runs it); of a table name: read
    ``ANALYZE SELECT``                               read (MariaDB); any other ``ANALYZE`` writes
                                                     (statistics, or MariaDB runs the DML)
    ``SET``                                          read (session), except ``GLOBAL``,
                                                     ``PERSIST``, ``PASSWORD``, ``DEFAULT ROLE``:
                                                     write; MariaDB ``SET STATEMENT ... FOR X``:
                                                     the verdict of X
    transaction control (``BEGIN``, ``START          read (MariaDB ``BEGIN NOT ATOMIC ...``:
    TRANSACTION``, ``COMMIT``, ``ROLLBACK``,         unknown)
    ``SAVEPOINT``, ``RELEASE``, ``XA``; ``END``,
    ``ABORT`` on PostgreSQL and SQLite)
    session statements: ``USE``, ``PREPARE``,        read
    ``DEALLOCATE``, ``HANDLER``, ``CHECK TABLE``,
    ``DO`` (MySQL: expressions only), PostgreSQL
    ``LISTEN``/``NOTIFY``/``DISCARD``/``RESET``/
    cursors, SQLite ``ATTACH``/``DETACH``
    ``COPY ... FROM``                                write (``COPY ... TO``: read)
    ``PRAGMA`` (SQLite)                              read when it queries or sets the connection
                                                     (``foreign_keys``, ``busy_timeout``...);
                                                     write when it changes the file
                                                     (``user_version = 3``, ``journal_mode =
                                                     WAL``) or acts (``optimize``,
                                                     ``incremental_vacuum``, ``wal_checkpoint``)
    DML, DDL, ``LOAD DATA``, ``GRANT``, maintenance  write
    (``VACUUM``, ``OPTIMIZE``, ``REINDEX``...),
    server administration (``FLUSH``, ``KILL``...)
    ``CALL``, ``EXECUTE``, PostgreSQL ``DO $$``,     unknown (what they run is not in the text)
    anything else
    no statement at all (empty, only comments)       read (nothing is sent to run)
    ================================================ ==========================================

Limits: a read that calls a function which writes (``SELECT my_func()``, ``SELECT
nextval('s')``) is a read here: the text does not say what a function does. Text that cannot be
tokenised (an unterminated string) is unknown, unless its first word already decides (``INSERT
...``: a write; ``SELECT ...`` with no ``;`` and no ``into``: a read, which the server refuses
anyway). ``EXPLAIN X`` is judged as X even without ``ANALYZE`` (refused while frozen when X
writes, though it would not run X). ``CREATE TEMPORARY TABLE`` is DDL: refused while frozen.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from lupo_migrate.core.model import Finding, Severity
from lupo_migrate.sql.split import COMMENT, HINT, SplitError, scan, split_sections
from lupo_migrate.sql.touches import head_words, leading_word, words

__all__ = ["STATEMENT_WORDS", "Effect", "check_sql", "effect"]


class Effect(enum.Enum):
    """What running a text does."""

    #: Changes nothing in the database (reads, session settings, transaction control, locks).
    READ = "read"
    #: Changes rows, objects, files of the database or the server's settings.
    WRITE = "write"
    #: Cannot be told from the text (a routine's call, dynamic SQL, an unknown statement).
    UNKNOWN = "unknown"


READ: Final = Effect.READ
WRITE: Final = Effect.WRITE
UNKNOWN: Final = Effect.UNKNOWN

_FAMILIES: Final = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}
_FAMILIES_MORE: Final = {"postgres": "postgresql", "sqlite": "sqlite"}

#: The first word of a statement, at the very start of the text (the fast path).
_HEAD = re.compile(r"[ \t\r\n]*([A-Za-z]+)\b")
#: First words that write whatever follows them.
_WRITES: Final = frozenset(
    {
        "INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT", "TRUNCATE", "CREATE",
        "ALTER", "DROP", "RENAME", "LOAD", "GRANT", "REVOKE", "COMMENT", "VACUUM", "OPTIMIZE",
        "REPAIR", "REINDEX", "CLUSTER", "REFRESH", "IMPORT", "SECURITY", "REASSIGN", "FLUSH",
        "PURGE", "KILL", "SHUTDOWN", "RESTART", "INSTALL", "UNINSTALL", "CHECKPOINT", "CACHE",
        "BINLOG", "CHANGE", "STOP", "CLONE", "BACKUP",
    }
)  # fmt: skip
#: First words read without a closer look when no ``;`` and no ``into`` follows.
_PLAIN_READS: Final = frozenset({"SELECT", "SHOW"})
#: What may follow ``SELECT`` at the very start for the first test to hold.
_AFTER_SELECT: Final = frozenset({"", " ", "\n", "\t", "\r", "*", "("})

#: Statements that read, in every family.
_READS: Final = frozenset(
    {"SHOW", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "LOCK", "UNLOCK", "PREPARE",
     "DEALLOCATE"}
)  # fmt: skip
_FAMILY_READS: Final[Mapping[str, frozenset[str]]] = {
    "mysql": frozenset(
        {"USE", "HELP", "HANDLER", "CHECK", "CHECKSUM", "XA", "GET", "DO", "SIGNAL", "RESIGNAL"}
    ),
    "postgresql": frozenset(
        {"END", "ABORT", "LISTEN", "UNLISTEN", "NOTIFY", "DISCARD", "RESET", "FETCH", "MOVE",
         "CLOSE", "DECLARE"}
    ),
    "sqlite": frozenset({"END", "ATTACH", "DETACH"}),
    "other": frozenset(),
}  # fmt: skip
_FAMILY_WRITES: Final[Mapping[str, frozenset[str]]] = {
    "mysql": frozenset({"RESET"}),  # RESET MASTER / REPLICA / PERSIST
    "postgresql": frozenset(),
    "sqlite": frozenset(),
    "other": frozenset(),
}

#: Words that may follow ``BEGIN`` when it only starts a transaction.
_TRANSACTION_WORDS: Final = frozenset(
    {
        "WORK", "TRANSACTION", "DEFERRED", "IMMEDIATE", "EXCLUSIVE", "ISOLATION", "LEVEL",
        "READ", "WRITE", "ONLY", "COMMITTED", "UNCOMMITTED", "REPEATABLE", "SERIALIZABLE",
        "NOT", "DEFERRABLE", ",",
    }
)  # fmt: skip
#: ``EXPLAIN``/``ANALYZE`` options before the statement they describe.
_EXPLAIN_OPTIONS: Final = frozenset(
    {
        "ANALYZE", "VERBOSE", "FORMAT", "=", "JSON", "TRADITIONAL", "TREE", "EXTENDED",
        "PARTITIONS", "QUERY", "PLAN", "PERSISTENT", "NO_WRITE_TO_BINLOG", "LOCAL",
    }
)  # fmt: skip
#: ``SET`` forms that change the server (or its grant tables), not the session.
_SET_WRITES: Final = frozenset({"GLOBAL", "PERSIST", "PERSIST_ONLY", "PASSWORD"})
#: SQLite pragmas that act when queried (``PRAGMA optimize``).
_PRAGMA_ACTIONS: Final = frozenset({"INCREMENTAL_VACUUM", "OPTIMIZE", "WAL_CHECKPOINT"})
#: SQLite pragmas whose argument form reads (``PRAGMA table_info(t)``).
_PRAGMA_LOOKUPS: Final = frozenset(
    {
        "TABLE_INFO", "TABLE_XINFO", "TABLE_LIST", "INDEX_LIST", "INDEX_INFO", "INDEX_XINFO",
        "FOREIGN_KEY_LIST", "FOREIGN_KEY_CHECK", "INTEGRITY_CHECK", "QUICK_CHECK",
    }
)  # fmt: skip
#: SQLite pragmas that set the connection only (nothing is written to the file).
_PRAGMA_SESSION: Final = frozenset(
    {
        "ANALYSIS_LIMIT", "AUTOMATIC_INDEX", "BUSY_TIMEOUT", "CACHE_SIZE", "CACHE_SPILL",
        "CASE_SENSITIVE_LIKE", "CELL_SIZE_CHECK", "CHECKPOINT_FULLFSYNC", "COUNT_CHANGES",
        "DEFER_FOREIGN_KEYS", "EMPTY_RESULT_CALLBACKS", "FOREIGN_KEYS", "FULL_COLUMN_NAMES",
        "FULLFSYNC", "HARD_HEAP_LIMIT", "IGNORE_CHECK_CONSTRAINTS", "JOURNAL_SIZE_LIMIT",
        "LEGACY_ALTER_TABLE", "LOCKING_MODE", "MAX_PAGE_COUNT", "MMAP_SIZE", "QUERY_ONLY",
        "READ_UNCOMMITTED", "RECURSIVE_TRIGGERS", "REVERSE_UNORDERED_SELECTS", "SECURE_DELETE",
        "SHORT_COLUMN_NAMES", "SOFT_HEAP_LIMIT", "SYNCHRONOUS", "TEMP_STORE", "THREADS",
        "TRUSTED_SCHEMA", "WAL_AUTOCHECKPOINT",
    }
)  # fmt: skip
#: MySQL executable comments: their opening (version included) and closing.
_EXECUTABLE = re.compile(r"\A/\*(?:M?!\d{0,6})(.*)\*/\Z", re.DOTALL)

#: The first words of statements, per dialect family (what ``check`` accepts).
STATEMENT_WORDS: Final[Mapping[str, frozenset[str]]] = {
    "mysql": frozenset(
        {
            "ALTER", "ANALYZE", "BACKUP", "BEGIN", "BINLOG", "CACHE", "CALL", "CHANGE", "CHECK",
            "CHECKSUM", "CLONE", "COMMIT", "CREATE", "DEALLOCATE", "DELETE", "DESC", "DESCRIBE",
            "DO", "DROP", "EXECUTE", "EXPLAIN", "FLUSH", "GET", "GRANT", "HANDLER", "HELP",
            "IMPORT", "INSERT", "INSTALL", "KILL", "LOAD", "LOCK", "OPTIMIZE", "PREPARE",
            "PURGE", "RELEASE", "RENAME", "REPAIR", "REPLACE", "RESET", "RESIGNAL", "RESTART",
            "REVOKE", "ROLLBACK", "SAVEPOINT", "SELECT", "SET", "SHOW", "SHUTDOWN", "SIGNAL",
            "START", "STOP", "TABLE", "TRUNCATE", "UNINSTALL", "UNLOCK", "UPDATE", "USE",
            "VALUES", "WITH", "XA",
            # compound statements (stored programs; MariaDB also runs them at top level)
            "CASE", "IF", "LOOP", "REPEAT", "WHILE",
        }
    ),
    "postgresql": frozenset(
        {
            "ABORT", "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER",
            "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE",
            "DISCARD", "DO", "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT",
            "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "PREPARE",
            "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE", "ROLLBACK",
            "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW", "START", "TABLE", "TRUNCATE",
            "UNLISTEN", "UPDATE", "VACUUM", "VALUES", "WITH",
        }
    ),
    "sqlite": frozenset(
        {
            "ALTER", "ANALYZE", "ATTACH", "BEGIN", "COMMIT", "CREATE", "DELETE", "DETACH",
            "DROP", "END", "EXPLAIN", "INSERT", "PRAGMA", "REINDEX", "RELEASE", "REPLACE",
            "ROLLBACK", "SAVEPOINT", "SELECT", "UPDATE", "VACUUM", "VALUES", "WITH",
        }
    ),
}  # fmt: skip

_Tokens = list[tuple[str, str]]
_NAMES: Final = {"mysql": "MySQL/MariaDB", "postgresql": "PostgreSQL", "sqlite": "SQLite"}


def _family(dialect: str) -> str:
    """The rules *dialect* (a SQLAlchemy dialect name) follows; ``other`` when none is known."""
    name = dialect.lower()
    return _FAMILIES.get(name) or _FAMILIES_MORE.get(name) or "other"


def effect(sql: str, *, dialect: str) -> Effect:
    """What running *sql* does (see the module docstring for the verdicts).

    Cheap: the verdicts of texts up to 4096 characters are remembered (a host sends the same
    texts again and again: about 0.1 µs then); otherwise a text starting with ``SELECT`` or
    ``SHOW`` with no ``;`` and no ``into`` in it is a read, and one starting with ``INSERT``,
    ``UPDATE``, DDL... a write, without tokenising; other texts are tokenised.

    Args:
        sql: the text as sent to the server: one statement or several, comments included.
        dialect: a SQLAlchemy dialect name (``mysql``, ``mariadb``, ``postgresql``,
            ``sqlite``; any other name gets the rules common to all).
    """
    if len(sql) <= _REMEMBERED_UP_TO:
        return _remembered(sql, dialect)
    return _decide(sql, dialect)


def _decide(sql: str, dialect: str) -> Effect:
    if sql[:6].upper() == "SELECT" and sql[6:7] in _AFTER_SELECT and _plain(sql):
        return READ  # the common case first: one test of the first word, no regex
    head = _HEAD.match(sql)
    if head is not None:
        word = head.group(1).upper()
        if word in _WRITES:
            return WRITE
        if word in _PLAIN_READS and _plain(sql):
            return READ
    return _classify(sql, _family(dialect))


#: Texts longer than this are judged again each time (the cache keeps what it remembers).
_REMEMBERED_UP_TO: Final = 4096
_remembered: Final = functools.lru_cache(maxsize=1024)(_decide)


def _plain(sql: str) -> bool:
    """No second statement (``;``) and no ``INTO`` in a read: nothing more to look at."""
    return ";" not in sql and "into" not in sql.lower()


def _classify(sql: str, fam: str) -> Effect:
    try:
        statements = _statements(sql, fam)
    except SplitError:
        return UNKNOWN
    verdict = READ
    for toks in statements:
        one = _one(toks, fam)
        if one is WRITE:
            return WRITE
        if one is UNKNOWN:
            verdict = UNKNOWN
    return verdict


def _scan_family(fam: str) -> str:
    return "sqlite" if fam == "other" else fam


def _executed(sql: str, fam: str) -> str:
    """*sql* with MySQL's executable comments opened: their content runs, so it is code."""
    if fam != "mysql" or "/*" not in sql:
        return sql
    parts: list[str] = []
    for token in scan(sql, dialect="mysql"):
        opened = _EXECUTABLE.match(token.text) if token.kind in (HINT, COMMENT) else None
        if opened is not None:
            parts.append(f" {opened.group(1)} ")
        elif token.kind == HINT:  # an optimizer hint (/*+ ... */): no statement in it
            parts.append(" ")
        else:
            parts.append(token.text)
    return "".join(parts)


def _statements(sql: str, fam: str) -> list[_Tokens]:
    """The significant tokens of each ``;``-separated statement of *sql* (none when empty).

    Raises:
        SplitError: a string, comment or quote is not terminated.
    """
    out: list[_Tokens] = []
    current: _Tokens = []
    for tok in words(_executed(sql, fam), _scan_family(fam)):
        if tok == ("punct", ";"):
            if current:
                out.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        out.append(current)
    return out


def _start(toks: _Tokens) -> int:
    """Where the statement proper starts: after opening parentheses and a label (``l: BEGIN``)."""
    i = 0
    while i < len(toks) and toks[i][1] == "(":
        i += 1
    if i + 1 < len(toks) and toks[i][0] == "word" and toks[i + 1][1] == ":":
        i += 2
    return i


def _upper(toks: _Tokens) -> list[str]:
    """Words upper-cased, punctuation as is; strings and quoted names blank (never keywords)."""
    return [t.upper() if k == "word" else (t if k == "punct" else "") for k, t in toks]


def _one(toks: _Tokens, fam: str) -> Effect:
    """The verdict for one statement's tokens."""
    toks = toks[_start(toks) :]
    if not toks or toks[0][0] != "word":
        return UNKNOWN
    up = _upper(toks)
    head = up[0]
    rule = _RULES.get(head)
    if rule is not None:
        return rule(toks, up, fam)
    if head in _WRITES or head in _FAMILY_WRITES[fam]:
        return WRITE
    if head in _READS or head in _FAMILY_READS[fam]:
        return READ
    return UNKNOWN


def _into(up: list[str]) -> Effect:
    """A query's verdict: ``INTO`` a table writes; into variables or a file, it reads."""
    for j, word in enumerate(up):
        if word == "INTO" and up[j + 1 : j + 2] not in (["@"], ["OUTFILE"], ["DUMPFILE"]):
            return WRITE
    return READ


def _query(_toks: _Tokens, up: list[str], _fam: str) -> Effect:
    return _into(up)


def _with(_toks: _Tokens, up: list[str], _fam: str) -> Effect:
    """``WITH``: a data-modifying statement anywhere in it writes."""
    for j, word in enumerate(up):
        after = up[j + 1 : j + 2]
        if word in ("DELETE", "MERGE"):
            return WRITE
        if word in ("INSERT", "REPLACE") and after != ["("]:  # not the string functions
            return WRITE
        if word == "UPDATE" and up[j - 1 : j] not in (["FOR"], ["KEY"]):  # not FOR [NO KEY] UPDATE
            return WRITE
    return _into(up)


def _skip_options(up: list[str], j: int) -> int:
    """The index after ``EXPLAIN``/``ANALYZE`` options (words and a parenthesised list)."""
    while j < len(up):
        if up[j] == "(":
            depth = 0
            while j < len(up):
                depth += (up[j] == "(") - (up[j] == ")")
                j += 1
                if depth == 0:
                    break
        elif up[j] in _EXPLAIN_OPTIONS:
            j += 1
        else:
            break
    return j


def _explain(toks: _Tokens, up: list[str], fam: str) -> Effect:
    """``EXPLAIN X``: X's verdict (``EXPLAIN ANALYZE`` runs X); ``DESCRIBE t``: a read."""
    j = _skip_options(up, 1)
    if j >= len(up):
        return UNKNOWN
    if up[j] in _RULES or up[j] in _WRITES or up[j] in ("CALL", "EXECUTE", "DO"):
        return _one(toks[j:], fam)
    return READ  # a table's description, or EXPLAIN FOR CONNECTION n


def _analyze(toks: _Tokens, up: list[str], fam: str) -> Effect:
    """MariaDB ``ANALYZE SELECT`` reads; ``ANALYZE UPDATE`` runs the update; ``ANALYZE
    [TABLE] t`` rewrites statistics."""
    j = _skip_options(up, 1)
    if up[j : j + 1] in (["SELECT"], ["WITH"], ["VALUES"]):
        return _one(toks[j:], fam)
    return WRITE


def _set(toks: _Tokens, up: list[str], fam: str) -> Effect:
    """``SET`` changes the session, except the server's settings and passwords."""
    if up[1:2] == ["STATEMENT"]:  # MariaDB: SET STATEMENT var = value [, ...] FOR statement
        depth = 0
        for j, word in enumerate(up):
            depth += (word == "(") - (word == ")")
            if word == "FOR" and depth == 0:
                return _one(toks[j + 1 :], fam)
        return UNKNOWN
    if _SET_WRITES.intersection(up) or up[1:3] == ["DEFAULT", "ROLE"]:
        return WRITE
    return READ


def _begin(_toks: _Tokens, up: list[str], _fam: str) -> Effect:
    """``BEGIN [WORK | TRANSACTION | IMMEDIATE ...]`` starts a transaction; anything else after
    it (MariaDB ``BEGIN NOT ATOMIC ... END``) is a block of statements."""
    return READ if _TRANSACTION_WORDS.issuperset(up[1:]) else UNKNOWN


def _start_statement(_toks: _Tokens, up: list[str], _fam: str) -> Effect:
    """``START TRANSACTION`` reads; ``START REPLICA``/``SLAVE``/``GROUP_REPLICATION`` does not."""
    return READ if up[1:2] == ["TRANSACTION"] else WRITE


def _copy(_toks: _Tokens, up: list[str], _fam: str) -> Effect:
    """PostgreSQL ``COPY t FROM ...`` writes rows; ``COPY t|(query) TO ...`` reads them."""
    depth = 0
    for word in up[1:]:
        depth += (word == "(") - (word == ")")
        if depth == 0 and word == "FROM":
            return WRITE
        if depth == 0 and word == "TO":
            return READ
    return UNKNOWN


def _pragma(_toks: _Tokens, up: list[str], fam: str) -> Effect:
    """SQLite ``PRAGMA [schema.]name [= value | (argument)]``."""
    if fam != "sqlite":
        return UNKNOWN
    j = 3 if up[2:3] == ["."] else 1
    name, rest = (up[j] if j < len(up) else ""), up[j + 1 :]
    if not name:
        return UNKNOWN
    if not rest:  # a query: reads, except the pragmas that act
        return WRITE if name in _PRAGMA_ACTIONS else READ
    if rest[0] == "(" and name in _PRAGMA_LOOKUPS:
        return READ
    if rest[0] in ("(", "="):
        return READ if name in _PRAGMA_SESSION else WRITE
    return UNKNOWN


_Rule = Callable[[_Tokens, list[str], str], Effect]
_RULES: Final[Mapping[str, _Rule]] = {
    "SELECT": _query,
    "VALUES": _query,
    "TABLE": _query,
    "WITH": _with,
    "EXPLAIN": _explain,
    "DESCRIBE": _explain,
    "DESC": _explain,
    "ANALYZE": _analyze,
    "SET": _set,
    "BEGIN": _begin,
    "START": _start_statement,
    "COPY": _copy,
    "PRAGMA": _pragma,
}


# ----------------------------------------------------------------------------- check


#: How many tokens :func:`_first_token` reads before it reads the whole statement.
_FIRST: Final = 8
#: A label before a statement (``l: BEGIN``): its first token is the word after it.
_LABEL: Final = re.compile(r"[\w$]+\s*:")


def _first_token(sql: str, fam: str) -> tuple[str, str] | None:
    """The first significant token of a statement, executable comments opened."""
    executed = _executed(sql, fam)
    plain = leading_word(executed)
    if plain is not None and not _LABEL.match(executed, len(executed) - len(executed.lstrip())):
        return ("word", plain)
    toks = head_words(executed, fam, _FIRST)
    if len(toks) == _FIRST:  # as many opening parentheses: read it all
        toks = words(executed, fam)
    i = _start(toks)
    return toks[i] if i < len(toks) else None


def _strangers(text: str, fam: str) -> list[tuple[int, str, str]] | SplitError:
    """(line, what it starts with, word) of each statement of *text* that does not start with
    a statement word of *fam*, or the error met when *fam*'s rules cannot split *text*. What
    it starts with is the word, or the statement's first line when it does not start with one
    (``\\i file``); word is then empty."""
    try:
        sections = split_sections(text, dialect=fam)
        firsts = [(s, _first_token(s.text, fam)) for s in (*sections.up, *sections.down)]
    except SplitError as error:
        return error
    return _not_statements(((s.line, s.text, first) for s, first in firsts), fam)


def _not_statements(
    items: Iterable[tuple[int, str, tuple[str, str] | None]], fam: str
) -> list[tuple[int, str, str]]:
    """(line, what it starts with, word) of each (line, text, first token) that does not
    start with a statement word of *fam*."""
    found = []
    for line, text, first in items:
        if first is None:
            continue  # only an optimizer hint: nothing runs
        kind, word = first
        if kind == "word" and word.upper() in STATEMENT_WORDS[fam]:
            continue
        if kind == "word":
            found.append((line, word, word))
        else:
            found.append((line, text.split("\n", 1)[0].strip(), ""))
    return found


def check_statements(
    statements: Iterable[tuple[int, str]], *, path: str, dialect: str
) -> tuple[Finding, ...]:
    """:func:`check_sql` for statements already cut out of a file: (line, text) each, for
    the target's *dialect* (what a run checks before it starts)."""
    fam = _family(dialect)
    if fam == "other":
        return ()
    items = ((line, text, _first_token(text, fam)) for line, text in statements)
    return _statement_findings(_not_statements(items, fam), fam, path, known_dialect=True)


def check_sql(
    text: str, *, path: str, dialect: str | None = None, step: bool = False
) -> tuple[Finding, ...]:
    """Flag each statement of a migration file whose first word is not a SQL statement.

    Such a statement (``SELEC x``, a client command such as ``\\i file`` or ``.tables``, a
    stray word left by an edit) fails only when the step runs; this finds it before.

    Args:
        text: the file's text.
        path: the file's path, for the findings.
        dialect: the target's dialect, when known: its family's statements are the ones
            accepted. None: each family (MySQL, PostgreSQL, SQLite) is tried and the one that
            reads the file best is used, so a file passes when any family accepts all of it.
        step: *text* is a step's own file (not a down twin), so it must hold a statement to
            run: an empty or comment-only file (or up section) is an error (code
            ``sql.empty``), not a step recorded as applied that did nothing.

    Returns:
        ERROR findings: one per statement that does not start with a statement word (code
        ``sql.statement``, its line and first word), or one for a text no family can split
        (code ``sql.split``: an unterminated string, quote or comment, and its line).
    """
    families = ("mysql", "postgresql", "sqlite") if dialect is None else (_family(dialect),)
    if families == ("other",):
        return ()
    if step:
        empty = _nothing_to_run(text, families, path)
        if empty is not None:
            return (empty,)
    best: tuple[str, list[tuple[int, str, str]]] | None = None
    first_error: SplitError | None = None
    for fam in families:
        found = _strangers(text, fam)
        if found == []:
            return ()
        if isinstance(found, SplitError):
            first_error = first_error or found
        elif best is None or len(found) < len(best[1]):
            best = (fam, found)
    if best is None:
        assert first_error is not None
        error = first_error
        return (
            Finding(
                severity=Severity.ERROR,
                code="sql.split",
                path=path,
                line=error.line,
                message=error.message,
                hint="close it: the file cannot be cut into statements",
            ),
        )
    fam, found = best  # the first family that reads the file best
    return _statement_findings(found, fam, path, known_dialect=dialect is not None)


def _nothing_to_run(text: str, families: Iterable[str], path: str) -> Finding | None:
    """An ERROR when every family that can split *text* finds no up statement in it (None
    when one finds some, or none can split it: that error is reported instead)."""
    split = []
    for fam in families:
        try:
            split.append(split_sections(text, dialect=fam))
        except SplitError:
            continue
    if not split or any(sections.up for sections in split):
        return None
    has_down = any(sections.down for sections in split)
    where = "its up section holds" if has_down else "the file is empty or holds"
    return Finding(
        severity=Severity.ERROR,
        code="sql.empty",
        path=path,
        line=1,
        message=f"no statement to run: {where} only comments and blank lines",
        hint="add the migration's statements, or delete the file: a step that runs nothing"
        " would still be recorded as applied",
    )


def _statement_findings(
    found: list[tuple[int, str, str]], fam: str, path: str, *, known_dialect: bool
) -> tuple[Finding, ...]:
    import difflib  # only check needs it (the guard imports this module in every host)

    known = sorted(STATEMENT_WORDS[fam])
    what = f"a {_NAMES[fam]} statement" if known_dialect else "a SQL statement"
    findings = []
    for line, start, word in found:
        shown = start if len(start) <= 40 else start[:37] + "..."
        close = difflib.get_close_matches(word.upper(), known, n=1) if word else []
        hint = f"did you mean {close[0]}? " if close else ""
        findings.append(
            Finding(
                severity=Severity.ERROR,
                code="sql.statement",
                path=path,
                line=line,
                message=f"statement starts with '{shown}', which is not {what}",
                hint=f"{hint}correct or remove it: it would fail when the step runs",
            )
        )
    return tuple(findings)
