"""Federation rendering of SQL: logical schema placeholders and literal schema renames.

Functional core: values in, text out. Two rewrites, both token-aware (see
:func:`lupo_migrate.sql.split.scan`), so comments are never touched:

- **placeholders** ``${core}``, ``${orchestration}``, ``${ephemeral}`` (any key of *names*) become
  the physical name, in code, strings and quoted identifiers alike (quoted as needed in code,
  with the surrounding quote character doubled inside strings and quoted identifiers);
- **renames** rewrite a literal schema qualifier, such as `` `lupopedia`.`t` `` or
  ``lupopedia.t`` (``"lupopedia".t`` on PostgreSQL and SQLite), and only in qualifier position:
  an identifier followed by ``.`` and not itself preceded by ``.``. Strings (including
  PostgreSQL dollar-quoted bodies) and comments are left as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.sql.split import CODE, COMMENT, QUOTED, STRING, Token, family, scan

__all__ = ["quote_identifier", "render"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SIMPLE: Final = {
    "mysql": re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z"),
    "postgresql": re.compile(r"[a-z_][a-z0-9_$]*\Z"),
    "sqlite": re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z"),
}
_OPENERS: Final = {"`": "`", '"': '"', "[": "]"}


def quote_identifier(name: str, *, dialect: str) -> str:
    """Quote *name* as an identifier of *dialect* (backticks on MySQL, double quotes elsewhere)."""
    quote = "`" if family(dialect) == "mysql" else '"'
    return quote + name.replace(quote, quote * 2) + quote


def render(sql: str, *, names: Mapping[str, str], renames: Mapping[str, str], dialect: str) -> str:
    """Substitute placeholders and rename literal schema qualifiers in one statement.

    Args:
        sql: the statement (or a whole script; delimiters are plain text here).
        names: logical schema name (``core``...) to physical name; its keys are the placeholders.
        renames: literal schema name in the SQL to the name to use instead.
        dialect: a SQLAlchemy dialect name; decides quoting and which quotes are identifiers.

    Returns:
        The rendered SQL; equal to *sql* when there is nothing to substitute.

    Raises:
        InvalidArgumentError: a placeholder names no key of *names*, or the dialect is unknown.
        SplitError: the SQL has an unterminated string or comment.
    """
    try:
        fam = family(dialect)
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None
    if "${" not in sql and not any(old in sql for old in renames):
        return sql
    tokens = _merged(scan(sql, dialect=fam))
    out: list[str] = []
    for i, token in enumerate(tokens):
        text = token.text
        if token.kind == COMMENT:
            out.append(text)
            continue
        if renames and token.kind == CODE:
            text = _rename_code(text, renames, fam, after_dot=_ends_with_dot(tokens, i - 1))
        elif renames and token.kind == QUOTED:
            text = _rename_quoted(text, renames, tokens, i)
        if "${" in text:
            text = _substitute(text, token.kind, names, fam)
        out.append(text)
    return "".join(out)


def _merged(tokens: Iterable[Token]) -> list[Token]:
    """Tokens with adjacent CODE runs joined, so no placeholder or name is cut in two."""
    merged: list[Token] = []
    for token in tokens:
        if merged and token.kind == CODE and merged[-1].kind == CODE:
            last = merged[-1]
            merged[-1] = Token(CODE, last.text + token.text, last.start, last.line)
        else:
            merged.append(token)
    return merged


def _ends_with_dot(tokens: list[Token], i: int) -> bool:
    return i >= 0 and tokens[i].kind == CODE and tokens[i].text.rstrip().endswith(".")


def _rename_code(text: str, renames: Mapping[str, str], fam: str, *, after_dot: bool) -> str:
    flags = 0 if fam == "mysql" else re.IGNORECASE  # unquoted names fold on PostgreSQL
    alternatives = "|".join(re.escape(k) for k in sorted(renames, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w$.])(" + alternatives + r")(?![\w$])(?=\s*\.)", flags)
    folded = {k.lower(): v for k, v in renames.items()}

    def replace(m: re.Match[str]) -> str:
        if after_dot and text[: m.start()].strip() == "":
            return m.group()  # ``x . lupopedia .`` names a table, not a schema
        new = renames.get(m.group(1), folded.get(m.group(1).lower(), m.group(1)))
        simple = _SIMPLE[fam].match(new)
        return new if simple else quote_identifier(new, dialect=fam)

    return pattern.sub(replace, text)


def _rename_quoted(text: str, renames: Mapping[str, str], tokens: list[Token], i: int) -> str:
    follows = i + 1 < len(tokens) and tokens[i + 1].kind == CODE
    if not (follows and tokens[i + 1].text.lstrip().startswith(".")):
        return text
    if _ends_with_dot(tokens, i - 1):
        return text
    opener = text[0]
    closer = _OPENERS[opener]
    name = text[1:-1].replace(closer * 2, closer)
    if name not in renames:
        return text
    return opener + renames[name].replace(closer, closer * 2) + closer


def _substitute(text: str, kind: str, names: Mapping[str, str], fam: str) -> str:
    def replace(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in names:
            known = ", ".join("${" + k + "}" for k in sorted(names)) or "none"
            raise InvalidArgumentError(
                f"unknown placeholder ${{{key}}}; known placeholders: {known}. Add {key!r} to"
                " the federation names, or correct the placeholder."
            )
        value = names[key]
        if kind == CODE:
            return value if _SIMPLE[fam].match(value) else quote_identifier(value, dialect=fam)
        if kind in (STRING, QUOTED):
            closer = _OPENERS.get(text[0], text[0]) if text[0] in "'\"`[" else ""
            return value.replace(closer, closer * 2) if closer else value
        return value  # HINT: MySQL executable comment, code-like

    return _PLACEHOLDER.sub(replace, text)
