"""Which statements leave something in their session that a later statement could see
(functional core: a statement's text in, yes or no out).

The engine's own client applies each file in a session of its own. lupo_migrate runs
consecutive MySQL/MariaDB steps on one connection (their writes commit together, see
``SqlAlchemyTarget.step_session``) and takes PostgreSQL's step connections from a pool, so a
step whose statements change their session ends it: the next step gets a new one. These are
the statements that may: settings (``SET``, ``RESET``, ``set_config()``), user variables
(``SET @x``, ``@x :=``, ``INTO @x``), the current database (``USE``), temporary tables,
prepared statements, locks held by name or by ``LOCK TABLES``, transaction control, and what
cannot be told from the text (``CALL``, PostgreSQL's ``DO`` blocks). MySQL's executable
comments count as what they hold (a ``mysqldump`` header's ``/*!40101 SET NAMES utf8 */``).

What a session remembers of any statement (``LAST_INSERT_ID()``, ``ROW_COUNT()``,
``FOUND_ROWS()``, ``lastval()``) is not looked for here: the target resets it at each step's
start instead, whatever the step ran.

The answer errs towards yes: a statement that only reads a user variable, or mentions
``GET_LOCK`` in a string, costs its step a new connection, nothing more.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from lupo_migrate.sql.touches import words

__all__ = ["changes_session", "reads_last_statement"]

#: A statement without any of these words cannot change its session (the quick answer).
_MAYBE: Final = {
    "mysql": re.compile(
        r"(?i)@|/\*M?!|\b(?:set|use|prepare|execute|deallocate|call|lock|unlock|handler|start"
        r"|begin|commit|rollback|savepoint|release|xa|flush|temporary|get_lock|release_lock"
        r"|release_all_locks)\b"
    ),
    "postgresql": re.compile(
        r"(?i)\b(?:set|reset|prepare|deallocate|listen|unlisten|load|declare|discard|call|do"
        r"|begin|start|commit|end|rollback|abort|savepoint|release|temp|temporary|set_config"
        r"|pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock"
        r"|pg_try_advisory_lock_shared|setseed)\b"
    ),
}
#: Statements (by their first word) that change their session, or may.
_FIRST: Final = {
    "mysql": frozenset(
        {
            "SET", "USE", "PREPARE", "EXECUTE", "DEALLOCATE", "CALL", "LOCK", "UNLOCK",
            "HANDLER", "START", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA",
            "FLUSH",
        }
    ),
    "postgresql": frozenset(
        {
            "SET", "RESET", "PREPARE", "DEALLOCATE", "LISTEN", "UNLISTEN", "LOAD", "DECLARE",
            "DISCARD", "CALL", "DO", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT",
            "SAVEPOINT", "RELEASE",
        }
    ),
}  # fmt: skip
#: PostgreSQL ``SET`` forms that last only until the transaction (the step) ends.
_TRANSACTION_SET: Final = frozenset({"LOCAL", "CONSTRAINTS", "TRANSACTION"})
#: Functions that keep something in the session (locks held by name, settings, the seed).
_FUNCTIONS: Final = {
    "mysql": frozenset({"GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS"}),
    "postgresql": frozenset(
        {
            "SET_CONFIG", "PG_ADVISORY_LOCK", "PG_ADVISORY_LOCK_SHARED", "PG_TRY_ADVISORY_LOCK",
            "PG_TRY_ADVISORY_LOCK_SHARED", "SETSEED",
        }
    ),
}  # fmt: skip
_TEMPORARY: Final = frozenset({"TEMP", "TEMPORARY"})
#: The text of a MySQL executable comment: ``/*!40101 SET NAMES utf8 */``, ``/*M!100101 ...*/``.
_HINT_BODY = re.compile(r"\A/\*(?:M?!\d*|\+)([\s\S]*?)\*/\Z")


def _tokens(sql: str, fam: str) -> list[tuple[str, str]]:
    """The statement's significant tokens, those inside executable comments included."""
    out: list[tuple[str, str]] = []
    for kind, text in words(sql, fam):
        body = _HINT_BODY.match(text) if kind == "hint" else None
        if body is not None:
            out.extend(_tokens(body.group(1), fam))
        else:
            out.append((kind, text))
    return out


#: What a statement reads of the statement before it in its session (MySQL/MariaDB).
_READS_LAST: Final = re.compile(r"row_count|found_rows|warning|last_insert_id|@@", re.I)


def reads_last_statement(statement: str) -> bool:
    """Whether *statement* may read what the one before it left in the session
    (``ROW_COUNT()``, ``FOUND_ROWS()``, warnings, ``LAST_INSERT_ID()``, ``@@`` variables):
    none of lupo_migrate's own writes may go between them. Errs towards yes (plain text)."""
    return _READS_LAST.search(statement) is not None


@functools.lru_cache(maxsize=4096)
def changes_session(statement: str, fam: str) -> bool:
    """Whether *statement* may leave something in its session that a later statement could
    see (see the module docstring). *fam*: ``mysql`` or ``postgresql``; any other family
    answers yes (its target gives every step a new connection anyway)."""
    quick = _MAYBE.get(fam)
    if quick is None:
        return True
    if quick.search(statement) is None:
        return False
    toks = _tokens(statement, fam)
    up = [text.upper() if kind == "word" else "" for kind, text in toks]
    if not up:
        return False
    first = up[0]
    if first in _FIRST[fam]:
        # PostgreSQL's SET LOCAL, SET CONSTRAINTS, SET TRANSACTION end with the step.
        lasting = fam != "postgresql" or first != "SET" or len(up) < 2
        return lasting or up[1] not in _TRANSACTION_SET
    if first == "CREATE" and _TEMPORARY & set(up[1:4]):
        return True
    if fam == "mysql" and first == "DROP" and "TEMPORARY" in up[1:2]:
        return True
    if _FUNCTIONS[fam] & set(up):
        return True
    for i, word in enumerate(up[:-1]):
        if word == "INTO" and (toks[i + 1][1] == "@" or up[i + 1] in _TEMPORARY):
            return True  # SELECT ... INTO @x (MySQL), SELECT ... INTO TEMP t (PostgreSQL)
    if fam == "mysql":
        return any(_assigns(toks, i) for i, (_, text) in enumerate(toks) if text == "@")
    return False


def _assigns(toks: list[tuple[str, str]], i: int) -> bool:
    """Whether the ``@`` at *i* starts a user variable given a value: ``@x :=``."""
    if i > 0 and toks[i - 1][1] == "@":
        return False  # @@system_variable
    after = [text for _, text in toks[i + 1 : i + 4]]
    return len(after) == 3 and toks[i + 1][0] != "punct" and after[1:] == [":", "="]
