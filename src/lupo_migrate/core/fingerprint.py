"""Schema fingerprints: a canonical description of a schema, its hash, and exact differences.

Theory of operation: the shell reads a schema with a handful of bulk queries and hands the rows
over as a ``Fingerprint``: a mapping from an object key (``"table:users"``, ``"view:v"``,
``"trigger:t"``, ``"routine:procedure:p"``) to a plain, JSON-able description. Descriptions
hold only what defines the object (column types, nullability, defaults, charset, collation,
comments and order; indexes; foreign keys; checks; view, trigger and routine bodies), never what
changes by itself (row counts, auto-increment counters, creation times, definers).

Two fingerprints of the same schema are equal and hash equally, whatever order the server
returned rows in: the shell sorts what has no order of its own (indexes, keys, checks by name),
and keeps the order that means something (columns by position, index columns by sequence).
``diff`` names every difference down to the attribute: ``table users: column email: nullable:
True -> False``.

``restrict`` cuts a fingerprint down to some objects (what a run touched), so that a rollback is
compared with the pre-image of exactly those. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Difference", "Fingerprint", "TableData", "diff", "restrict", "row_key"]

#: Attributes of a table description that are lists of named parts, compared part by part.
_PARTS = ("columns", "indexes", "foreign_keys", "checks")


def _sorted_objects(objects: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return dict(sorted(objects.items()))


@attrs.frozen
class Fingerprint:
    """A schema's canonical description.

    Attributes:
        dialect: the database family it was read from (``mysql``, ``postgresql``, ``sqlite``);
            fingerprints of different families never compare equal.
        objects: object key to description (see the module docstring).
    """

    dialect: str
    objects: Mapping[str, Mapping[str, Any]] = attrs.field(converter=_sorted_objects)

    @property
    def digest(self) -> str:
        """A stable sha256 hex digest of the whole fingerprint."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the tables (not views), sorted."""
        return tuple(key[6:] for key in self.objects if key.startswith("table:"))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, ASCII): what the digest is taken of, and what
        storage keeps."""
        data = {"dialect": self.dialect, "objects": self.objects}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        """The fingerprint :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(dialect=data["dialect"], objects=data["objects"])


@attrs.frozen
class TableData:
    """The content of one table, summarised: row count and an order-independent checksum.

    Two tables with the same rows (as a multiset) have equal checksums, whatever order the rows
    are stored in.
    """

    rows: int
    checksum: str


@attrs.frozen
class Difference:
    """One way two fingerprints differ.

    Attributes:
        key: the object (``"table:users"``).
        path: where inside it (``("column", "email", "nullable")``); empty for the object itself.
        before: the value in the first fingerprint (None: absent there).
        after: the value in the second (None: absent there).
    """

    key: str
    path: tuple[str, ...]
    before: Any
    after: Any

    def __str__(self) -> str:
        kind, _, name = self.key.partition(":")
        where = f"{kind} {name}"
        if not self.path:
            if self.before is None:
                return f"{where}: added"
            if self.after is None:
                return f"{where}: missing"
            return f"{where}: {_show(self.before)} -> {_show(self.after)}"
        if len(self.path) == 2 and (self.before is None or self.after is None):
            state = "added" if self.before is None else "missing"
            return f"{where}: {self.path[0]} {self.path[1]}: {state}"
        inner = " ".join(self.path[:-1])
        what = f"{inner}: {self.path[-1]}" if inner else self.path[-1]
        return f"{where}: {what}: {_show(self.before)} -> {_show(self.after)}"


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def restrict(fingerprint: Fingerprint, keys: Collection[str]) -> Fingerprint:
    """*fingerprint* with only the objects *keys* (absent ones stay absent)."""
    wanted = set(keys)
    kept = {k: v for k, v in fingerprint.objects.items() if k in wanted}
    return Fingerprint(dialect=fingerprint.dialect, objects=kept)


