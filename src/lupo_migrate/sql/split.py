"""A client-grade SQL script splitter and token scanner (functional core: no I/O).

It cuts a script into statements the way the ``mysql``, ``psql`` and ``sqlite3`` clients do:

- comments: ``--`` (MySQL only when followed by whitespace, a control character or the end of
  the text), ``#`` (MySQL), ``/* */`` (nested on PostgreSQL); MySQL ``/*! */`` and ``/*+ */``
  comments are executable and stay in the statement text;
- strings: ``'...'`` with doubled quotes, backslash escapes on MySQL and in PostgreSQL ``E'...'``
  strings; ``"..."`` (a string on MySQL, an identifier elsewhere); backticks (MySQL, SQLite);
  ``[...]`` (SQLite); PostgreSQL dollar quotes ``$$...$$`` and ``$tag$...$tag$``;
- the MySQL client's ``DELIMITER xx`` directive (never sent to the server);
- compound bodies: SQLite ``CREATE TRIGGER ... BEGIN ...; END;`` and PostgreSQL
  ``CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ...; END;`` stay one statement, and a ``;`` inside
  parentheses does not end a PostgreSQL statement (as in psql).

Statements made only of comments and whitespace are dropped; a last statement without a
delimiter is kept. The scan is linear: plain text is skipped in runs by one regular expression.
"""

from __future__ import annotations

import array
import functools
import re
from collections.abc import Iterator, Sequence
from typing import Final, overload

import attrs

__all__ = [
    "CODE",
    "COMMENT",
    "HINT",
    "QUOTED",
    "STRING",
    "Sections",
    "Spans",
    "SplitError",
    "Statement",
    "Token",
    "family",
    "scan",
    "split",
    "split_sections",
]

#: Token kinds. CODE is a run of plain text (words, numbers, punctuation, whitespace); HINT is
#: a MySQL executable comment (``/*! */``, ``/*+ */``), sent to the server like code.
CODE: Final = "code"
STRING: Final = "string"
QUOTED: Final = "quoted"
COMMENT: Final = "comment"
HINT: Final = "hint"
_DELIM: Final = "delimiter"

_FAMILIES: Final = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "sqlite": "sqlite",
}
_SPECIALS: Final = {"mysql": "'\"`#/-", "postgresql": "'\"/-$", "sqlite": "'\"`[/-"}
_NONSPACE = re.compile(r"\S")
_DIRECTIVE = re.compile(r"[ \t\r\n]*(?i:delimiter)[ \t]+(\S+)[^\n]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$")
_BLOCK_WORDS = re.compile(r"(?<![\w$])(BEGIN|CASE|END)(?![\w$])", re.IGNORECASE)
_BLOCK_STATEMENT: Final = {
    "sqlite": re.compile(r"(?i)create\s+(?:temp\s+|temporary\s+)?trigger\b"),
    "postgresql": re.compile(r"(?i)create\s+(?:or\s+replace\s+)?(?:function|procedure)\b"),
}
_MARKER = re.compile(r"--[ \t]*(lupo:(up|down)|\+migrate[ \t]+(up|down))[ \t\r]*\Z", re.IGNORECASE)


class SplitError(ValueError):
    """A script cannot be split: a string, comment or dollar quote is never closed.

    Attributes:
        line: the 1-based line where the unterminated construct starts.
        message: what is wrong there.
    """

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


@attrs.frozen
class Statement:
    """One statement of a script.

    Attributes:
        text: the statement, without its delimiter, leading or trailing comments and whitespace.
        line: the 1-based line of its first token.
        index: its 0-based position among the script's (or section's) statements.
    """

    text: str
    line: int
    index: int


@attrs.frozen
class Token:
    """A lexical token of a statement, as :func:`scan` yields it.

    Attributes:
        kind: ``CODE``, ``STRING``, ``QUOTED``, ``COMMENT`` or ``HINT``.
        text: the token's text, quotes and comment markers included.
        start: its offset in the scanned text.
        line: the 1-based line it starts on.
    """

    kind: str
    text: str
    start: int
    line: int


