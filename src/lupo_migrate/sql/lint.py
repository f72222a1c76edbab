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
``locks-writes``            PostgreSQL: a statement that holds writes (or all access) to
                            an existing table while it reads every row or builds an index:
                            ``CREATE INDEX`` / ``DROP INDEX`` without ``CONCURRENTLY``,
                            ``ADD CONSTRAINT ... CHECK`` / ``FOREIGN KEY`` without
                            ``NOT VALID``, ``ALTER COLUMN ... SET NOT NULL``, ``ADD PRIMARY
                            KEY`` / ``UNIQUE`` without ``USING INDEX``
``rewrites-table``          PostgreSQL: a statement that rewrites an existing table under
                            ``ACCESS EXCLUSIVE``: ``ALTER COLUMN ... TYPE``, ``ADD COLUMN``
                            with a volatile default, a serial or a stored generated column,
                            ``SET TABLESPACE``, ``SET LOGGED`` / ``UNLOGGED``, ``VACUUM
                            FULL``, ``CLUSTER``
=========================== ==========================================================

The PostgreSQL rules follow squawk's (``require-concurrent-index-creation``,
``constraint-missing-not-valid``, ``setting-not-nullable-field``, ``changing-column-type``,
``adding-field-with-default``...); tables created earlier in the same plan are left out: nobody
else uses them yet. Each finding's hint says how to do the same without the lock.

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
    "locks-writes": (Severity.WARNING, "{detail} on {name}: its {what} wait until it ends"),
    "rewrites-table": (
        Severity.WARNING,
        "{detail} rewrites {name}: its reads and writes wait until it ends",
    ),
}

