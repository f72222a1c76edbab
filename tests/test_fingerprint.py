"""Schema fingerprints and table data checksums on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from conftest import needs_corpus
from databases import fresh_database
from lupo_migrate import Difference, Fingerprint, diff
from lupo_migrate.backends.sqlalchemy import read_fingerprint, table_data
from lupo_migrate.core.fingerprint import restrict
from lupo_migrate.errors import StorageError

CORE_SQL = Path(__file__).resolve().parents[2] / "shared/corpus/lupopedia/baseline/core.sql"

# --- the pure part ---------------------------------------------------------------------------

_names = st.text("abcxyz", min_size=1, max_size=3)
_columns = st.lists(
    st.fixed_dictionaries({"name": _names, "type": st.sampled_from(["int", "text"])}),
    unique_by=lambda c: c["name"],
    max_size=4,
)
_objects = st.dictionaries(
    _names.map(lambda n: f"table:{n}"),
    st.fixed_dictionaries({"columns": _columns, "options": st.dictionaries(_names, _names)}),
    max_size=4,
)


class TestPure:
    @given(_objects)
    def test_equal_objects_hash_equally_whatever_their_order(self, objects: dict[str, Any]) -> None:
        a = Fingerprint("mysql", objects)
        b = Fingerprint("mysql", dict(reversed(list(objects.items()))))
        assert a == b
        assert a.digest == b.digest
        assert diff(a, b) == ()

    @given(_objects)
    def test_json_round_trip(self, objects: dict[str, Any]) -> None:
        a = Fingerprint("postgresql", objects)
        assert Fingerprint.from_json(a.to_json()) == a

    @given(_objects, _objects)
    def test_diff_is_empty_exactly_when_equal(self, a: dict[str, Any], b: dict[str, Any]) -> None:
        fa, fb = Fingerprint("mysql", a), Fingerprint("mysql", b)
        assert (diff(fa, fb) == ()) == (fa == fb) == (fa.digest == fb.digest)

    def test_differences_name_the_object_the_part_and_the_value(self) -> None:
        a = Fingerprint(
            "mysql",
            {"table:t": {"columns": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}]}},
        )
        b = Fingerprint(
            "mysql",
            {
                "table:t": {
                    "columns": [{"name": "y", "type": "int"}, {"name": "x", "type": "bigint"}]
                },
                "view:v": {"definition": "select 1"},
            },
        )
        assert [str(d) for d in diff(a, b)] == [
            'table t: column x: type: "int" -> "bigint"',
            'table t: column order: ["x", "y"] -> ["y", "x"]',
            "view v: added",
        ]
        assert [str(d) for d in diff(b, a)][-1] == "view v: missing"

    def test_another_family_never_compares_equal(self) -> None:
        (only,) = diff(Fingerprint("mysql", {}), Fingerprint("sqlite", {}))
        assert only == Difference("schema:*", ("dialect",), "mysql", "sqlite")

    def test_restrict_keeps_the_named_objects(self) -> None:
        fp = Fingerprint("sqlite", {"table:a": {}, "table:b": {}, "view:c": {}})
        assert restrict(fp, ["table:a", "view:c", "table:zz"]).objects.keys() == {
            "table:a",
            "view:c",
        }


# --- on the databases ------------------------------------------------------------------------


def _family(engine: sa.Engine) -> str:
    return {"mariadb": "mysql"}.get(engine.dialect.name, engine.dialect.name)


SCHEMA = {
    "common": [
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL DEFAULT 'x',"
        " CONSTRAINT name_not_empty CHECK (name <> ''))",
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER,"
        " v NUMERIC(10, 2), CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id)"
        " ON DELETE CASCADE)",
        "CREATE INDEX ix_child_v ON child (v)",
        "CREATE UNIQUE INDEX ux_parent_name ON parent (name)",
        "CREATE VIEW parent_names AS SELECT id, name FROM parent",
    ],
    "mysql": [
        "CREATE TRIGGER trg_parent BEFORE INSERT ON parent FOR EACH ROW"
        " SET NEW.name = TRIM(NEW.name)",
        "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    ],
    "postgresql": [
        "CREATE FUNCTION trim_name() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.name := trim(NEW.name); RETURN NEW; END $$",
        "CREATE TRIGGER trg_parent BEFORE INSERT ON parent FOR EACH ROW"
        " EXECUTE FUNCTION trim_name()",
    ],
    "sqlite": [
        "CREATE TRIGGER trg_parent AFTER INSERT ON parent BEGIN"
        " UPDATE parent SET name = trim(name) WHERE id = NEW.id; END",
    ],
}

#: One change per kind of object part, and (a regular expression for) the difference it makes.
CHANGES = {
    "column default": (
        {
            "mysql": "ALTER TABLE parent ALTER COLUMN name SET DEFAULT 'y'",
            "postgresql": "ALTER TABLE parent ALTER COLUMN name SET DEFAULT 'y'",
        },
        "table parent: column name: default",
    ),
    "column type": (
        {
            "mysql": "ALTER TABLE child MODIFY COLUMN v NUMERIC(12, 2)",
            "postgresql": "ALTER TABLE child ALTER COLUMN v TYPE NUMERIC(12, 2)",
        },
        "table child: column v: type",
    ),
    "nullability": (
        {
            "mysql": "ALTER TABLE child MODIFY COLUMN v NUMERIC(10, 2) NOT NULL",
            "postgresql": "ALTER TABLE child ALTER COLUMN v SET NOT NULL",
        },
        "table child: column v: nullable: true -> false",
    ),
    "comment": (
        {
            "mysql": "ALTER TABLE child MODIFY COLUMN v NUMERIC(10, 2) COMMENT 'money'",
            "postgresql": "COMMENT ON COLUMN child.v IS 'money'",
        },
        'table child: column v: comment: (null|"") -> "money"',
    ),
    "column order": (
        {"mysql": "ALTER TABLE child MODIFY COLUMN v NUMERIC(10, 2) AFTER id"},
        "table child: column order",
    ),
    "added column": (
        {"*": "ALTER TABLE child ADD COLUMN w INTEGER"},
        "table child: column w: added",
    ),
    "dropped index": ({"*": "DROP INDEX ix_child_v{on}"}, "table child: index ix_child_v: missing"),
    "dropped foreign key": (
        {
            "mysql": "ALTER TABLE child DROP FOREIGN KEY fk_parent",
            "postgresql": "ALTER TABLE child DROP CONSTRAINT fk_parent",
        },
        "table child: foreign_key fk_parent: missing",
    ),
    "dropped check": (
        {
            "mysql": "ALTER TABLE parent DROP CONSTRAINT name_not_empty",
            "postgresql": "ALTER TABLE parent DROP CONSTRAINT name_not_empty",
        },
        "table parent: check name_not_empty: missing",
    ),
    "view": ({"*": "DROP VIEW parent_names"}, "view parent_names: missing"),
    "trigger": ({"*": "DROP TRIGGER trg_parent{on}"}, "trigger trg_parent: missing"),
    "table": ({"*": "CREATE TABLE extra (id INTEGER)"}, "table extra: added"),
}


def _build(engine: sa.Engine) -> sa.Engine:
    family = _family(engine)
    with engine.begin() as conn:
        for statement in SCHEMA["common"] + SCHEMA[family]:
            conn.exec_driver_sql(statement)
    return engine


@pytest.fixture(name="schema_engine")
def _schema_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = _build(sa.create_engine(database_url))
    yield engine
    engine.dispose()


_MARKS = {"mariadb": pytest.mark.mariadb, "postgresql": pytest.mark.postgresql}
_FAMILY = {"sqlite": "sqlite", "mariadb": "mysql", "postgresql": "postgresql"}
#: (database kind, change) for every change the database can make in place.
_CASES = [
    pytest.param(kind, change, id=f"{kind}-{change}", marks=_MARKS.get(kind, ()))
    for kind in ("sqlite", "mariadb", "postgresql")
    for change, (statements, _) in sorted(CHANGES.items())
    if _FAMILY[kind] in statements or "*" in statements
]


def _fingerprint(engine: sa.Engine) -> Fingerprint:
    with engine.connect() as conn:
        return read_fingerprint(conn)


def test_every_kind_of_object_is_described(schema_engine: sa.Engine) -> None:
    fp = _fingerprint(schema_engine)
    assert {"table:parent", "table:child", "view:parent_names", "trigger:trg_parent"} <= set(
        fp.objects
    )
    assert fp.tables == ("child", "parent")
    child = fp.objects["table:child"]
    assert [c["name"] for c in child["columns"]] == ["id", "parent_id", "v"]
    assert any(ix["name"] == "ix_child_v" for ix in child["indexes"])
    (key,) = child["foreign_keys"]
    if _family(schema_engine) == "mysql":  # the key and its rules, read apart and joined
        assert key == {
            "name": "fk_parent",
            "columns": ["parent_id"],
            "references": [None, "parent"],
            "referenced_columns": ["id"],
            "on_update": "RESTRICT",
            "on_delete": "CASCADE",
        }
    if _family(schema_engine) != "sqlite":
        assert [k["name"] for k in fp.objects["table:parent"]["checks"]] == ["name_not_empty"]
    else:
        assert len(fp.objects["table:parent"]["checks"]) == 1
    if _family(schema_engine) == "mysql":
        assert "routine:function:twice" in fp.objects
    if _family(schema_engine) == "postgresql":
        assert "routine:function:trim_name()" in fp.objects


def test_stable_across_reads_and_connections(schema_engine: sa.Engine) -> None:
    first = _fingerprint(schema_engine)
    second = _fingerprint(schema_engine)
    assert first == second
    assert first.digest == second.digest


@pytest.mark.parametrize(("kind", "change"), _CASES)
def test_each_change_is_named(kind: str, change: str, tmp_path: Path) -> None:
    statements, expected = CHANGES[change]
    family = _FAMILY[kind]
    statement = statements.get(family, statements.get("*", ""))
    on = {"mysql": " ON child", "postgresql": "", "sqlite": ""}[family]
    if "TRIGGER" in statement:
        on = {"mysql": "", "postgresql": " ON parent", "sqlite": ""}[family]
    with fresh_database(kind, tmp_path) as url:
        engine = _build(sa.create_engine(url))
        before = _fingerprint(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(statement.format(on=on))
        after = _fingerprint(engine)
        engine.dispose()
    found = [str(d) for d in diff(before, after)]
    assert any(re.search(expected, line) for line in found), found
    assert before.digest != after.digest


def test_excluded_tables_are_left_out(schema_engine: sa.Engine) -> None:
    with schema_engine.connect() as conn:
        fp = read_fingerprint(conn, exclude={"child"})
        by_rule = read_fingerprint(conn, exclude=lambda name: name.startswith("ch"))
    assert "table:child" not in fp.objects
    assert fp == by_rule


class TestTableData:
    def test_same_rows_in_another_order_same_checksum(self, schema_engine: sa.Engine) -> None:
        rows = [(1, "a"), (2, "b"), (3, None)]
        with schema_engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE a (id INTEGER, s VARCHAR(5))")
            conn.exec_driver_sql("CREATE TABLE b (id INTEGER, s VARCHAR(5))")
            for table, ordered in (("a", rows), ("b", rows[::-1])):
                for row in ordered:
                    conn.execute(
                        sa.text(f"INSERT INTO {table} (id, s) VALUES (:i, :s)"),
                        {"i": row[0], "s": row[1]},
                    )
            data = table_data(conn, ["a", "b", "parent"])
            assert data["a"] == data["b"]
            assert data["a"].rows == 3
            assert data["parent"].rows == 0
            conn.exec_driver_sql("UPDATE b SET s = 'c' WHERE id = 3")  # NULL -> 'c'
            changed = table_data(conn, ["b"])["b"]
            assert changed.rows == 3
            assert changed.checksum != data["a"].checksum
            conn.exec_driver_sql("UPDATE b SET s = NULL WHERE id = 3")
            assert table_data(conn, ["b"])["b"] == data["a"]

    def test_a_missing_table_is_named(self, schema_engine: sa.Engine) -> None:
        with schema_engine.connect() as conn, pytest.raises(StorageError, match="nope"):
            table_data(conn, ["nope"])


@needs_corpus
def test_corpus_baseline(mariadb_url: str) -> None:
    """The 185-table Lupopedia baseline: every table described, the same on a second read."""
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        for statement in _statements(CORE_SQL.read_text(encoding="utf-8")):
            conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        first = read_fingerprint(conn)
        second = read_fingerprint(conn)
        data = table_data(conn, first.tables)
    engine.dispose()
    assert len(first.tables) == 185
    assert first == second
    assert set(data) == set(first.tables)


def _statements(sql: str) -> list[str]:
    from lupo_migrate.sql.split import split

    return [s.text for s in split(sql, dialect="mysql")]