@attrs.frozen
class Sections:
    """A script cut at its ``-- lupo:down`` (or ``-- +migrate Down``) marker.

    Attributes:
        up: the statements that apply the migration.
        down: the statements that undo it (empty when there is no down section).
        has_down: whether a down marker was present.
    """

    up: Sequence[Statement]
    down: Sequence[Statement]
    has_down: bool


def family(dialect: str) -> str:
    """The splitting rules a SQLAlchemy dialect name uses: ``mysql``, ``postgresql``, ``sqlite``.

    Raises:
        ValueError: the dialect is unknown.
    """
    try:
        return _FAMILIES[dialect.lower()]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise ValueError(f"unknown SQL dialect {dialect!r}; known: {known}") from None


@functools.lru_cache(maxsize=64)
def _plain(fam: str, delimiter: str) -> re.Pattern[str]:
    specials = _SPECIALS[fam] + delimiter[:1]
    return re.compile("[^" + re.escape(specials) + "]+")


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


@functools.lru_cache(maxsize=16)
def _closers(close: str, backslash: bool) -> re.Pattern[str]:
    return re.compile("[" + re.escape(close) + ("\\\\" if backslash else "") + "]")


def _end_quoted(text: str, pos: int, close: str, backslash: bool) -> int:
    """The end of the quoted token opening at *pos* (closed by *close*), or -1."""
    find = _closers(close, backslash)
    i = pos + 1
    while True:
        m = find.search(text, i)
        if m is None:
            return -1
        j = m.start()
        if text[j] == "\\":
            i = j + 2
        elif close != "]" and text.startswith(close, j + 1):
            i = j + 2  # a doubled quote stands for itself
        else:
            return j + 1


def _end_block_comment(text: str, pos: int, nested: bool) -> int:
    if not nested:
        end = text.find("*/", pos + 2)
        return -1 if end < 0 else end + 2
    depth, i = 0, pos
    marks = re.compile(r"/\*|\*/")
    while True:
        m = marks.search(text, i)
        if m is None:
            return -1
        depth += 1 if m.group() == "/*" else -1
        i = m.end()
        if depth == 0:
            return i


def _unterminated(text: str, pos: int, what: str) -> SplitError:
    return SplitError(_line_of(text, pos), f"unterminated {what} starts here")


def _next(text: str, pos: int, fam: str, delimiter: str) -> tuple[str, int]:
    """The kind and end of the token at *pos* (*delimiter* empty: none is recognised)."""
    if delimiter and text.startswith(delimiter, pos):
        return _DELIM, pos + len(delimiter)
    c = text[pos]
    nxt = text[pos + 1 : pos + 2]
    end = -1
    if c == "'":
        backslash = fam == "mysql" or (
            fam == "postgresql"
            and text[pos - 1 : pos] in ("e", "E")
            and not (pos >= 2 and (text[pos - 2].isalnum() or text[pos - 2] in "_$"))
        )
        end = _end_quoted(text, pos, "'", backslash)
        if end < 0:
            raise _unterminated(text, pos, "string (')")
        return STRING, end
    if c == '"':
        end = _end_quoted(text, pos, '"', fam == "mysql")
        if end < 0:
            raise _unterminated(text, pos, 'quoted text (")')
        return (STRING if fam == "mysql" else QUOTED), end
    if c == "`" and fam != "postgresql":
        end = _end_quoted(text, pos, "`", False)
        if end < 0:
            raise _unterminated(text, pos, "quoted identifier (`)")
        return QUOTED, end
    if c == "[" and fam == "sqlite":
        end = _end_quoted(text, pos, "]", False)
        if end < 0:
            raise _unterminated(text, pos, "quoted identifier ([)")
        return QUOTED, end
    if (c == "-" and nxt == "-") or (c == "#" and fam == "mysql"):
        after = text[pos + 2 : pos + 3]
        if c == "#" or fam != "mysql" or after == "" or after <= " ":
            end = text.find("\n", pos)
            return COMMENT, len(text) if end < 0 else end
    elif c == "/" and nxt == "*":
        end = _end_block_comment(text, pos, fam == "postgresql")
        if end < 0:
            raise _unterminated(text, pos, "comment (/*)")
        hint = fam == "mysql" and text[pos + 2 : pos + 3] in ("!", "+")
        return (HINT if hint else COMMENT), end
    elif c == "$" and fam == "postgresql":
        m = _DOLLAR_TAG.match(text, pos)
        if m and not (pos and (text[pos - 1].isalnum() or text[pos - 1] in "_$")):
            end = text.find(m.group(), m.end())
            if end < 0:
                raise _unterminated(text, pos, f"dollar quote ({m.group()})")
            return STRING, end + len(m.group())
    # Plain text: one special character that starts nothing, then the run that follows it.
    start = pos if c not in _SPECIALS[fam] + delimiter[:1] else pos + 1
    m = _plain(fam, delimiter).match(text, start)
    return CODE, (m.end() if m else max(start, pos + 1))


