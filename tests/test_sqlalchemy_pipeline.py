"""The MySQL step pipeline: held writes go first, in order, in the statement's packet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from lupo_migrate.errors import StorageError
from lupo_migrate.ext.sqlalchemy import _pipeline
from lupo_migrate.ext.sqlalchemy.target import make_engine


@pytest.fixture(name="connection")
def _connection(mariadb_url: str) -> Iterator[sa.Connection]:
    engine = make_engine(mariadb_url)
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE log (id INTEGER AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40))"
        )
        connection.commit()
        assert _pipeline.supports_pipelining(connection)
        _pipeline.attach(connection)
        yield connection
        _pipeline.detach(connection)
    engine.dispose()


def _log(connection: sa.Connection) -> list[str]:
    return list(connection.exec_driver_sql("SELECT what FROM log ORDER BY id").scalars())


def test_held_writes_run_before_the_statement_in_order(connection: sa.Connection) -> None:
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    handle = pipeline.defer(
        "INSERT INTO log (what) VALUES (%(w)s)", {"w": "it's 100% first"}, want_id=True
    )
    pipeline.defer("INSERT INTO log (what) VALUES ('second')")
    assert len(pipeline) == 2
    assert _log(connection) == []  # nothing sent yet
    pipeline.send("INSERT INTO log (what) VALUES (CONCAT('third', '%'))")
    assert len(pipeline) == 0
    assert _log(connection) == ["it's 100% first", "second", "third%"]
    assert handle is not None
    assert pipeline.resolve(handle) == 1


def test_a_failing_held_write_stops_the_packet_and_is_a_storage_error(
    connection: sa.Connection,
) -> None:
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('before')")
    pipeline.defer("INSERT INTO no_such_table (x) VALUES (1)")
    with pytest.raises(StorageError, match="did not run"):
        pipeline.send("INSERT INTO log (what) VALUES ('the statement')")
    assert _log(connection) == ["before"]


def test_the_statement_failing_is_the_drivers_error(connection: sa.Connection) -> None:
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('journal')")
    with pytest.raises(Exception, match="no_such_table") as info:
        pipeline.send("INSERT INTO no_such_table (x) VALUES (1)")
    assert not isinstance(info.value, StorageError)
    assert _log(connection) == ["journal"]


def test_a_compound_statement_travels_whole(connection: sa.Connection) -> None:
    """A procedure body with its own semicolons (from a DELIMITER block) is one statement."""
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('journal')")
    pipeline.send(
        "CREATE PROCEDURE add_two()\nBEGIN\n"
        "  INSERT INTO log (what) VALUES ('one');\n"
        "  INSERT INTO log (what) VALUES ('two');\nEND"
    )
    pipeline.send("CALL add_two()")
    assert _log(connection) == ["journal", "one", "two"]


def test_discard_drops_held_writes_and_names_their_tags(connection: sa.Connection) -> None:
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("SAVEPOINT lupo_step", tag="savepoint")
    pipeline.defer("INSERT INTO log (what) VALUES ('dropped')")
    assert pipeline.discard() == {"savepoint"}
    pipeline.send()
    assert _log(connection) == []