def diff(before: Fingerprint, after: Fingerprint) -> tuple[Difference, ...]:
    """Every difference from *before* to *after*, in key order; empty when they are equal.

    Tables are compared part by part: columns, indexes, foreign keys and checks by name, then
    the column order, then the other attributes; views, triggers and routines attribute by
    attribute.
    """
    if before.dialect != after.dialect:
        return (Difference("schema:*", ("dialect",), before.dialect, after.dialect),)
    found: list[Difference] = []
    for key in sorted(before.objects.keys() | after.objects.keys()):
        old, new = before.objects.get(key), after.objects.get(key)
        if old is None or new is None:
            found.append(Difference(key, (), old, new))
        elif old != new:
            found.extend(_object_diff(key, old, new))
    return tuple(found)


def _object_diff(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterable[Difference]:
    for attr in sorted(old.keys() | new.keys()):
        a, b = old.get(attr), new.get(attr)
        if a == b:
            continue
        if attr in _PARTS and isinstance(a, list | type(None)) and isinstance(b, list | type(None)):
            yield from _parts_diff(key, attr, a or [], b or [])
        else:
            yield Difference(key, (attr,), a, b)


def _parts_diff(
    key: str, attr: str, old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]
) -> Iterable[Difference]:
    kind = attr[:-1] if attr != "indexes" else "index"
    by_old = {part["name"]: part for part in old}
    by_new = {part["name"]: part for part in new}
    for name in sorted(by_old.keys() | by_new.keys()):
        a, b = by_old.get(name), by_new.get(name)
        if a is None or b is None:
            yield Difference(key, (kind, name), a, b)
            continue
        for field in sorted(a.keys() | b.keys()):
            if a.get(field) != b.get(field):
                yield Difference(key, (kind, name, field), a.get(field), b.get(field))
    order_old = [p["name"] for p in old if p["name"] in by_new]
    order_new = [p["name"] for p in new if p["name"] in by_old]
    if attr == "columns" and order_old != order_new:
        yield Difference(key, ("column order",), order_old, order_new)


_PG_INDEX_COLUMNS = re.compile(r"\(([^()]*)\)\s*$")


def row_key(table: Mapping[str, Any], dialect: str) -> tuple[str, ...]:
    """The columns that tell a row of *table* (its fingerprint entry) from the others: the
    primary key, else the first unique key over NOT NULL plain columns; () when it has
    neither (its rows are then told apart by all their values)."""
    columns = {c["name"]: c for c in table.get("columns", ())}
    if dialect == "sqlite":
        pk = sorted((c["primary_key"], c["name"]) for c in columns.values() if c.get("primary_key"))
        if pk:
            return tuple(name for _, name in pk)
    candidates: list[tuple[int, tuple[str, ...]]] = []
    for index in table.get("indexes", ()):
        if not index.get("unique") or index.get("partial"):
            continue
        names = _index_columns(index, dialect)
        if not names or any(n not in columns or columns[n].get("nullable") for n in names):
            continue
        primary = index.get("primary") or index.get("name") == "PRIMARY"
        candidates.append((0 if primary else 1, names))
    return min(candidates)[1] if candidates else ()


def _index_columns(index: Mapping[str, Any], dialect: str) -> tuple[str, ...]:
    if dialect == "postgresql":  # only its definition: CREATE UNIQUE INDEX ... (a, b)
        definition = str(index.get("definition") or "")
        if " WHERE " in definition:
            return ()
        found = _PG_INDEX_COLUMNS.search(definition)
        if found is None:
            return ()
        named = [p.strip() for p in found.group(1).split(",")]
        if not all(re.fullmatch(r'"?[A-Za-z_][\w$]*"?', p) for p in named):
            return ()  # an expression: not plain columns
        return tuple(p.strip('"') for p in named)
    parts = index.get("columns") or ()
    # MySQL: [name, sub_part, order]; a prefix (sub_part) does not tell rows apart
    if any(p[0] is None or (dialect != "sqlite" and p[1] is not None) for p in parts):
        return ()
    return tuple(str(p[0]) for p in parts)