def scan(text: str, *, dialect: str = "mysql") -> Iterator[Token]:
    """Yield the tokens of *text* (one statement: no delimiter or directive is recognised).

    Adjacent plain text comes as one or more ``CODE`` tokens; joining every token's text gives
    back *text* exactly.

    Raises:
        SplitError: a string, comment or dollar quote is not terminated.
        ValueError: the dialect is unknown.
    """
    fam = family(dialect)
    pos, line, n = 0, 1, len(text)
    while pos < n:
        kind, end = _next(text, pos, fam, "")
        yield Token(kind, text[pos:end], pos, line)
        line += text.count("\n", pos, end)
        pos = end


def split(text: str, *, dialect: str = "mysql") -> tuple[Statement, ...]:
    """Cut a script into its statements, as the dialect's command-line client would.

    Args:
        text: the script.
        dialect: a SQLAlchemy dialect name (``mysql``, ``mariadb``, ``postgresql``, ``sqlite``).

    Returns:
        The statements in order, numbered from 0.

    Raises:
        SplitError: a string, comment or dollar quote is not terminated (its line is named).
        ValueError: the dialect is unknown.
    """
    return tuple(s for _, s in _split(text, family(dialect), markers=False))


def split_sections(text: str, *, dialect: str = "mysql") -> Sections:
    """Cut a script into up and down statements at a down marker line.

    The marker is a line comment on a line of its own: ``-- lupo:down`` (also ``-- lupo:up``),
    or sql-migrate's ``-- +migrate Down`` / ``-- +migrate Up``. Statements before any marker
    are up statements. Each section is numbered from 0; line numbers are the file's.

    Raises:
        SplitError: a string, comment or dollar quote is not terminated.
        ValueError: the dialect is unknown.
    """
    up, down = array.array("q"), array.array("q")
    has_down = False
    for section, first, last, line in _spans(text, family(dialect), markers=True):
        if section == "down!":
            has_down = True
        else:
            (down if section == "down" else up).extend((first, last, line))
    return Sections(_statements(text, up), _statements(text, down), has_down or bool(down))