#: What waits behind each lock ``locks-writes`` names (the rest: writes only).
_BLOCKS_READS: Final = frozenset(
    {
        "DROP INDEX without CONCURRENTLY",
        "ADD CHECK without NOT VALID",
        "SET NOT NULL",
        "ADD PRIMARY KEY/UNIQUE without USING INDEX",
    }
)
#: The rules about locks on tables in use: not for a table the plan created itself.
_ON_TABLES_IN_USE: Final = frozenset({"locks-writes", "rewrites-table"})
#: How to do it without the lock, by what a finding of those rules says.
_FIXES: Final[Mapping[str, str]] = {
    "CREATE INDEX without CONCURRENTLY": "CREATE INDEX CONCURRENTLY (it runs apart from a"
    " transaction; lupo_migrate drops the invalid index a failure leaves)",
    "DROP INDEX without CONCURRENTLY": "DROP INDEX CONCURRENTLY",
    "ADD CHECK without NOT VALID": "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE"
    " CONSTRAINT in a later file (it checks the rows without blocking writes)",
    "ADD FOREIGN KEY without NOT VALID": "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then"
    " VALIDATE CONSTRAINT in a later file (it checks the rows without blocking writes)",
    "SET NOT NULL": "first ADD CONSTRAINT ... CHECK (column IS NOT NULL) NOT VALID and VALIDATE"
    " it in a later file; SET NOT NULL then uses it (PostgreSQL 12+)",
    "ADD PRIMARY KEY/UNIQUE without USING INDEX": "CREATE UNIQUE INDEX CONCURRENTLY first,"
    " then ADD ... USING INDEX",
    "ALTER COLUMN TYPE": "add a new column, backfill it in batches, then switch to it (or"
    " widen a varchar, which is not rewritten)",
    "ADD COLUMN with a volatile default": "add the column without the default, backfill in"
    " batches, then SET DEFAULT",
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
_LINTED: Final = frozenset(
    {"DROP", "ALTER", "CREATE", "UPDATE", "DELETE", "TRUNCATE", "VACUUM", "CLUSTER"}
)
#: Not a rule: what :func:`_hits` says of a ``CREATE TABLE`` (PostgreSQL), so that the rules
#: about tables in use leave that table out for the rest of the plan.
_CREATES: Final = "_creates"
#: Defaults evaluated per row: a column added with one is written into every row.
_VOLATILE: Final = frozenset(
    {"RANDOM", "CLOCK_TIMESTAMP", "GEN_RANDOM_UUID", "UUID_GENERATE_V4", "UUID_GENERATE_V1",
     "NEXTVAL", "TIMEOFDAY", "TXID_CURRENT"}
)  # fmt: skip
_SERIALS: Final = frozenset({"SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL4", "SERIAL8", "SERIAL2"})


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
        i += up[i : i + 1] == ["ONLY"]
        table, i = _name(toks, i)
        for clause in _clauses(toks, i):
            yield from _alter_clause(table, clause, fingerprint)
            if fam == "postgresql":
                yield from _pg_alter_clause(table, clause)
    elif head == "DROP" and up[1:2] == ["INDEX"] and fam == "postgresql":
        if "CONCURRENTLY" not in up[2:3]:
            at = 2 + (2 if up[2:4] == ["IF", "EXISTS"] else 0)
            index = _name(toks, at)[0]
            yield "locks-writes", f"the table of index {index}", "DROP INDEX without CONCURRENTLY"
    elif head in ("VACUUM", "CLUSTER") and fam == "postgresql":
        if head == "CLUSTER" or "FULL" in up[1:3]:
            at = len(toks) - 1 if head == "VACUUM" else 1 + (up[1:2] == ["VERBOSE"])
            if at < len(toks) and toks[at][0] in ("word", "ident") and up[at] != "FULL":
                yield (
                    "rewrites-table",
                    _name(toks, at)[0],
                    "VACUUM FULL" if head == "VACUUM" else "CLUSTER",
                )
    elif head == "CREATE":
        if fam == "postgresql":
            yield from _pg_create(toks, up)
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


def _pg_create(toks: list[tuple[str, str]], up: list[str]) -> Iterable[tuple[str, str, str]]:
    """PostgreSQL ``CREATE TABLE`` (remembered) and ``CREATE INDEX`` without
    ``CONCURRENTLY``."""
    at = 1 + (up[1:2] == ["UNIQUE"])
    if up[at : at + 1] == ["INDEX"]:
        if "CONCURRENTLY" in up[at + 1 : at + 2] or "ON" not in up:
            return
        on = up.index("ON") + 1
        on += up[on : on + 1] == ["ONLY"]
        yield "locks-writes", _name(toks, on)[0], "CREATE INDEX without CONCURRENTLY"
        return
    at = 1
    while up[at : at + 1] in (["TEMP"], ["TEMPORARY"], ["UNLOGGED"], ["GLOBAL"], ["LOCAL"]):
        at += 1
    if up[at : at + 1] == ["TABLE"]:
        at += 1 + (3 if up[at + 1 : at + 4] == ["IF", "NOT", "EXISTS"] else 0)
        yield _CREATES, _name(toks, at)[0], ""


def _pg_alter_clause(table: str, clause: list[tuple[str, str]]) -> Iterable[tuple[str, str, str]]:
    """The PostgreSQL lock and rewrite rules of one ``ALTER TABLE`` clause."""
    up = [t.upper() if k == "word" else "" for k, t in clause]
    if up[:1] == ["ADD"]:
        at = 1 + (up[1:2] == ["CONSTRAINT"]) * 2  # ADD CONSTRAINT name ...
        kind = up[at : at + 2]
        if kind[:1] in (["CHECK"], ["FOREIGN"]):
            if up[-2:] != ["NOT", "VALID"]:
                what = "FOREIGN KEY" if kind[0] == "FOREIGN" else "CHECK"
                yield "locks-writes", table, f"ADD {what} without NOT VALID"
            return
        if kind in (["PRIMARY", "KEY"],) or kind[:1] == ["UNIQUE"]:
            if "USING" not in up:
                yield "locks-writes", table, "ADD PRIMARY KEY/UNIQUE without USING INDEX"
            return
        if (
            any(w in _SERIALS for w in up)
            or ("GENERATED" in up and "STORED" in up)
            or ("DEFAULT" in up and any(w in _VOLATILE for w in up[up.index("DEFAULT") :]))
        ):
            yield "rewrites-table", table, "ADD COLUMN with a volatile default"
    elif up[:1] == ["ALTER"]:
        if "TYPE" in up:  # ALTER COLUMN c [SET DATA] TYPE t
            yield "rewrites-table", table, "ALTER COLUMN TYPE"
        elif up[-3:] == ["SET", "NOT", "NULL"]:
            yield "locks-writes", table, "SET NOT NULL"
    elif up[:2] == ["SET", "TABLESPACE"]:
        yield "rewrites-table", table, "SET TABLESPACE"
    elif up[:2] in (["SET", "LOGGED"], ["SET", "UNLOGGED"]):
        yield "rewrites-table", table, f"SET {up[1]}"


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


def _what(detail: str) -> str:
    return "reads and writes" if detail in _BLOCKS_READS else "writes"


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
        fresh: set[str] = set()  # tables created earlier in the plan
        for step_id, path, line, sql in statements:
            for rule, name, detail in _hits(sql, self.dialect, fingerprint):
                if rule == _CREATES:
                    fresh.add(name.lower())
                    continue
                if rule in self.ignore or (rule in _ON_TABLES_IN_USE and name.lower() in fresh):
                    continue
                severity, text = RULES[rule]
                forbidden = rule in self.forbid
                fix = _FIXES.get(detail)
                yield Finding(
                    severity=Severity.ERROR if forbidden else severity,
                    message=f"{text.format(name=name, detail=detail, what=_what(detail))} [{rule}]",
                    path=path,
                    line=line,
                    hint=f"the project forbids {rule} with forbid in its settings; rewrite the step"
                    if forbidden
                    else (f"instead: {fix}" if fix else None),
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
