"""Risky statements: a configurable rule set run over the plan's SQL before anything runs.

Each rule has a code; a finding of it is class C (``FailureKind.LINT``). By default a rule
reports a warning (recorded, the run goes on) or, for constructs that are merely noteworthy,
information; a project may **forbid** a rule (its findings become errors and the run is
refused before it starts: the Lupopedia doctrine forbids ``foreign-key`` and ``trigger``) or
**ignore** it.

=========================== ==========================================================
code                        flags
=========================== ==========================================================
``drop-table``              ``DROP TABLE``: its rows go (backed up, within the limit)
``drop-column``             ``ALTER TABLE ... DROP [COLUMN]``
``narrowing-modify``        a column's type made smaller or changed to another family
``update-without-where``    ``UPDATE`` with no ``WHERE``: every row
``delete-without-where``    ``DELETE`` with no ``WHERE``, and ``TRUNCATE``
``foreign-key``             ``FOREIGN KEY`` / ``REFERENCES`` in CREATE or ALTER TABLE
``trigger``                 ``CREATE TRIGGER``
=========================== ==========================================================

Pure: statement texts (and the live fingerprint, for the column types) in, findings out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.core.fingerprint import Fingerprint
from lupo_migrate.core.model import FailureKind, Finding, Severity, ValidationContext
from lupo_migrate.sql.touches import head_words, leading_word, words

__all__ = ["RULES", "STATEMENTS", "column_effects", "lint_sql", "risky_statements"]

#: The plan's statements, as facts: (step id, path, line, rendered SQL), in plan order.
STATEMENTS: Final = "statements"

#: Every rule: its code, default severity, and what it says.
RULES: Final[Mapping[str, tuple[Severity, str]]] = {
    "drop-table": (Severity.WARNING, "drops table {name} and its rows"),
    "drop-column": (Severity.WARNING, "drops column {name} and its values"),
    "narrowing-modify": (Severity.WARNING, "narrows column {name}: {detail}"),
    "update-without-where": (Severity.WARNING, "updates every row of {name} (no WHERE)"),
    "delete-without-where": (Severity.WARNING, "deletes every row of {name} (no WHERE)"),
    "foreign-key": (Severity.INFO, "declares a foreign key on {name}"),
    "trigger": (Severity.INFO, "creates trigger {name}"),
}

_TYPE = re.compile(r"^\s*([a-z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?(?:\s|$)", re.I)
_INTS: Final = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}
_TEXTS: Final = {
    "tinytext": 1, "text": 2, "mediumtext": 3, "longtext": 4,
    "tinyblob": 1, "blob": 2, "mediumblob": 3, "longblob": 4,
}  # fmt: skip
_SIZED: Final = {"char": "c", "varchar": "c", "binary": "b", "varbinary": "b"}
_DECIMALS: Final = frozenset({"decimal", "numeric", "dec"})


def _family(type_text: str) -> tuple[str, tuple[int, ...]] | None:
    match = _TYPE.match(type_text)
    if match is None:
        return None
    base = match.group(1).lower().split()[0]
    numbers = tuple(int(g) for g in match.groups()[1:] if g is not None)
    if base in _INTS:
        return "int", (_INTS[base],)
    if base in _TEXTS:
        return "text" if "text" in base else "blob", (_TEXTS[base],)
    if base in _SIZED:
        return "sized-" + _SIZED[base], numbers[:1] or (1,)
    if base in _DECIMALS:
        return "decimal", numbers or (10, 0)
    return None


def narrowing(old: str, new: str) -> str | None:
    """Why changing a column from type *old* to *new* may lose values, or None."""
    a, b = _family(old), _family(new)
    if a is None or b is None or a == b:
        return None
    if a[0] != b[0]:
        # A sized string may grow into a text; any other change of family may not fit.
        if a[0] == "sized-c" and b[0] == "text":
            return None
        return f"{old} -> {new} changes the kind of value"
    if a[0] == "decimal":
        old_int, new_int = a[1][0] - a[1][-1], b[1][0] - b[1][-1]
        if new_int < old_int or b[1][-1] < a[1][-1]:
            return f"{old} -> {new} keeps fewer digits"
        return None
    if b[1][0] < a[1][0]:
        return f"{old} -> {new} is smaller"
    return None


def _columns(fingerprint: Fingerprint | None, table: str) -> dict[str, str]:
    if fingerprint is None:
        return {}
    obj = fingerprint.objects.get(f"table:{table}") or {}
    return {str(c["name"]).lower(): str(c.get("type", "")) for c in obj.get("columns", ())}


def _name(toks: list[tuple[str, str]], i: int) -> tuple[str, int]:
    parts: list[str] = []
    while i < len(toks) and toks[i][0] in ("word", "ident"):
        text = toks[i][1]
        parts.append(text[1:-1] if toks[i][0] == "ident" else text)
        if i + 1 < len(toks) and toks[i + 1][1] == ".":
            i += 2
            continue
        i += 1
        break
    return (parts[-1] if parts else "?"), i


def _clauses(toks: list[tuple[str, str]], start: int) -> list[list[tuple[str, str]]]:
    """The comma-separated clauses after *start*, at parenthesis depth 0."""
    out: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for tok in toks[start:]:
        if tok[1] == "(":
            depth += 1
        elif tok[1] == ")":
            depth -= 1
        if tok[1] == "," and depth == 0:
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


#: The statements :func:`_hits` has rules for (by their first word).
_LINTED: Final = frozenset({"DROP", "ALTER", "CREATE", "UPDATE", "DELETE", "TRUNCATE"})


def _hits(sql: str, fam: str, fingerprint: Fingerprint | None) -> Iterable[tuple[str, str, str]]:
    """(rule, object name, detail) for each rule *sql* triggers."""
    plain = leading_word(sql)
    first = [("word", plain)] if plain is not None else head_words(sql, fam, 1)
    if not first or first[0][1].upper() not in _LINTED:
        return  # read no further (a big INSERT)
    toks = words(sql, fam)
    up = [t.upper() if k == "word" else "" for k, t in toks]
    if not up:
        return
    head = up[0]
    if head == "DROP" and up[1:2] == ["TABLE"]:
        i = 2 + (2 if up[2:4] == ["IF", "EXISTS"] else 0)
        while i < len(toks):
            name, i = _name(toks, i)
            yield "drop-table", name, ""
            if i < len(toks) and toks[i][1] == ",":
                i += 1
            else:
                break
    elif head == "ALTER" and up[1:2] == ["TABLE"]:
        i = 2 + (2 if up[2:4] == ["IF", "EXISTS"] else 0)
        table, i = _name(toks, i)
        for clause in _clauses(toks, i):
            yield from _alter_clause(table, clause, fingerprint)
    elif head == "CREATE":
        if "TRIGGER" in up[:6]:
            name, _ = _name(toks, up.index("TRIGGER") + 1)
            yield "trigger", name, ""
        elif "TABLE" in up[:4] and ("REFERENCES" in up or "FOREIGN" in up):
            at = up.index("TABLE") + 1
            at += 3 if up[at : at + 3] == ["IF", "NOT", "EXISTS"] else 0
            yield "foreign-key", _name(toks, at)[0], ""
    elif head == "UPDATE" and "WHERE" not in up:
        yield "update-without-where", _name(toks, 1 + (up[1:2] == ["IGNORE"]))[0], ""
    elif head == "DELETE" and "WHERE" not in up and "FROM" in up:
        yield "delete-without-where", _name(toks, up.index("FROM") + 1)[0], ""
    elif head == "TRUNCATE":
        yield "delete-without-where", _name(toks, 2 if up[1:2] == ["TABLE"] else 1)[0], ""


def _alter_clause(
    table: str, clause: list[tuple[str, str]], fingerprint: Fingerprint | None
) -> Iterable[tuple[str, str, str]]:
    up = [t.upper() if k == "word" else "" for k, t in clause]
    if up[:1] == ["DROP"] and up[1:2] not in (
        ["INDEX"], ["KEY"], ["PRIMARY"], ["FOREIGN"], ["CONSTRAINT"], ["CHECK"], ["PARTITION"],
    ):  # fmt: skip
        at = 2 if up[1:2] == ["COLUMN"] else 1
        at += 2 if up[at : at + 2] == ["IF", "EXISTS"] else 0
        yield "drop-column", f"{table}.{_name(clause, at)[0]}", ""
    elif up[:1] == ["ADD"] and ("FOREIGN" in up or "REFERENCES" in up):
        yield "foreign-key", table, ""
    elif up[:1] in (["MODIFY"], ["CHANGE"]) or up[:2] == ["ALTER", "COLUMN"]:
        column, at = _name(clause, 1 + (up[1:2] == ["COLUMN"]))
        if up[0] == "CHANGE":
            _, at = _name(clause, at)  # the new name
        elif up[0] == "ALTER":
            while at < len(up) and up[at] in ("SET", "DATA", "TYPE"):
                at += 1
            if "TYPE" not in up:
                return
        new = _type_at(clause, at)
        old = _columns(fingerprint, table).get(column.lower())
        why = narrowing(old, new) if old and new else None
        if why:
            yield "narrowing-modify", f"{table}.{column}", why


def column_effects(sql: str, fam: str) -> list[tuple[str, str, str, str | None]]:
    """What an ``ALTER TABLE`` does to columns: (table, ``add``/``drop``/``rename``, column,
    new name), in clause order; nothing for other statements."""
    return list(_column_effects(sql, fam))


@functools.lru_cache(maxsize=4096)
def _column_effects(sql: str, fam: str) -> tuple[tuple[str, str, str, str | None], ...]:
    """:func:`column_effects`, remembered (a run asks about each statement several times)."""
    return tuple(_read_column_effects(sql, fam))


def _read_column_effects(sql: str, fam: str) -> list[tuple[str, str, str, str | None]]:
    first = leading_word(sql)
    if first is not None and first.upper() != "ALTER":
        return []  # read no further (a big INSERT)
    if [w.upper() for _k, w in head_words(sql, fam, 2)] != ["ALTER", "TABLE"]:
        return []
    toks = words(sql, fam)
    up = [t.upper() if k == "word" else "" for k, t in toks]
    if up[:2] != ["ALTER", "TABLE"]:
        return []
    i = 2 + (2 if up[2:4] == ["IF", "EXISTS"] else 0) + (up[2:3] == ["ONLY"])
    table, i = _name(toks, i)
    out: list[tuple[str, str, str, str | None]] = []
    for clause in _clauses(toks, i):
        cup = [t.upper() if k == "word" else "" for k, t in clause]
        if not cup:
            continue
        at = 1 + (cup[1:2] == ["COLUMN"])
        if cup[0] == "ADD" and cup[1:2] not in _NOT_COLUMNS:
            at += 3 if cup[at : at + 3] == ["IF", "NOT", "EXISTS"] else 0
            if cup[at : at + 1] != ["("]:
                out.append((table, "add", _name(clause, at)[0], None))
        elif cup[0] == "DROP" and cup[1:2] not in _NOT_COLUMNS:
            at += 2 if cup[at : at + 2] == ["IF", "EXISTS"] else 0
            out.append((table, "drop", _name(clause, at)[0], None))
        elif cup[:2] == ["RENAME", "COLUMN"]:
            old, j = _name(clause, 2)
            if cup[j : j + 1] == ["TO"]:
                out.append((table, "rename", old, _name(clause, j + 1)[0]))
        elif cup[0] == "CHANGE":
            old, j = _name(clause, at)
            new = _name(clause, j)[0]
            if new.lower() != old.lower():
                out.append((table, "rename", old, new))
    return out


#: ADD/DROP clauses that are not about a column.
_NOT_COLUMNS: Final = [
    ["INDEX"], ["KEY"], ["PRIMARY"], ["FOREIGN"], ["CONSTRAINT"], ["CHECK"], ["PARTITION"],
    ["UNIQUE"], ["FULLTEXT"], ["SPATIAL"],
]  # fmt: skip


def _type_at(clause: list[tuple[str, str]], at: int) -> str:
    """The column type written at *at*: its name and its parenthesised arguments."""
    if at >= len(clause):
        return ""
    text = clause[at][1]
    if at + 1 < len(clause) and clause[at + 1][1] == "(":
        end = next((j for j in range(at + 1, len(clause)) if clause[j][1] == ")"), len(clause))
        text += "(" + "".join(t for _, t in clause[at + 2 : end]) + ")"
    return text


@attrs.frozen(repr=False)
class _RiskyStatements:
    forbid: frozenset[str]
    ignore: frozenset[str]
    dialect: str

    def __call__(self, context: ValidationContext) -> Iterable[Finding]:
        statements: Any = context.facts.get(STATEMENTS) or ()
        return self.lint(statements, context.facts.get("fingerprint"))

    def lint(
        self,
        statements: Iterable[tuple[str, str, int | None, str]],
        fingerprint: Fingerprint | None = None,
    ) -> Iterable[Finding]:
        """The findings of (step id, path, line, SQL) statements; column types are read
        from *fingerprint* when given (``narrowing-modify``)."""
        for step_id, path, line, sql in statements:
            for rule, name, detail in _hits(sql, self.dialect, fingerprint):
                if rule in self.ignore:
                    continue
                severity, text = RULES[rule]
                forbidden = rule in self.forbid
                yield Finding(
                    severity=Severity.ERROR if forbidden else severity,
                    message=f"{text.format(name=name, detail=detail)} [{rule}]",
                    path=path,
                    line=line,
                    hint=f"the project forbids {rule} with forbid in its settings; rewrite the step"
                    if forbidden
                    else None,
                    code=rule,
                    kind=FailureKind.LINT,
                    step_id=step_id,
                )

    def __repr__(self) -> str:
        return f"risky_statements(forbid={sorted(self.forbid)}, ignore={sorted(self.ignore)})"


def risky_statements(
    *, forbid: Iterable[str] = (), ignore: Iterable[str] = (), dialect: str = "mysql"
) -> Any:
    """PRE: the rule set over the plan's statements (the ``statements`` fact).

    Args:
        forbid: rule codes whose findings are errors (the run is refused).
        ignore: rule codes not reported.
        dialect: the dialect family the statements are in.

    Raises:
        InvalidArgumentError: an unknown rule code (the known ones are listed).
    """
    forbid, ignore = frozenset(forbid), frozenset(ignore)
    unknown = sorted((forbid | ignore) - RULES.keys())
    if unknown:
        raise InvalidArgumentError(
            f"unknown lint rule(s) {', '.join(unknown)}; the rules are {', '.join(RULES)}"
        )
    return _RiskyStatements(forbid, ignore, dialect)


def lint_sql(
    statements: Iterable[tuple[str, str, int | None, str]],
    *,
    forbid: Iterable[str] = (),
    ignore: Iterable[str] = (),
    dialect: str = "mysql",
) -> tuple[Finding, ...]:
    """The rule set over (step id, path, line, SQL) statements, as ``check`` and
    ``apply --dry-run`` show it before anything runs (the run itself checks the same rules
    at PRE, with the live column types).

    Raises:
        InvalidArgumentError: an unknown rule code in *forbid* or *ignore*.
    """
    return tuple(risky_statements(forbid=forbid, ignore=ignore, dialect=dialect).lint(statements))
