"""The MySQL step pipeline: held writes go first, in order, in the statement's packet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import _pipeline
from lupo_migrate.backends.sqlalchemy.target import make_engine
from lupo_migrate.errors import StorageError


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


def test_a_step_statement_takes_only_the_writes_up_to_the_last_urgent_one(
    connection: sa.Connection,
) -> None:
    """run(): what must precede the statement goes with it; the rest waits, so nothing of
    lupo_migrate's comes between two statements and ROW_COUNT() is the statement's own."""
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('earlier')")
    pipeline.defer("INSERT INTO log (what) VALUES ('urgent')", urgent=True)
    pipeline.defer("INSERT INTO log (what) VALUES ('lazy')")
    pipeline.run("INSERT INTO log (what) VALUES ('one'), ('two')")
    assert len(pipeline) == 1  # 'lazy' still held
    pipeline.run("INSERT INTO log (what) VALUES (CONCAT('rows: ', ROW_COUNT()))")
    # Nothing ran between the two: the second reads the first one's row count.
    assert _log(connection) == ["earlier", "urgent", "one", "two", "rows: 2"]
    pipeline.defer("INSERT INTO log (what) VALUES ('intent')", urgent=True)
    pipeline.run("INSERT INTO log (what) VALUES ('ddl')")
    assert len(pipeline) == 0
    assert _log(connection)[-3:] == ["lazy", "intent", "ddl"]


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


def test_the_guard_stops_the_packet_unless_one_row_matched(connection: sa.Connection) -> None:
    """CAS_GUARD after an UPDATE that matched no row: the rest of the packet does not run."""
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    connection.exec_driver_sql("INSERT INTO log (what) VALUES ('v1')")
    pipeline.defer("UPDATE log SET what = 'v2' WHERE what = 'v1'")
    pipeline.defer(_pipeline.CAS_GUARD)
    pipeline.send("INSERT INTO log (what) VALUES ('next')")
    assert _log(connection) == ["v2", "next"]
    pipeline.defer("UPDATE log SET what = 'v3' WHERE what = 'v1'")  # stale: matches nothing
    pipeline.defer(_pipeline.CAS_GUARD)
    with pytest.raises(StorageError, match="compare-and-set failed"):
        pipeline.send("INSERT INTO log (what) VALUES ('must not run')")
    assert _log(connection) == ["v2", "next"]


def test_discard_since_a_tag_keeps_what_came_before(connection: sa.Connection) -> None:
    """A step that fails before reaching the server drops its own writes only."""
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('previous step')", tag="state")
    pipeline.defer("SAVEPOINT lupo_step", tag="savepoint")
    pipeline.defer("INSERT INTO log (what) VALUES ('this step')", tag="journal")
    assert pipeline.discard(since="savepoint") == {"savepoint", "journal"}
    pipeline.send()
    assert _log(connection) == ["previous step"]


def test_a_stale_run_version_stops_the_next_statement(mariadb_url: str) -> None:
    """save_run on a bound MariaDB connection holds its compare-and-set back; with a stale
    version, the statement it travels with is refused by the server."""
    from lupo_migrate.backends.sqlalchemy import SqlAlchemyStorage
    from lupo_migrate.core.model import Run

    engine = make_engine(mariadb_url)
    storage = SqlAlchemyStorage(engine)
    storage.ensure_schema()
    run = Run(id="r1", steps=("a",))
    storage.create_run(run)
    try:
        with engine.connect() as connection, storage.bound(connection):
            _pipeline.attach(connection)
            pipeline = _pipeline.pipeline_of(connection)
            assert pipeline is not None
            storage.save_run(run, expected_version=run.version + 5)  # stale: held back
            assert len(pipeline) == 2
            with pytest.raises(StorageError, match="compare-and-set failed"):
                pipeline.send("CREATE TABLE must_not_exist (id INT)")
            exists = connection.exec_driver_sql("SHOW TABLES LIKE 'must_not_exist'").all()
            assert exists == []
            _pipeline.detach(connection)
    finally:
        engine.dispose()


def test_a_result_set_in_the_packet_is_read_and_the_connection_stays_usable(
    connection: sa.Connection,
) -> None:
    """A migration's SELECT (a result set, not an OK packet) travels like any statement: its
    rows are read and dropped, the writes after it run, and the connection is ready for the
    next query (nothing of the packet left unread)."""
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    pipeline.defer("INSERT INTO log (what) VALUES ('before')")
    pipeline.defer("SELECT what, id FROM log UNION ALL SELECT 'x', 2")
    handle = pipeline.defer("INSERT INTO log (what) VALUES ('after')", want_id=True)
    assert pipeline.send("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3") == 3
    assert handle is not None
    assert pipeline.resolve(handle) == 2
    assert _log(connection) == ["before", "after"]
    assert connection.exec_driver_sql("SELECT 42").scalar_one() == 42


def test_row_counts_and_ids_past_one_byte_are_read_whole(connection: sa.Connection) -> None:
    """Row counts and insert ids are length-encoded in an OK packet: one byte below 251,
    then two, three or eight bytes."""
    connection.exec_driver_sql("ALTER TABLE log MODIFY id BIGINT AUTO_INCREMENT")
    connection.exec_driver_sql("ALTER TABLE log AUTO_INCREMENT = 70000")
    connection.commit()
    pipeline = _pipeline.pipeline_of(connection)
    assert pipeline is not None
    handle = pipeline.defer("INSERT INTO log (what) VALUES ('big id')", want_id=True)
    assert pipeline.send("INSERT INTO log (what) SELECT 'many' FROM seq_1_to_300") == 300
    assert handle is not None
    assert pipeline.resolve(handle) == 70000
    assert pipeline.send("UPDATE log SET what = 'more' WHERE what = 'many'") == 300
    handle = pipeline.defer("INSERT INTO log (id, what) VALUES (5000000000, 'huge')", want_id=True)
    pipeline.send("DO 1")
    assert pipeline.resolve(handle) == 5000000000
