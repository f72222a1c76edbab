"""The test databases themselves: each kind gives an empty, writable, isolated database."""

from __future__ import annotations

import sqlalchemy as sa


def test_a_fresh_database_is_empty_and_writable(database_url: str) -> None:
    """No tables at first; a table can be created and read back."""
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id FROM t").scalar_one() == 1
    finally:
        engine.dispose()
