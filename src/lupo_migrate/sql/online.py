"""How a MySQL/MariaDB ``ALTER TABLE`` or ``CREATE INDEX`` is sent so that it blocks the
application as little as the server allows (functional core).

A plain ``ALTER TABLE`` lets the server pick its algorithm: ``INSTANT`` where it can (a
metadata change), else ``INPLACE`` (the table is rebuilt or an index built while writes go on,
where the operation allows it), else ``COPY``, which blocks every write for as long as the
copy takes. The file's text says nothing of which one it will be. So each such statement is
sent with an explicit clause, most online first: ``ALGORITHM=INSTANT``, then
``ALGORITHM=INPLACE, LOCK=NONE``. The server refuses a clause it cannot honour at once, before
doing anything (errors 1845/1846: "ALGORITHM=INSTANT is not supported. Reason: ADD INDEX"), so
the choice is the server's own answer, not a guess from the text; the strategy that ran is
recorded in the run's ``statement`` events.

The ``online`` setting (or a file's ``-- online:`` header) says what is allowed:

======== ===================================================================================
auto     ``INSTANT``, else ``INPLACE, LOCK=NONE``, else an online copy (a shadow table, see
         ``sql.online_copy``) where the table has enough rows for it to matter and can be
         copied exactly, else the statement as written (the server may then copy the table
         and block writes); the default
instant  ``INSTANT`` only: anything else fails the step before it runs
inplace  ``INSTANT`` or ``INPLACE, LOCK=NONE``: a statement that would block writes fails the
         step before it runs
copy     an online copy, whatever the server could do in place; a statement or table that
         cannot be copied exactly fails the step before anything changes
off      the statement as written, nothing tried
======== ===================================================================================

A statement that names its own ``ALGORITHM`` or ``LOCK``, or works on partitions, is sent as
written whatever the setting: the file said.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "AS_WRITTEN",
    "COPY",
    "EXECUTORS",
    "INPLACE",
    "INSTANT",
    "LUPO",
    "MODES",
    "PT_OSC",
    "REFUSED",
    "after_table",
    "attempts",
    "check_executor",
    "check_mode",
    "retarget",
    "table_of",
]

#: The values of the ``online`` setting.
MODES: Final = ("auto", "instant", "inplace", "copy", "off")
#: The values of the ``copy_executor`` setting: what makes an online copy (lupo_migrate's own,
#: or Percona's tool: ``sql.pt_osc``). Here, not there, so that reading the settings does
#: not load the tool's module.
LUPO: Final = "lupo"
PT_OSC: Final = "pt-online-schema-change"
EXECUTORS: Final = (LUPO, PT_OSC)
#: Strategy names, as recorded in events and shown by ``--dry-run``.
INSTANT: Final = "instant"
INPLACE: Final = "inplace"
AS_WRITTEN: Final = "as written"
COPY: Final = "copy"
#: The MySQL/MariaDB errors of a refused ``ALGORITHM`` / ``LOCK`` clause (nothing ran):
#: ER_ALTER_OPERATION_NOT_SUPPORTED and ER_ALTER_OPERATION_NOT_SUPPORTED_REASON.
REFUSED: Final = (1845, 1846)

_COMMENTS: Final = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/)+", re.DOTALL)
_NAME: Final = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_TABLE: Final = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_ALTER: Final = re.compile(
    rf"alter\s+(?:online\s+|ignore\s+)*table\s+(?:if\s+exists\s+)?(?P<table>{_TABLE})",
    re.IGNORECASE,
)
_INDEX: Final = re.compile(
    rf"create\s+(?:or\s+replace\s+)?(?:unique\s+|fulltext\s+|spatial\s+)?index\s+"
    rf"(?:if\s+not\s+exists\s+)?{_NAME}\s+(?:using\s+\w+\s+)?on\s+(?P<table>{_TABLE})",
    re.IGNORECASE,
)
#: The file names its own algorithm or lock, or works on partitions: sent as written.
_OWN: Final = re.compile(r"\balgorithm\s*=|\block\s*=|\bpartition", re.IGNORECASE)


def check_executor(value: object, where: str) -> str:
    """*value* as a ``copy_executor``; ``ValueError`` naming *where* and the choices
    otherwise.

    >>> check_executor("PT-Online-Schema-Change", "lupo.toml")
    'pt-online-schema-change'
    """
    text = str(value).strip().lower()
    if text not in EXECUTORS:
        raise ValueError(
            f"{where}: copy_executor {value!r} is not one of {', '.join(EXECUTORS)}"
            " (lupo: lupo_migrate's own online copy)"
        )
    return text


def check_mode(value: object, where: str) -> str:
    """*value* as an ``online`` mode; ``ValueError`` naming *where* and the modes otherwise."""
    text = str(value).strip().lower()
    if text not in MODES:
        raise ValueError(f"{where}: online must be one of {', '.join(MODES)}, got {value!r}")
    return text


def _match(statement: str) -> tuple[re.Match[str], bool] | None:
    start = _COMMENTS.match(statement)
    at = start.end() if start else 0
    found = _ALTER.match(statement, at)
    if found is not None:
        return found, True
    found = _INDEX.match(statement, at)
    return None if found is None else (found, False)


def attempts(statement: str, family: str, mode: str) -> tuple[tuple[str, str], ...]:
    """The (strategy, text) to send *statement* as, in order, each tried when the server
    refused the one before (see the module docstring); empty: send it as written, there is
    nothing to choose (another statement, another database, ``off``, or the file names its
    own ``ALGORITHM`` / ``LOCK``).

    >>> [s for s, _ in attempts("ALTER TABLE t ADD COLUMN c INT", "mysql", "auto")]
    ['instant', 'inplace', 'copy', 'as written']
    >>> attempts("CREATE INDEX i ON t (c)", "mysql", "inplace")[0][1]
    'CREATE INDEX i ON t (c)\\nALGORITHM=INPLACE LOCK=NONE'
    """
    if family != "mysql" or mode == "off":
        return ()
    matched = _match(statement)
    if matched is None or _OWN.search(statement, matched[0].end()) is not None:
        return ()
    alter = matched[1]
    copy = (COPY, statement)
    if mode == COPY:
        return (copy,)
    # On a line of its own: a trailing "-- comment" in the statement cannot swallow it.
    instant = (INSTANT, statement + ("\n, ALGORITHM=INSTANT" if alter else "\nALGORITHM=INSTANT"))
    inplace = (
        INPLACE,
        statement
        + ("\n, ALGORITHM=INPLACE, LOCK=NONE" if alter else "\nALGORITHM=INPLACE LOCK=NONE"),
    )
    if mode == INSTANT:
        return (instant,)
    tries = (instant, inplace) if alter else (inplace,)  # no index is ever added instantly
    return tries if mode == INPLACE else (*tries, copy, (AS_WRITTEN, statement))


def retarget(statement: str, table: str) -> str | None:
    """*statement* with the table it alters (or indexes) replaced by *table*, to try it on an
    empty copy; None when it is not one :func:`attempts` chooses for."""
    matched = _match(statement)
    if matched is None:
        return None
    found = matched[0]
    return statement[: found.start("table")] + table + statement[found.end("table") :]


def after_table(statement: str) -> str | None:
    """What *statement* does to the table it alters or indexes: its text after the table's
    name (``ALTER TABLE``), or the whole statement (``CREATE INDEX``); None for another
    statement.

    >>> after_table("ALTER TABLE t MODIFY c BIGINT")
    ' MODIFY c BIGINT'
    """
    matched = _match(statement)
    if matched is None:
        return None
    return statement[matched[0].end("table") :] if matched[1] else statement


def table_of(statement: str) -> str | None:
    """The table (as written) that *statement* alters or indexes, or None."""
    matched = _match(statement)
    return None if matched is None else matched[0].group("table")