def _statements(text: str, spans: array.array[int]) -> Sequence[Statement]:
    """The statements of *text* at *spans* (first, last, line each): a tuple, or for a big
    script (over :data:`_SPANS_AT` statements) a :class:`Spans` view."""
    if len(spans) > 3 * _SPANS_AT:
        return Spans(text, spans)
    return tuple(
        Statement(text[spans[i] : spans[i + 1]], spans[i + 2], i // 3)
        for i in range(0, len(spans), 3)
    )


#: Statements beyond which a section is kept as offsets into its script (:class:`Spans`).
_SPANS_AT: Final = 2000


class Spans(Sequence[Statement]):
    """The statements of one section of a big script, kept as offsets into its text: each
    :class:`Statement` is made when it is read. A file of 100,000 INSERTs is its text and
    2.4 MB of offsets here, instead of 100,000 strings and objects (about 23 MB)."""

    __slots__ = ("_spans", "_text")

    def __init__(self, text: str, spans: array.array[int]) -> None:
        self._text = text
        self._spans = spans  # first, last, line of each statement

    def __len__(self) -> int:
        return len(self._spans) // 3

    @overload
    def __getitem__(self, at: int) -> Statement: ...

    @overload
    def __getitem__(self, at: slice) -> tuple[Statement, ...]: ...

    def __getitem__(self, at: int | slice) -> Statement | tuple[Statement, ...]:
        if isinstance(at, slice):
            return tuple(self[i] for i in range(*at.indices(len(self))))
        count = len(self)
        if not -count <= at < count:
            raise IndexError("statement index out of range")
        at %= count
        first, last, line = self._spans[3 * at : 3 * at + 3]
        return Statement(self._text[first:last], line, at)

    def __iter__(self) -> Iterator[Statement]:
        spans, text = self._spans, self._text
        for at in range(len(spans) // 3):
            first, last, line = spans[3 * at], spans[3 * at + 1], spans[3 * at + 2]
            yield Statement(text[first:last], line, at)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spans):
            return self._spans == other._spans and self._text == other._text
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Spans({len(self)} statements)"


def _split(text: str, fam: str, *, markers: bool) -> Iterator[tuple[str, Statement]]:
    """The splitting loop; yields (section, statement); ``("down!", ...)`` flags a marker."""
    counters = {"up": 0, "down": 0}
    for section, first, last, line in _spans(text, fam, markers=markers):
        if section == "down!":
            yield section, Statement("", line, -1)
            continue
        index = counters[section]
        counters[section] = index + 1
        yield section, Statement(text[first:last], line, index)


def _spans(text: str, fam: str, *, markers: bool) -> Iterator[tuple[str, int, int, int]]:
    """The splitting loop; yields (section, first, last, line) of each statement, its text
    ``text[first:last]``; ``("down!", -1, -1, line)`` flags a down marker."""
    delimiter = ";"
    pos, line, n = 0, 1, len(text)
    section = "up"
    first = last = -1  # offsets of the current statement's first and last code characters
    first_line = 0
    block: re.Pattern[str] | None = None
    depth = parens = 0

    while pos < n:
        if first < 0 and fam == "mysql":
            m = _DIRECTIVE.match(text, pos)
            if m:
                line += text.count("\n", pos, m.end())
                delimiter, pos = m.group(1), m.end()
                continue
        kind, end = _next(text, pos, fam, delimiter)
        if kind == _DELIM:
            in_block = block is not None and depth > 0
            if first >= 0 and not in_block and parens <= 0:
                yield section, first, last, first_line
                first = last = -1
                block, depth, parens = None, 0, 0
            elif first >= 0:
                last = end  # a ';' inside a compound body or parentheses is text
        elif kind == COMMENT:
            marker = _MARKER.match(text, pos, end) if markers else None
            if marker and text[text.rfind("\n", 0, pos) + 1 : pos].strip() == "":
                if first >= 0:
                    yield section, first, last, first_line
                    first = last = -1
                    block, depth, parens = None, 0, 0
                section = "down" if (marker.group(2) or marker.group(3)).lower() == "down" else "up"
                if section == "down":
                    yield "down!", -1, -1, line
        else:
            start = pos
            if kind == CODE:
                m = _NONSPACE.search(text, pos, end)
                start = m.start() if m else -1
            if start >= 0:
                if first < 0:
                    first, first_line = start, line + text.count("\n", pos, start)
                    pattern = _BLOCK_STATEMENT.get(fam)
                    block = pattern if pattern and pattern.match(text, first) else None
                last = pos + len(text[pos:end].rstrip()) if kind == CODE else end
                if kind == CODE and fam == "postgresql":
                    parens += text.count("(", pos, end) - text.count(")", pos, end)
                if kind == CODE and block is not None:
                    for word in _BLOCK_WORDS.findall(text, pos, end):
                        depth += -1 if word.upper() == "END" else 1
        line += text.count("\n", pos, end)
        pos = end
    if first >= 0:
        yield section, first, last, first_line
