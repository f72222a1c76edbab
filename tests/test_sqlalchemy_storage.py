"""SqlAlchemyStorage on SQLite, MariaDB and PostgreSQL, beyond the contract of check_storage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import given

from lupo_migrate.backends import ManualClock
from lupo_migrate.backends.sqlalchemy import (
    SCHEMA_VERSION,
    RollbackDecision,
    SqlAlchemyStorage,
    make_tables,
)
from lupo_migrate.backends.sqlalchemy._codec import run_from_json, run_to_json, steps_to_json
from lupo_migrate.core.model import AppliedStep, Classification, Finding, Phase, Run, Severity, Step
from lupo_migrate.errors import StorageError
from lupo_migrate.testing import check_storage, st_runs

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
TABLES = {
    "migration_batches",
    "migration_files",
    "migration_dependencies",
    "migration_progress",
    "migration_validation_log",
    "migration_rollback_log",
    "migration_system_state",
    "migration_alerts",
}


@pytest.fixture(name="engine")
def _engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(name="storage")
def _storage(engine: sa.Engine) -> SqlAlchemyStorage:
    storage = SqlAlchemyStorage(engine, clock=ManualClock(T0))
    storage.ensure_schema()
    return storage


def _drop_all(engine: sa.Engine) -> None:
    make_tables().metadata.drop_all(engine)


class TestSchema:
    def test_creates_the_8_tables(self, storage: SqlAlchemyStorage) -> None:
        """ensure_schema() creates exactly the 8 orchestration tables."""
        assert set(sa.inspect(storage.engine).get_table_names()) == TABLES
        assert {t.name for t in storage.tables.all} == TABLES

    def test_timestamps_are_14_digit_bigints(self, storage: SqlAlchemyStorage) -> None:
        """Stamps are BIGINT columns holding YYYYMMDDHHMMSS in UTC."""
        columns = sa.inspect(storage.engine).get_columns("migration_batches")
        types = {c["name"]: c["type"] for c in columns}
        assert isinstance(types["created_at"], sa.BigInteger)
        assert isinstance(types["updated_at"], sa.BigInteger)
        storage.create_run(Run(id="r1"))
        t = storage.tables.batches
        with storage.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.created_at, t.c.updated_at)).one()
        assert tuple(row) == (20240301120000, 20240301120000)

    def test_ensure_schema_twice_is_one_query(self, storage: SqlAlchemyStorage) -> None:
        """A second ensure_schema() changes nothing and costs a single query."""
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        sa.event.listen(storage.engine, "before_cursor_execute", count)
        try:
            assert storage.ensure_schema() == SCHEMA_VERSION
            assert SqlAlchemyStorage(storage.engine).create_schema() == SCHEMA_VERSION
        finally:
            sa.event.remove(storage.engine, "before_cursor_execute", count)
        assert len(statements) == 2, statements

    def test_newer_schema_is_refused(self, storage: SqlAlchemyStorage) -> None:
        """A database written by a newer lupo_migrate is refused with what to do."""
        t = storage.tables.system_state
        with storage.engine.begin() as conn:
            conn.execute(t.update().where(t.c.target == "__schema__").values(schema_version=99))
        with pytest.raises(
            StorageError, match=rf"version 99, newer than version {SCHEMA_VERSION}"
        ) as info:
            SqlAlchemyStorage(storage.engine).ensure_schema()
        assert "Upgrade lupo_migrate" in str(info.value)

    def test_a_version_1_schema_is_upgraded_in_place_and_keeps_its_rows(
        self, storage: SqlAlchemyStorage
    ) -> None:
        """Version 1 had no fingerprint column: ensure_schema() adds it, rows stay, twice safe."""
        t = storage.tables.system_state
        storage.set_phase("app", None, None, 20260101000000)
        with storage.engine.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER TABLE {storage.engine.dialect.identifier_preparer.format_table(t)}"
                " DROP COLUMN fingerprint"
            )
            conn.execute(t.update().where(t.c.target == "__schema__").values(schema_version=1))
        again = SqlAlchemyStorage(storage.engine, schema=t.schema)
        assert again.ensure_schema() == SCHEMA_VERSION
        assert again.ensure_schema() == SCHEMA_VERSION
        assert again.system_state("app") is not None
        again.record_fingerprint("app", '{"x": 1}', 20260101000001)
        assert again.fingerprint("app") == '{"x": 1}'
        assert again.fingerprint("other") is None

    def test_missing_tables_say_what_to_do(self, engine: sa.Engine) -> None:
        """Using a storage before ensure_schema() names the remedy."""
        with pytest.raises(StorageError, match=r"ensure_schema\(\)"):
            SqlAlchemyStorage(engine).get_run("x")


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@127.0.0.1:1/x",
        "postgresql+psycopg2://postgres:secret@127.0.0.1:1/x",
    ],
)
def test_unreachable_server_is_a_one_line_storage_error(url: str) -> None:
    """An unreachable server gives StorageError: one line, no SQL, no password, cause kept."""
    engine = sa.create_engine(url)
    for call in (
        SqlAlchemyStorage(engine).ensure_schema,
        lambda: SqlAlchemyStorage(engine).get_run("r"),
    ):
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "127.0.0.1:1" in message
        assert "secret" not in message
        assert "sqlalche.me" not in message
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)


class TestValues:
    def test_unicode_round_trips(self, storage: SqlAlchemyStorage) -> None:
        """Non-ASCII text (4-byte UTF-8 too) survives every column."""
        run = Run(id="r-ü", target="tåg", holder="hôte 🐘", steps=("ß", "日本"))
        storage.create_run(run)
        assert storage.get_run("r-ü") == run
        finding = Finding(severity=Severity.INFO, message="ok 🐘", path="d/é.sql", hint="✓")
        storage.record_findings("r-ü", [finding])
        assert storage.findings("r-ü") == [finding]

    def test_run_ids_are_case_sensitive(self, storage: SqlAlchemyStorage) -> None:
        """Two run ids differing by case are two runs (binary collation on MySQL)."""
        storage.create_run(Run(id="abc"))
        storage.create_run(Run(id="ABC", target="other"))
        assert storage.get_run("ABC") == Run(id="ABC", target="other")

    def test_contract_on_a_prefilled_database(self, engine: sa.Engine) -> None:
        """check_storage() also passes when each storage starts empty on the same database."""

        def make() -> SqlAlchemyStorage:
            _drop_all(engine)
            storage = SqlAlchemyStorage(engine)
            storage.ensure_schema()
            return storage

        check_storage(make)


@given(run=st_runs())
def test_run_json_round_trips(run: Run) -> None:
    """Any run encodes to JSON and decodes to an equal run."""
    assert run_from_json(run_to_json(run), steps_to_json(run)) == run


def test_applied_prefix_is_stored_as_a_count() -> None:
    """A run half-way through its plan stores the number applied, not the ids again."""
    run = Run(id="r", steps=[f"s{i}" for i in range(50)], applied=[f"s{i}" for i in range(20)])
    assert '"applied":20' in run_to_json(run)
    assert run_from_json(run_to_json(run), steps_to_json(run)) == run
    odd = Run(id="r", steps=["a", "b"], applied=["b"])
    assert '"applied":["b"]' in run_to_json(odd)
    assert run_from_json(run_to_json(odd), steps_to_json(odd)) == odd


def test_unreadable_state_is_a_storage_error() -> None:
    """A hand-edited state column is reported, not crashed on."""
    with pytest.raises(StorageError, match="cannot be read"):
        run_from_json('{"format": 1}', "[]")


class TestExtras:
    def test_plan(self, storage: SqlAlchemyStorage) -> None:
        """record_plan() keeps every step in order with its dependencies; a rewrite replaces."""
        steps = [Step(id="b", path="b.sql"), Step(id="a", path="a.sql", depends_on=["b", "c"])]
        storage.record_plan("r1", steps)
        storage.record_plan("r1", [*steps, Step(id="c", path="c.sql")])
        assert list(storage.planned("r1").items()) == [("b", ()), ("a", ("b", "c")), ("c", ())]
        assert storage.planned("nope") == {}

    def test_accept_checksum(self, storage: SqlAlchemyStorage) -> None:
        """An accepted checksum replaces the ledger's and records who and when."""
        entry = AppliedStep(step_id="s", target="t", checksum="aa", run_id="r", applied_at=1)
        storage.record_applied(entry)
        storage.accept_checksum("t", "s", "bb", "ops@host", 20240301130000)
        assert storage.applied("t")["s"].checksum == "bb"
        assert storage.accepted("t") == {"s": ("ops@host", 20240301130000)}
        with pytest.raises(StorageError, match="not applied"):
            storage.accept_checksum("t", "zz", "bb", "ops", 1)
        storage.record_applied(entry)  # re-applied: the acceptance no longer holds
        assert storage.accepted("t") == {}

    def test_alerts(self, storage: SqlAlchemyStorage) -> None:
        """Alerts get increasing ids and can be acknowledged and resolved."""
        first = storage.record_alert("r1", "warning", "slow", 20240301120000)
        second = storage.record_alert(None, "critical", "lock lost", 20240301120001)
        assert second.id > first.id
        assert storage.alerts() == [first, second]
        storage.close_alert(first.id, 20240301120002, resolved=False)
        storage.close_alert(second.id, 20240301120003)
        assert storage.alerts("r1")[0].acknowledged_at == 20240301120002
        assert [a.id for a in storage.alerts(unresolved=True)] == [first.id]

    def test_decisions(self, storage: SqlAlchemyStorage) -> None:
        """Rollback decisions are recorded pending, then decided by an operator."""
        recorded = storage.record_decision(
            RollbackDecision(
                run_id="r1",
                classification=Classification.B,
                scope=["s1", "s2"],
                window_seconds=86400,
                deadline=20240302120000,
                recorded_at=20240301120000,
            )
        )
        assert recorded.id > 0
        assert storage.decisions("r1") == [recorded]
        storage.decide(recorded.id, status="kept", operator="ops", at=20240301150000)
        (decided,) = storage.decisions()
        assert (decided.status, decided.decided_by, decided.scope) == ("kept", "ops", ("s1", "s2"))
        with pytest.raises(StorageError, match="no decision"):
            storage.decide(recorded.id + 100, status="kept", operator="ops", at=1)

    def test_system_state(self, storage: SqlAlchemyStorage) -> None:
        """set_phase() creates then updates the target's row."""
        assert storage.system_state("main") is None
        storage.set_phase("main", Phase.MIGRATING, "r1", 20240301120000)
        storage.set_phase("main", Phase.COMPLETING, "r1", 20240301120005)
        state = storage.system_state("main")
        assert state is not None
        assert (state.phase, state.run_id, state.updated_at) == ("completing", "r1", 20240301120005)
        storage.set_phase("main", None, None, 20240301120009)
        assert storage.system_state("main").phase is None  # type: ignore[union-attr]
