"""The derived inverse of one SQL statement: the statements undoing it, or why there are none.

A doctrine step with neither a down section nor a down twin is undone by its statements'
inverses (:mod:`lupo_migrate.handlers.doctrine`, source 3). This module holds only that
derivation, one statement at a time, from the statement's words (:func:`._touch.words`): which
statements have an obvious inverse needing no pre-image (``CREATE ...`` -> ``DROP ...``,
``ALTER TABLE ... ADD ...`` -> ``... DROP ...``, session statements -> nothing) and why the
others are refused. It is apart from the handler, which decides per step which source undoes it
and runs the statements, because these are pure rules on text with their own dialect details.
"""

from __future__ import annotations

from typing import Final

from lupo_migrate.sql.split import family
from lupo_migrate.sql.touches import name_at, words

__all__ = ["derive_inverse"]

_NEUTRAL: Final = frozenset(
    {"SELECT", "SHOW", "START", "BEGIN", "COMMIT", "EXPLAIN", "DESCRIBE", "DESC", "USE", "DO"}
)
_OBJECTS: Final = ("TABLE", "INDEX", "VIEW", "TRIGGER", "EVENT", "PROCEDURE", "FUNCTION")
_PRE_IMAGE = "its inverse needs a pre-image or a backup (kept on MySQL/MariaDB and SQLite only)"


def derive_inverse(sql: str, *, dialect: str) -> tuple[str, ...] | str:
    """The statements undoing one statement (empty: nothing to undo), or why there are none.

    Args:
        sql: one statement, as split (placeholders may still be in it).
        dialect: a SQLAlchemy dialect name.

    Returns:
        A tuple of inverse statements in run order, or a reason text when it is refused.
    """
    fam = family(dialect)
    toks = words(sql, fam)
    up = [t.upper() if k == "word" else "" for k, t in toks]
    if not up or up[0] in _NEUTRAL or (up[0] == "SET" and not _global_set(up)):
        return ()
    if up[0] == "CREATE":
        return _invert_create(toks, up, fam)
    if up[:2] == ["ALTER", "TABLE"]:
        return _invert_alter(toks, up, fam)
    return f"{up[0] or toks[0][1]} changes existing objects or data; {_PRE_IMAGE}"


def _global_set(up: list[str]) -> bool:
    return len(up) > 1 and up[1] in {"GLOBAL", "PERSIST", "PERSIST_ONLY"}


def _invert_create(toks: list[tuple[str, str]], up: list[str], fam: str) -> tuple[str, ...] | str:
    if "OR" in up[1:3] and "REPLACE" in up[2:4]:
        return f"CREATE OR REPLACE may replace an existing definition; {_PRE_IMAGE}"
    kind_at = next((i for i, w in enumerate(up[:14]) if w in _OBJECTS), -1)
    if kind_at < 0:
        return f"CREATE {up[1] if len(up) > 1 else ''} has no known inverse; {_PRE_IMAGE}"
    kind, i = up[kind_at], kind_at + 1
    temporary = "TEMPORARY" in up[1:kind_at] or "TEMP" in up[1:kind_at]
    if up[i : i + 3] == ["IF", "NOT", "EXISTS"]:
        return f"CREATE {kind} IF NOT EXISTS: whether it existed before is unknown; {_PRE_IMAGE}"
    if kind == "INDEX" and i < len(up) and up[i] == "CONCURRENTLY":
        i += 1
    name, i = name_at(toks, i)
    if not name:
        return f"CREATE {kind} without a name cannot be undone by name; {_PRE_IMAGE}"
    table = name_at(toks, up.index("ON", i) + 1)[0] if "ON" in up[i:] else ""
    if kind == "INDEX":
        if fam == "mysql":
            return (f"DROP INDEX {name} ON {table}",) if table else "CREATE INDEX without ON"
        schema = table.rsplit(".", 1)[0] + "." if fam == "postgresql" and "." in table else ""
        return (f"DROP INDEX {schema}{name}",)
    if kind == "TRIGGER" and fam == "postgresql":
        return (f"DROP TRIGGER {name} ON {table}",)
    if kind in ("FUNCTION", "PROCEDURE") and fam != "mysql":
        return f"DROP {kind} needs the argument types on {fam}; {_PRE_IMAGE}"
    return (f"DROP {'TEMPORARY ' if temporary and fam == 'mysql' else ''}{kind} {name}",)


def _clauses(toks: list[tuple[str, str]], start: int) -> list[list[tuple[str, str]]]:
    """Split an ALTER TABLE's clause list at its top-level commas."""
    clauses: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for tok in toks[start:]:
        depth += {"(": 1, ")": -1}.get(tok[1], 0) if tok[0] == "punct" else 0
        if tok == ("punct", ",") and depth == 0:
            clauses.append([])
        else:
            clauses[-1].append(tok)
    return clauses


def _invert_alter(toks: list[tuple[str, str]], up: list[str], fam: str) -> tuple[str, ...] | str:
    table, i = name_at(toks, 2)
    undo: list[str] = []
    for clause in _clauses(toks, i):
        words = [t.upper() if k == "word" else "" for k, t in clause]
        drop = _invert_add(clause, words, fam)
        if drop is None:
            head = " ".join(t for _, t in clause[:3])
            return f"ALTER TABLE {table} {head} ...: no inverse without a pre-image; {_PRE_IMAGE}"
        undo.append(drop)
    return (f"ALTER TABLE {table} " + ", ".join(reversed(undo)),)


def _invert_add(clause: list[tuple[str, str]], words: list[str], fam: str) -> str | None:
    """The DROP clause undoing one ADD clause, or None when it has no obvious inverse."""
    words = [*words, "", "", "", ""]  # room to look ahead
    if words[0] != "ADD":
        return None
    i = 1
    if words[i : i + 1] == ["CONSTRAINT"]:
        name, i = name_at(clause, i + 1)
        if not name:
            return None
        if words[i : i + 2] == ["FOREIGN", "KEY"] and fam == "mysql":
            return f"DROP FOREIGN KEY {name}"
        if words[i : i + 2] == ["PRIMARY", "KEY"] and fam == "mysql":
            return "DROP PRIMARY KEY"
        if words[i : i + 1] == ["UNIQUE"] and fam == "mysql":
            return f"DROP INDEX {name}"
        return f"DROP CONSTRAINT {name}"
    if words[i : i + 2] == ["PRIMARY", "KEY"]:
        return "DROP PRIMARY KEY" if fam == "mysql" else None
    if words[i] in ("UNIQUE", "FULLTEXT", "SPATIAL", "INDEX", "KEY"):
        if fam != "mysql":
            return None
        if words[i] in ("UNIQUE", "FULLTEXT", "SPATIAL"):
            i += 1
        if words[i : i + 1] in (["INDEX"], ["KEY"]):
            i += 1
        name, _ = name_at(clause, i)
        return f"DROP INDEX {name}" if name and words[i] not in ("USING",) else None
    if words[i : i + 1] == ["COLUMN"]:
        i += 1
    named = i < len(clause) and clause[i][0] in ("word", "ident")
    if not named or words[i : i + 3] == ["IF", "NOT", "EXISTS"] or words[i] in ("CHECK", "FOREIGN"):
        return None
    name, _ = name_at(clause, i)
    return f"DROP COLUMN {name}" if name else None
