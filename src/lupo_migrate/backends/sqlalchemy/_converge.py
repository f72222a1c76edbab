"""Bringing a table's definition back to its pre-image while keeping every row it holds now.

A rollback never drops a table to put its definition back: the table may hold rows the run
did not write (the application's, written after the run completed), and the run may have kept
no copy of them (a big table changed only in its definition). Two ways, in this order:

* MySQL/MariaDB (:func:`mysql_alter`): ``ALTER TABLE`` statements derived from the two
  ``SHOW CREATE TABLE`` texts, line by line (the server prints one column or key per line):
  columns the run renamed get their names back, keys and columns the pre-image lacks go,
  columns it has are added or modified back to their definition and position, its keys come
  back, then the table options. Rows stay where they are; a dropped column comes back empty
  (the caller fills it from what was set aside).
* Otherwise (SQLite, which cannot alter much, or a MySQL difference the derivation cannot
  close): :func:`rebuild`, the rows now held apart in a table of the backup schema, the table
  recreated from the pre-image's ``CREATE`` text, the rows put back column by column, the
  holding table dropped. Indexes and triggers are the caller's (from the pre-image).

Both report the columns they added back, for the caller to fill.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import attrs
import sqlalchemy as sa

__all__ = ["Definition", "mysql_alter", "parse_mysql", "rebuild", "same_definition"]

_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")
_COLUMN = re.compile(r"`((?:[^`]|``)+)`")
_KEY = re.compile(
    r"(?:PRIMARY KEY|(?:UNIQUE |FULLTEXT |SPATIAL |VECTOR )?KEY `(?P<index>(?:[^`]|``)+)`"
    r"|CONSTRAINT `(?P<constraint>(?:[^`]|``)+)` (?P<kind>FOREIGN KEY|CHECK))"
)


@attrs.frozen
class Definition:
    """A MySQL/MariaDB ``SHOW CREATE TABLE`` text in parts.

    Attributes:
        columns: (name, definition line) in order.
        keys: (drop clause, definition line): ``PRIMARY KEY``, indexes, foreign keys, checks.
        options: the table options after the closing parenthesis (no ``AUTO_INCREMENT``).
    """

    columns: tuple[tuple[str, str], ...]
    keys: tuple[tuple[str, str], ...]
    options: str


def parse_mysql(ddl: str) -> Definition | None:
    """The parts of a ``SHOW CREATE TABLE`` text; None when a line is not one this reader
    knows (the caller then rebuilds instead)."""
    lines = ddl.split("\n")
    if len(lines) < 3 or not lines[0].startswith("CREATE TABLE"):
        return None
    columns: list[tuple[str, str]] = []
    keys: list[tuple[str, str]] = []
    end = next((i for i, line in enumerate(lines) if line.startswith(")")), -1)
    if end < 0:
        return None
    for raw in lines[1:end]:
        line = raw.strip().rstrip(",")
        if line.startswith("`"):
            found = _COLUMN.match(line)
            if found is None:
                return None
            columns.append((found.group(1).replace("``", "`"), line))
            continue
        found = _KEY.match(line)
        if found is None:
            return None
        if line.startswith("PRIMARY KEY"):
            drop = "DROP PRIMARY KEY"
        elif found.group("kind") == "FOREIGN KEY":
            drop = f"DROP FOREIGN KEY `{found.group('constraint')}`"
        elif found.group("kind") == "CHECK":
            drop = f"DROP CONSTRAINT `{found.group('constraint')}`"
        else:
            drop = f"DROP INDEX `{found.group('index')}`"
        keys.append((drop, line))
    options = _AUTO_INCREMENT.sub("", " ".join(lines[end:])[1:].strip())
    return Definition(tuple(columns), tuple(keys), options)


def same_definition(a: str, b: str) -> bool:
    """Whether two ``SHOW CREATE TABLE`` texts say the same, ``AUTO_INCREMENT`` aside."""
    return _AUTO_INCREMENT.sub("", a) == _AUTO_INCREMENT.sub("", b)


def mysql_alter(
    table: str,
    before: Definition,
    now: Callable[[], Definition | None],
    run: Callable[[str], None],
    renamed: Mapping[str, str],
) -> list[str] | None:
    """Alter *table* (quoted) back to *before*, keeping its rows; the columns added back, or
    None when a definition could not be read (the caller rebuilds).

    Args:
        now: reads the table's definition as it is now (called between stages).
        run: runs one statement.
        renamed: column names now -> before, for the columns the run renamed.
    """
    current = now()
    if current is None:
        return None
    names = {name for name, _ in current.columns}
    wanted = {name for name, _ in before.columns}
    lines = dict(current.columns)
    # 1. columns the run renamed get their names back (CHANGE: every server version has it)
    back = [
        f"CHANGE {_quote(new)} {_quote(old)}{lines[new][len(_quote(new)) :]}"
        for new, old in renamed.items()
        if new in names and old not in names and old in wanted
    ]
    if back:
        run(f"ALTER TABLE {table} {', '.join(back)}")
        current = now()
        if current is None:
            return None
    # 2. keys and columns the pre-image lacks
    had_keys = {line for _, line in before.keys}
    drops = [drop for drop, line in current.keys if line not in had_keys]
    drops += [f"DROP COLUMN {_quote(n)}" for n, _ in current.columns if n not in wanted]
    if drops:
        fks = [d for d in drops if d.startswith("DROP FOREIGN KEY")]
        if fks:  # a foreign key goes before the index it uses
            run(f"ALTER TABLE {table} {', '.join(fks)}")
        rest = [d for d in drops if not d.startswith("DROP FOREIGN KEY")]
        if rest:
            run(f"ALTER TABLE {table} {', '.join(rest)}")
        current = now()
        if current is None:
            return None
    # 3. columns back to their definition and place
    present = dict(current.columns)
    added: list[str] = []
    changes: list[str] = []
    previous: str | None = None
    for name, line in before.columns:
        place = _place(previous)
        if name not in present:
            changes.append(f"ADD COLUMN {line} {place}")
            added.append(name)
        elif present[name] != line:
            changes.append(f"MODIFY COLUMN {line} {place}")
        previous = name
    if changes:
        run(f"ALTER TABLE {table} {', '.join(changes)}")
        current = now()
        if current is None:
            return None
    if [n for n, _ in current.columns] != [n for n, _ in before.columns]:
        moves = []
        previous = None
        for name, line in before.columns:  # MODIFY ... AFTER puts each where it was
            moves.append(f"MODIFY COLUMN {line} {_place(previous)}")
            previous = name
        run(f"ALTER TABLE {table} {', '.join(moves)}")
        current = now()
        if current is None:
            return None
    # 4. the pre-image's keys, then its options
    has_keys = {line for _, line in current.keys}
    adds = [f"ADD {line}" for _, line in before.keys if line not in has_keys]
    if adds:
        run(f"ALTER TABLE {table} {', '.join(adds)}")
    if current.options != before.options and " PARTITION " not in f" {before.options} ":
        options = before.options
        if "COMMENT=" in current.options and "COMMENT=" not in options:
            options += " COMMENT=''"
        run(f"ALTER TABLE {table} {options}")
    return added


def rebuild(
    conn: sa.Connection,
    table: str,
    ddl: str,
    hold: str,
    columns: Sequence[tuple[str, str]],
    *,
    create: Sequence[str] = (),
) -> None:
    """Recreate *table* (quoted) from *ddl*, keeping its rows: they wait in *hold* (a new
    table in the backup schema) meanwhile; *columns* are those put back, (name now, name
    in *ddl*); *create* the statements run after the rows are back (SQLite: indexes and
    triggers). Foreign key checks must be off (the caller's)."""
    q = conn.dialect.identifier_preparer.quote_identifier
    conn.exec_driver_sql(f"CREATE TABLE {hold} AS SELECT * FROM {table}")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(ddl)
    if columns:
        was = ", ".join(q(now) for now, _ in columns)
        into = ", ".join(q(then) for _, then in columns)
        conn.exec_driver_sql(f"INSERT INTO {table} ({into}) SELECT {was} FROM {hold}")
    conn.exec_driver_sql(f"DROP TABLE {hold}")
    for statement in create:
        conn.exec_driver_sql(statement)


def _place(previous: str | None) -> str:
    return "FIRST" if previous is None else f"AFTER {_quote(previous)}"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
