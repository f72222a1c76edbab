"""The PostgreSQL lock and rewrite lint rules (issue 21; squawk's list is the reference):
which statement holds a table in use while it scans, builds or rewrites, and how to do the
same without that lock."""

from __future__ import annotations

import pytest

from lupo_migrate.core.model import Severity
from lupo_migrate.sql.lint import lint_sql

LOCKS = [
    (
        "CREATE INDEX i ON t (c)",
        "locks-writes",
        "CREATE INDEX without CONCURRENTLY on t: its writes",
    ),
    ("CREATE UNIQUE INDEX i ON ONLY s.t (c)", "locks-writes", "CREATE INDEX without CONCURRENTLY"),
    ("DROP INDEX i", "locks-writes", "on the table of index i: its reads and writes"),
    ("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)", "locks-writes", "ADD CHECK without NOT VALID"),
    ("ALTER TABLE t ADD FOREIGN KEY (c) REFERENCES u (id)", "locks-writes", "ADD FOREIGN KEY"),
    ("ALTER TABLE ONLY t ALTER COLUMN c SET NOT NULL", "locks-writes", "SET NOT NULL on t"),
    ("ALTER TABLE t ADD PRIMARY KEY (id)", "locks-writes", "without USING INDEX"),
    ("ALTER TABLE t ALTER COLUMN c TYPE bigint", "rewrites-table", "ALTER COLUMN TYPE rewrites t"),
    ("ALTER TABLE t ALTER c SET DATA TYPE text", "rewrites-table", "ALTER COLUMN TYPE"),
    ("ALTER TABLE t ADD COLUMN d uuid DEFAULT gen_random_uuid()", "rewrites-table", "volatile"),
    ("ALTER TABLE t ADD COLUMN n bigserial", "rewrites-table", "volatile default"),
    ("ALTER TABLE t SET TABLESPACE slow", "rewrites-table", "SET TABLESPACE rewrites t"),
    ("VACUUM FULL t", "rewrites-table", "VACUUM FULL rewrites t"),
    ("CLUSTER t USING i", "rewrites-table", "CLUSTER rewrites t"),
]

SAFE = [
    "CREATE INDEX CONCURRENTLY i ON t (c)",
    "DROP INDEX CONCURRENTLY IF EXISTS i",
    "ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID",
    "ALTER TABLE t VALIDATE CONSTRAINT k",
    "ALTER TABLE t ADD CONSTRAINT p PRIMARY KEY USING INDEX i",
    "ALTER TABLE t ADD COLUMN d int DEFAULT 0",  # not volatile: no rewrite since PostgreSQL 11
    "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
    "VACUUM t",
]


def _lint(*statements: str, dialect: str = "postgresql") -> list[tuple[str, Severity, str, str]]:
    rows = [("V1", "V1.sql", n, sql) for n, sql in enumerate(statements, 1)]
    return [
        (f.code or "", f.severity, f.message, f.hint or "")
        for f in lint_sql(rows, dialect=dialect)
        if f.code in ("locks-writes", "rewrites-table")
    ]


@pytest.mark.parametrize(("sql", "code", "says"), LOCKS)
def test_each_lock_or_rewrite_is_a_warning_with_the_way_round(
    sql: str, code: str, says: str
) -> None:
    found = _lint(sql)
    assert len(found) == 1, found
    got, severity, message, hint = found[0]
    assert (got, severity) == (code, Severity.WARNING)
    assert says in message, message
    assert message.endswith(f"[{code}]")
    if "TABLESPACE" not in sql and "VACUUM" not in sql and "CLUSTER" not in sql:
        assert hint.startswith("instead: "), hint


@pytest.mark.parametrize("sql", SAFE)
def test_the_online_forms_say_nothing(sql: str) -> None:
    assert _lint(sql) == []


def test_a_table_the_plan_creates_is_nobody_elses_yet() -> None:
    assert (
        _lint(
            'CREATE TABLE IF NOT EXISTS "n" (id int)',
            "CREATE INDEX ni ON n (id)",
            "ALTER TABLE n ALTER COLUMN id TYPE bigint",
        )
        == []
    )
    assert [code for code, *_ in _lint("CREATE INDEX ni ON n (id)")] == ["locks-writes"]


def test_not_on_mysql() -> None:
    assert _lint(*(sql for sql, _, _ in LOCKS), dialect="mysql") == []


def test_the_rules_can_be_forbidden() -> None:
    rows = [("V1", "V1.sql", 1, "CREATE INDEX i ON t (c)")]
    (found,) = lint_sql(rows, dialect="postgresql", forbid=["locks-writes"])
    assert found.severity is Severity.ERROR
    assert "forbids locks-writes" in (found.hint or "")
