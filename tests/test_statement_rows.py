"""The STATEMENTS fact as a view of each step's statements (``run.facts.StatementRows``): it
reads, indexes and groups as the tuple of (step id, path, line, SQL) rows it replaced."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.run.facts import StatementRows
from lupo_migrate.sql.split import Statement

_PARTS = st.lists(
    st.tuples(
        st.sampled_from(["V1__a", "V2__b", "V3__c"]),
        st.lists(st.sampled_from(["SELECT 1", "DROP TABLE t"]), max_size=4),
    ),
    max_size=4,
    unique_by=lambda part: part[0],
)


@given(parts=_PARTS)
def test_statement_rows_read_as_the_rows_they_stand_for(
    parts: list[tuple[str, list[str]]],
) -> None:
    listed = [
        (sid, f"{sid}.sql", tuple(Statement(sql, n + 1, n) for n, sql in enumerate(sqls)))
        for sid, sqls in parts
    ]
    rows = StatementRows(listed)
    expected = [(sid, path, s.line, s.text) for sid, path, stmts in listed for s in stmts]
    assert list(rows) == expected
    assert len(rows) == len(expected)
    assert [rows[i] for i in range(-len(expected), len(expected))] == expected * 2
    assert rows[1:3] == expected[1:3]
    grouped: dict[str, list[tuple[str, str, int, str]]] = {}
    for row in expected:
        grouped.setdefault(row[0], []).append(row)
    assert {sid: list(view) for sid, view in rows.by_step().items()} == grouped
