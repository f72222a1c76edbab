"""SQL text for values and names, per dialect: literals that cannot break out of their quotes.

Nothing here knows about seed files; copy it into any handler that renders values into SQL.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["FAMILIES", "family", "quote_identifier", "sql_literal"]

#: Dialect name (as ``StepContext.dialect`` gives it) -> the family whose quoting rules apply.
FAMILIES: Final = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "sqlite": "sqlite",
}
#: Integers written as numbers: canonical (no sign but ``-``, no leading zero), so the text
#: read back from a text column is the text written.
_INTEGER: Final = re.compile(r"0|-?[1-9][0-9]*")
_INT64: Final = 2**63


def family(dialect: str) -> str:
    """The quoting family of *dialect* (``mysql``, ``postgresql`` or ``sqlite``).

    Raises:
        ValueError: the dialect is none of ``mysql``, ``mariadb``, ``postgresql``, ``sqlite``.
    """
    found = FAMILIES.get(dialect.split("+", 1)[0].lower())
    if found is None:
        raise ValueError(
            f"no quoting rules for dialect {dialect!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    return found


def quote_identifier(name: str, *, dialect: str) -> str:
    """*name* quoted as an identifier: backticks on MySQL/MariaDB, double quotes elsewhere.

    Always quoted, so reserved words and names with spaces work; the quote character inside
    the name is doubled.

    Raises:
        ValueError: the dialect is not one :func:`family` knows.
    """
    quote = "`" if family(dialect) == "mysql" else '"'
    return quote + name.replace(quote, quote * 2) + quote


def sql_literal(value: str | None, *, dialect: str) -> str:
    """*value* as a SQL literal of *dialect*: NULL, an integer, or an escaped string.

    A string is quoted with ``'``, doubled inside. A backslash needs more, because some
    servers read it as an escape: MySQL/MariaDB do unless ``NO_BACKSLASH_ESCAPES`` is set, and
    PostgreSQL does when ``standard_conforming_strings`` is off. Such a value is written in a
    form that reads the same in every mode: a UTF-8 hex literal (``_utf8mb4 X'...'``) on
    MySQL/MariaDB, an escape string (``E'...'``, backslashes doubled) on PostgreSQL. SQLite
    never treats a backslash specially.

    Args:
        value: the field's text; None (an empty field) is NULL.
        dialect: ``mysql``, ``mariadb``, ``postgresql`` or ``sqlite``.

    Raises:
        ValueError: *value* holds a NUL character (no SQL string literal can carry one
            everywhere), or the dialect is not one of those above.
    """
    kind = family(dialect)
    if value is None:
        return "NULL"
    if "\x00" in value:
        raise ValueError("a NUL character cannot be written as a SQL string literal")
    if _INTEGER.fullmatch(value) and -_INT64 <= int(value) < _INT64:
        return value
    if "\\" in value and kind == "mysql":
        return "_utf8mb4 X'" + value.encode("utf-8").hex().upper() + "'"
    quoted = "'" + value.replace("'", "''") + "'"
    if "\\" in value and kind == "postgresql":
        return "E" + quoted.replace("\\", "\\\\")
    return quoted
