"""What a statement touches: the objects whose pre-images a run records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lupo_migrate.sql import effects
from lupo_migrate.sql import touches as _touch
from lupo_migrate.sql.effects import _first_token as effect_first
from lupo_migrate.sql.split import SplitError
from lupo_migrate.sql.touches import Touch, leading_word, touches, words


def t(
    kind: str, name: str, action: str, schema: str | None = None, new: str | None = None
) -> Touch:
    return Touch(kind, name, action, schema, new_name=new)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TABLE `a` (id INT)", [t("table", "a", "create")]),
        ("CREATE TABLE IF NOT EXISTS s.a (id INT)", [t("table", "a", "create", "s")]),
        ("CREATE TEMPORARY TABLE tmp (id INT)", []),
        ("CREATE UNIQUE INDEX ix ON `b` (x)", [t("table", "b", "alter")]),
        ("ALTER TABLE `lupopedia`.`t` ADD COLUMN c INT", [t("table", "t", "alter", "lupopedia")]),
        (
            "ALTER TABLE a RENAME TO b",
            [t("table", "a", "alter"), t("table", "a", "rename", new="b")],
        ),
        ("ALTER TABLE a RENAME COLUMN x TO y", [t("table", "a", "alter")]),
        (
            "DROP TABLE IF EXISTS a, `b`",
            [t("table", "a", "drop"), t("table", "b", "drop")],
        ),
        ("DROP INDEX ix ON t", [t("table", "t", "alter")]),
        (
            "RENAME TABLE a TO b, c TO d",
            [t("table", "a", "rename", new="b"), t("table", "c", "rename", new="d")],
        ),
        ("TRUNCATE TABLE t", [t("table", "t", "write")]),
        ("INSERT IGNORE INTO t (a) VALUES (1)", [t("table", "t", "write")]),
        ("REPLACE INTO t VALUES (1)", [t("table", "t", "write")]),
        ("UPDATE t SET a = (SELECT 1 FROM u)", [t("table", "t", "write")]),
        ("DELETE FROM `s`.`t` WHERE x = 1", [t("table", "t", "write", "s")]),
        ("DELETE a FROM a JOIN b USING (id)", [t("table", "a", "write")]),
        (
            "CREATE DEFINER=`root`@`localhost` TRIGGER tr BEFORE INSERT ON t"
            " FOR EACH ROW SET NEW.a = 1",
            [t("trigger", "tr", "create"), t("table", "t", "alter")],
        ),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", [t("view", "v", "create")]),
        ("DROP PROCEDURE IF EXISTS p", [t("routine", "p", "drop")]),
        ("SET NAMES utf8mb4", []),
        ("PRAGMA foreign_keys = OFF", []),
        ("PRAGMA user_version = 3", [t("unknown", "PRAGMA", "alter")]),
        ("SELECT * FROM t", []),
        ("-- only a comment\nSTART TRANSACTION", []),
        ("CALL p()", [t("unknown", "CALL", "alter")]),
        ("SET GLOBAL event_scheduler = ON", [t("unknown", "SET", "alter")]),
    ],
)
def test_touches(sql: str, expected: list[Touch]) -> None:
    assert list(touches(sql, dialect="mysql")) == expected


def test_names_in_strings_and_comments_are_not_objects() -> None:
    found = touches("INSERT INTO log (msg) VALUES ('DROP TABLE x') -- UPDATE y", dialect="mysql")
    assert found == (t("table", "log", "write"),)


_PIECES = st.sampled_from(
    [
        "INSERT", "insert", "REPLACE", "LOW_PRIORITY", "IGNORE", "DELAYED", "OR", "INTO",
        "into", "t", "big", "s", ".", "`q`", '"q"', "[q]", "(", ")", "/*c*/", "/*!c*/",
        "# c\n", "-- c\n", "--c", ";", ":", "'v'", "$$", "é", "a$b", "1", "VALUES", "l:",
        "\xa0", "t\xa0", "valuesé",
    ]
)  # fmt: skip
_NAMES = st.sampled_from(
    ["t", "s", ".", "`q`", '"q"', "[q]", "a$b", "é", "/*c*/", "(", ";", "\xa0", "tŝ", "\x0b"]
)
_HEADS = st.one_of(
    st.lists(_PIECES, min_size=1, max_size=8),
    st.tuples(
        st.sampled_from(["INSERT", "REPLACE", "insert"]),
        st.lists(st.sampled_from(["IGNORE", "OR", "t", "INTO", "LOW_PRIORITY"]), max_size=3),
        st.lists(_NAMES, min_size=1, max_size=5),
    ).map(lambda parts: [parts[0], *parts[1], *parts[2]]),
)


@settings(max_examples=600, deadline=None)
@given(
    head=_HEADS,
    seps=st.lists(st.sampled_from([" ", "", "\n", "\t", "  "]), min_size=8, max_size=8),
    fam=st.sampled_from(["mysql", "postgresql", "sqlite"]),
)
def test_the_quick_reading_of_an_insert_head_agrees_with_its_tokens(
    head: list[str], seps: list[str], fam: str
) -> None:
    """A big file's INSERTs are read by one match (_PLAIN_INSERT) and their first word by
    another (leading_word): both say what the tokens say, for any head."""
    sql = "".join(sep + part for sep, part in zip(seps, head, strict=False)) + " VALUES (1)"
    try:
        toks = words(sql, fam)
    except SplitError:
        return
    up = [w.upper() if k == "word" else "" for k, w in toks]
    if up[:1] in (["INSERT"], ["REPLACE"]):
        assert touches(sql, dialect=fam) == _touch._insert(toks, up)
    plain = leading_word(sql)
    if plain is not None:
        assert toks[0] == ("word", plain)
    executed = words(effects._executed(sql, fam), fam)
    at = effects._start(executed)
    assert effect_first(sql, fam) == (executed[at] if at < len(executed) else None)
