"""What a statement touches: the objects whose pre-images a run records."""

from __future__ import annotations

import pytest

from lupo_migrate.handlers._touch import Touch, touches


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
