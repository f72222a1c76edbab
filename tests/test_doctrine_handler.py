"""The doctrine handler: statement-by-statement apply, resume, down sections and inverses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from databases import fresh_database
from lupo_migrate.core.model import UNDO_BASE, Step
from lupo_migrate.errors import StatementError, StepError
from lupo_migrate.handlers import DoctrineHandler
from lupo_migrate.handlers.doctrine import DOWN_OFFSET, derive_inverse
from lupo_migrate.handlers.registry import HandlerRegistry
from lupo_migrate.typing import Handler, StepContext

CORPUS = Path("/work/shared/corpus/lupopedia")
CLEAN = (
    "4.0.113_add_seven_love_agents.sql",
    "4.1.3_insert_pack_role_registry.sql",
    "4.1.4_lupopedia_minimal_rest_api_tables.sql",
    "4.1.5_insert_exhusband_agent.sql",
    "4.1.6_create_labs_declarations_table.sql",
    "4.2.0_add_genesis_doctrine_tables.sql",
    "4.2.0_schema_freeze_enforcement.sql",
    "4.2.1_add_reverse_shaka_sync_table.sql",
    "4.4.1_create_actor_moods_table.sql",
    "4_1_1_create_help_topics.sql",
    "4_1_1_seed_help_topics.sql",
    "4_1_6_create_tldnr_table.sql",
    "20260120_drop_legacy_tables_and_set_limit_4.1.17.sql",
)


@attrs.define
class FakeContext:
    """A complete in-memory StepContext: records statements, fails on request."""

    root: Path
    step: Step
    dialect: str = "mysql"
    names: Mapping[str, str] = attrs.field(factory=lambda: {"core": "app"})
    renames: Mapping[str, str] = attrs.field(factory=dict)
    connection: Any = None
    fail_at: int | None = None
    executed: list[tuple[int, int | None, str]] = attrs.field(factory=list)
    finished: set[int] = attrs.field(factory=set)
    files_root: Path | None = None
    kept: list[tuple[int, str]] = attrs.field(factory=list)

    def read_text(self, relpath: str) -> str:
        return (self.root / relpath).read_text(encoding="utf-8")

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        self.executed.append((index, line, statement))
        if index == self.fail_at:
            raise StatementError(
                self.step.id,
                self.step.path,
                index=index,
                line=line,
                statement=statement,
                reason="refused",
            )
        self.finished.add(index)

    def done(self) -> frozenset[int]:
        return frozenset(self.finished)

    def record(self, text: str) -> int:
        index = UNDO_BASE + len(self.kept)
        self.kept.append((index, text))
        return index

    def records(self) -> list[tuple[int, str]]:
        return list(self.kept)


@attrs.define
class SqlContext:
    """A minimal real StepContext on a SQLAlchemy connection (no journal storage)."""

    root: Path
    step: Step
    connection: sa.Connection
    names: Mapping[str, str] = attrs.field(factory=dict)
    renames: Mapping[str, str] = attrs.field(factory=dict)
    finished: set[int] = attrs.field(factory=set)

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def read_text(self, relpath: str) -> str:
        return (self.root / relpath).read_text(encoding="utf-8")

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        try:
            self.connection.execution_options(no_parameters=True).exec_driver_sql(statement)
        except sa.exc.DBAPIError as exc:
            raise StatementError(
                self.step.id,
                self.step.path,
                index=index,
                line=line,
                statement=statement,
                reason=str(exc.orig),
            ) from exc
        self.finished.add(index)

    def done(self) -> frozenset[int]:
        return frozenset(self.finished)


def write(root: Path, name: str, text: str) -> Step:
    (root / name).write_text(text, encoding="utf-8")
    return Step(id=name.split(".")[0], path=name)


@pytest.fixture(name="handler")
def _handler() -> DoctrineHandler:
    return DoctrineHandler()


class TestProtocol:
    def test_is_a_handler_and_registers(self, handler: DoctrineHandler) -> None:
        """The handler satisfies the Handler protocol and a registry accepts it."""
        assert isinstance(handler, Handler)
        registry = HandlerRegistry()
        registry.register(handler)
        assert registry.lookup("doctrine") is handler
        assert handler.suffixes == (".sql",)
        assert repr(handler) == "DoctrineHandler()"

    def test_fake_context_is_a_step_context(self, tmp_path: Path) -> None:
        """The test's fake is a complete StepContext."""
        assert isinstance(FakeContext(tmp_path, Step(id="a", path="a.sql")), StepContext)


class TestApply:
    def test_statements_run_in_order_rendered_with_index_and_line(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """Each statement is rendered (placeholders, renames) and executed with index and line."""
        step = write(
            tmp_path,
            "a.sql",
            "-- intro\nCREATE TABLE ${core}.t (a int);\n\n"
            "INSERT INTO `lupopedia`.`t` VALUES ('lupopedia.x');\n",
        )
        context = FakeContext(tmp_path, step, renames={"lupopedia": "test"})
        handler.apply(step, context)
        assert context.executed == [
            (0, 2, "CREATE TABLE app.t (a int)"),
            (1, 4, "INSERT INTO `test`.`t` VALUES ('lupopedia.x')"),
        ]

    def test_done_statements_are_skipped_on_resume(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """A resumed step runs only the statements the journal does not record as done."""
        step = write(tmp_path, "a.sql", "SELECT 1; SELECT 2; SELECT 3;")
        context = FakeContext(tmp_path, step, fail_at=1)
        with pytest.raises(StatementError) as info:
            handler.apply(step, context)
        assert (info.value.index, info.value.line) == (1, 1)
        context.fail_at = None
        handler.apply(step, context)
        assert [i for i, _, _ in context.executed] == [0, 1, 1, 2]

    def test_down_section_is_not_applied(self, handler: DoctrineHandler, tmp_path: Path) -> None:
        """Statements after ``-- lupo:down`` are not part of apply."""
        step = write(tmp_path, "a.sql", "CREATE TABLE t (a int);\n-- lupo:down\nDROP TABLE t;\n")
        context = FakeContext(tmp_path, step)
        handler.apply(step, context)
        assert [s for _, _, s in context.executed] == ["CREATE TABLE t (a int)"]

    def test_split_errors_become_step_errors_with_the_line(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """An unterminated string is a StepError naming file and line."""
        step = write(tmp_path, "bad.sql", "SELECT 1;\nSELECT 'oops;\n")
        with pytest.raises(StepError, match=r"bad.sql: step bad: line 2: unterminated string"):
            handler.apply(step, FakeContext(tmp_path, step))

    def test_dialects_follow_their_rules(self, handler: DoctrineHandler, tmp_path: Path) -> None:
        """On PostgreSQL a dollar-quoted body with ';' is one statement."""
        step = write(
            tmp_path,
            "f.sql",
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT f();",
        )
        context = FakeContext(tmp_path, step, dialect="postgresql")
        handler.apply(step, context)
        assert len(context.executed) == 2

    def test_dry_run_statements(self, handler: DoctrineHandler, tmp_path: Path) -> None:
        """statements() gives the rendered up statements without executing anything."""
        text = "SELECT * FROM ${core}.t;\n-- +migrate Down\nSELECT 2;"
        got = handler.statements(
            Step(id="a", path="a.sql"), text, dialect="mariadb", names={"core": "c"}, renames={}
        )
        assert [(s.text, s.line, s.index) for s in got] == [("SELECT * FROM c.t", 1, 0)]


class TestRollback:
    def test_down_section_runs_with_offset_indexes(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """The down section runs in order, journalled at DOWN_OFFSET + i, rendered."""
        step = write(
            tmp_path,
            "a.sql",
            "CREATE TABLE t (a int);\nCREATE TABLE u (a int);\n"
            "-- lupo:down\nDROP TABLE ${core}.u;\nDROP TABLE t;\n",
        )
        context = FakeContext(tmp_path, step)
        handler.apply(step, context)
        context.executed.clear()
        handler.rollback(step, context)
        assert context.executed == [
            (DOWN_OFFSET, 4, "DROP TABLE app.u"),
            (DOWN_OFFSET + 1, 5, "DROP TABLE t"),
        ]

    def test_the_down_of_a_step_of_over_ten_thousand_statements_runs_whole(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """A data step of 10,002 INSERTs, all applied, is undone by its whole down: its up
        statements' indexes (0 to 10,001) are not mistaken for down statements done (with
        the down offset at 10,000, the DELETE was skipped)."""
        text = "".join(f"INSERT INTO t VALUES ({n});\n" for n in range(10_002))
        step = write(tmp_path, "big.sql", text + "-- lupo:down\nDELETE FROM t;\n")
        context = FakeContext(tmp_path, step)
        handler.apply(step, context)
        assert len(context.finished) == 10_002
        context.executed.clear()
        handler.rollback(step, context)
        assert context.executed == [(DOWN_OFFSET, 10_004, "DELETE FROM t")]

    def test_rollback_resumes_after_done_down_statements(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """Down statements recorded as done are skipped when a rollback is resumed."""
        step = write(tmp_path, "a.sql", "SELECT 1;\n-- lupo:down\nSELECT 2;\nSELECT 3;\n")
        context = FakeContext(tmp_path, step, fail_at=DOWN_OFFSET + 1)
        with pytest.raises(StatementError):
            handler.rollback(step, context)
        context.fail_at = None
        handler.rollback(step, context)
        assert [i - DOWN_OFFSET for i, _, _ in context.executed] == [0, 1, 1]

    def test_down_twin_from_meta(self, handler: DoctrineHandler, tmp_path: Path) -> None:
        """A ``.down.sql`` twin named by ``meta['down_path']`` is the rollback."""
        write(tmp_path, "1_t.down.sql", "DROP TABLE t;")
        up = write(tmp_path, "1_t.up.sql", "CREATE TABLE IF NOT EXISTS t (a int);")
        step = attrs.evolve(up, meta={"down_path": "1_t.down.sql"})
        assert handler.can_rollback(step)
        context = FakeContext(tmp_path, step)
        handler.rollback(step, context)
        assert context.executed == [(DOWN_OFFSET, 1, "DROP TABLE t")]

    def test_down_sql_in_the_header(self, handler: DoctrineHandler, tmp_path: Path) -> None:
        """A header ``down`` value that is SQL is the rollback."""
        step = attrs.evolve(
            write(tmp_path, "a.sql", "INSERT INTO t VALUES (1);"),
            meta={"down": "DELETE FROM t WHERE a = 1;"},
        )
        context = FakeContext(tmp_path, step)
        handler.rollback(step, context)
        assert context.executed == [(DOWN_OFFSET, 1, "DELETE FROM t WHERE a = 1")]

    def test_derived_inverse_undoes_in_reverse(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """Without a down, CREATE/ADD statements are undone by their inverses, last first
        (``u`` existed before: once it is altered, even the index on the new ``t`` is undone
        by its own inverse)."""
        step = write(
            tmp_path,
            "a.sql",
            "SET NAMES utf8mb4;\nCREATE TABLE `t` (a int);\n"
            "ALTER TABLE `u` ADD COLUMN b int, ADD INDEX ix (b);\n"
            "CREATE INDEX i2 ON `u` (a);\nCREATE INDEX i3 ON `t` (a);\n",
        )
        context = FakeContext(tmp_path, step)
        handler.apply(step, context)
        context.executed.clear()
        handler.rollback(step, context)
        assert [(i - DOWN_OFFSET, line, s) for i, line, s in context.executed] == [
            (0, 5, "DROP INDEX i3 ON `t`"),
            (1, 4, "DROP INDEX i2 ON `u`"),
            (2, 3, "ALTER TABLE `u` DROP INDEX ix, DROP COLUMN b"),
            (3, 2, "DROP TABLE `t`"),
        ]

    def test_partial_step_undoes_only_what_ran(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """A step that failed part-way is undone by inverting only the statements that ran."""
        step = write(tmp_path, "a.sql", "CREATE TABLE t (a int);\nINSERT INTO u VALUES (1);\n")
        context = FakeContext(tmp_path, step, fail_at=1)
        with pytest.raises(StatementError):
            handler.apply(step, context)
        assert not handler.inspect(step, context.read_text("a.sql")).invertible
        context.executed.clear()
        handler.rollback(step, context)
        assert context.executed == [(DOWN_OFFSET, 1, "DROP TABLE t")]

    def test_no_rollback_is_refused_with_reasons(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """A step with no down and a non-invertible statement cannot be rolled back."""
        step = write(tmp_path, "a.sql", "CREATE TABLE t (a int);\nUPDATE u SET a = 2;\n")
        context = FakeContext(tmp_path, step)
        with pytest.raises(StepError, match=r"statement 2 \(line 2\): UPDATE changes") as info:
            handler.rollback(step, context)
        assert "-- lupo:down" in str(info.value)
        assert context.executed == []


class TestPlanTime:
    def test_can_rollback_without_root_needs_a_twin(self, tmp_path: Path) -> None:
        """Without a root only a down twin (or header down) is known at plan time."""
        step = write(tmp_path, "a.sql", "CREATE TABLE t (a int);")
        assert not DoctrineHandler().can_rollback(step)
        assert DoctrineHandler().can_rollback(attrs.evolve(step, meta={"down": "x.down.sql"}))

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("CREATE TABLE t (a int);", True),
            ("INSERT INTO t VALUES (1);", False),
            ("INSERT INTO t VALUES (1);\n-- lupo:down\nDELETE FROM t;", True),
            ("SELECT 'unterminated", False),
        ],
    )
    def test_can_rollback_with_root_reads_the_file(
        self, tmp_path: Path, text: str, expected: bool
    ) -> None:
        """With a root the handler finds down sections and derived inverses."""
        step = write(tmp_path, "a.sql", text)
        handler = DoctrineHandler(root=tmp_path)
        assert handler.can_rollback(step) is expected
        assert "root=" in repr(handler)
        assert not handler.can_rollback(Step(id="m", path="missing.sql"))

    def test_inspect_reports_sources_and_reasons(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """inspect() says where the rollback comes from, or why there is none."""
        step = Step(id="a", path="a.sql")
        derived = handler.inspect(step, "CREATE TABLE t (a int);", dialect="sqlite")
        assert (derived.down_source, derived.invertible) == ("derived", True)
        refused = handler.inspect(step, "CREATE TABLE IF NOT EXISTS t (a int);\nDROP TABLE u;")
        assert (refused.down_source, refused.invertible, len(refused.reasons)) == ("none", False, 2)
        assert refused.reasons[0].startswith("statement 1 (line 1): CREATE TABLE IF NOT EXISTS")
        write(tmp_path, "a.down.sql", "DROP TABLE t;")
        twin = handler.inspect(
            attrs.evolve(step, meta={"down_path": "a.down.sql"}),
            "INSERT INTO t VALUES (1);",
            read_text=lambda rel: (tmp_path / rel).read_text(),
        )
        assert (twin.down_source, [s.text for s in twin.down_statements]) == (
            "twin",
            ["DROP TABLE t"],
        )


class TestDeriveInverse:
    @pytest.mark.parametrize(
        ("sql", "dialect", "expected"),
        [
            ("CREATE TABLE `a`.`t` (x int)", "mysql", ("DROP TABLE `a`.`t`",)),
            ("CREATE TEMPORARY TABLE t (x int)", "mysql", ("DROP TEMPORARY TABLE t",)),
            ("CREATE UNIQUE INDEX i ON s.t (x)", "postgresql", ("DROP INDEX s.i",)),
            ("CREATE INDEX CONCURRENTLY i ON t (x)", "postgresql", ("DROP INDEX i",)),
            ("create index i on t(x)", "mysql", ("DROP INDEX i ON t",)),
            ("CREATE VIEW v AS SELECT 1", "sqlite", ("DROP VIEW v",)),
            (
                "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
                "postgresql",
                ("DROP TRIGGER tr ON t",),
            ),
            (
                "CREATE DEFINER=`r`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a=1",
                "mysql",
                ("DROP TRIGGER tr",),
            ),
            ("CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO SELECT 1", "mysql", ("DROP EVENT e",)),
            (
                "ALTER TABLE t ADD a int, ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id),"
                " ADD UNIQUE KEY uk (a), ADD PRIMARY KEY (a), ADD CONSTRAINT c CHECK (a > 0)",
                "mysql",
                (
                    "ALTER TABLE t DROP CONSTRAINT c, DROP PRIMARY KEY, DROP INDEX uk,"
                    " DROP FOREIGN KEY fk, DROP COLUMN a",
                ),
            ),
            ("ALTER TABLE t ADD COLUMN b text", "sqlite", ("ALTER TABLE t DROP COLUMN b",)),
            ("SET NAMES utf8mb4", "mysql", ()),
            ("START TRANSACTION", "mysql", ()),
        ],
    )
    def test_obvious_inverses(self, sql: str, dialect: str, expected: tuple[str, ...]) -> None:
        """Statements whose inverse needs no pre-image get one."""
        assert derive_inverse(sql, dialect=dialect) == expected

    @pytest.mark.parametrize(
        ("sql", "dialect", "why"),
        [
            ("INSERT INTO t VALUES (1)", "mysql", "INSERT changes existing objects or data"),
            ("DROP TABLE t", "mysql", "DROP changes"),
            ("ALTER TABLE t MODIFY a bigint", "mysql", "ALTER TABLE t MODIFY a bigint ..."),
            ("ALTER TABLE t ADD COLUMN IF NOT EXISTS a int", "mysql", "no inverse"),
            ("ALTER TABLE t ADD INDEX (a)", "mysql", "no inverse"),
            ("ALTER TABLE t ADD UNIQUE (a)", "postgresql", "no inverse"),
            ("CREATE TABLE IF NOT EXISTS t (a int)", "mysql", "IF NOT EXISTS"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "postgresql", "OR REPLACE"),
            (
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
                "postgresql",
                "argument types",
            ),
            ("CREATE DATABASE d", "mysql", "no known inverse"),
            ("SET GLOBAL event_scheduler = ON", "mysql", "SET changes"),
        ],
    )
    def test_refusals_say_why(self, sql: str, dialect: str, why: str) -> None:
        """Statements that need a pre-image are refused with a reason."""
        result = derive_inverse(sql, dialect=dialect)
        assert isinstance(result, str)
        assert why in result


class TestWritesToTablesTheStepCreated:
    """A step that creates a table and fills it is undone by dropping the table: its writes
    need no inverse of their own, unless something else may have changed through them."""

    @pytest.mark.parametrize(
        ("sql", "down"),
        [
            (
                "CREATE TABLE parent (id int PRIMARY KEY);\n"
                "CREATE TABLE child (id int, p int REFERENCES parent (id));\n"
                "INSERT INTO parent (id) VALUES (1);\n",
                ["DROP TABLE child", "DROP TABLE parent"],
            ),
            (
                "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nUPDATE t SET id = 2;\n"
                "DELETE FROM t;\nALTER TABLE t ADD COLUMN x int;\nCREATE INDEX i ON t (x);\n",
                ["DROP TABLE t"],  # its index goes with it
            ),
            (  # reading an existing table changes nothing there
                "CREATE TABLE t (id int);\nINSERT INTO t SELECT id FROM old;\n",
                ["DROP TABLE t"],
            ),
        ],
    )
    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_undone_by_dropping_the_table(
        self, handler: DoctrineHandler, sql: str, down: list[str], dialect: str
    ) -> None:
        info = handler.inspect(Step(id="a", path="a.sql"), sql, dialect=dialect)
        assert (info.down_source, info.invertible, info.reasons) == ("derived", True, ())
        assert [d.text for d in info.down_statements] == down

    @pytest.mark.parametrize(
        ("sql", "refused"),
        [
            (  # a foreign key from an existing table may cascade the delete into it
                "CREATE TABLE t (id int PRIMARY KEY);\n"
                "ALTER TABLE old ADD COLUMN t_id int REFERENCES t (id) ON DELETE CASCADE;\n"
                "DELETE FROM t;\n",
                "statement 3 (line 3): DELETE",
            ),
            (  # its trigger may write elsewhere
                "CREATE TABLE t (id int);\n"
                "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\n"
                "INSERT INTO t VALUES (1);\n",
                "statement 3 (line 3): INSERT",
            ),
            (  # whether it existed before is unknown: it is not dropped
                "CREATE TABLE IF NOT EXISTS t (id int);\nINSERT INTO t VALUES (1);\n",
                "statement 2 (line 2): INSERT",
            ),
            (  # another table, as far as names go
                "CREATE TABLE t (id int);\nINSERT INTO T VALUES (1);\n",
                "statement 2 (line 2): INSERT",
            ),
            (  # what a routine does is not known
                "CREATE TABLE t (id int);\nCALL p();\nINSERT INTO t VALUES (1);\n",
                "statement 3 (line 3): INSERT",
            ),
            (  # a statement that writes where it is not known here
                "CREATE TABLE t (id int);\nWITH x AS (SELECT 1) UPDATE old SET a = 1;\n"
                "DELETE FROM t;\n",
                "statement 3 (line 3): DELETE",
            ),
            (  # rows written into an existing table
                "CREATE TABLE t (id int);\nINSERT INTO old SELECT id FROM t;\n",
                "statement 2 (line 2): INSERT",
            ),
        ],
    )
    def test_not_when_something_else_may_have_changed(
        self, handler: DoctrineHandler, sql: str, refused: str
    ) -> None:
        info = handler.inspect(Step(id="a", path="a.sql"), sql, dialect="postgresql")
        assert not info.invertible
        assert any(r.startswith(refused) for r in info.reasons), info.reasons

    def test_a_partly_run_step_drops_only_what_it_created(
        self, handler: DoctrineHandler, tmp_path: Path
    ) -> None:
        """The INSERT ran, the ALTER of an existing table after it did not: the table goes."""
        write(
            tmp_path,
            "a.sql",
            "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nALTER TABLE old MODIFY a int;\n",
        )
        step = Step(id="a", path="a.sql")
        context = FakeContext(tmp_path, step, dialect="postgresql", finished={0, 1})
        handler.rollback(step, context)
        assert [sql for _, _, sql in context.executed] == ["DROP TABLE t"]


# --- real databases ---------------------------------------------------------------------------


def test_sqlite_trigger_file_applies_and_rolls_back(tmp_path: Path) -> None:
    """On SQLite a file with a trigger applies, and its derived inverse restores the schema."""
    step = write(
        tmp_path,
        "m.sql",
        "CREATE TABLE t (a int);\nCREATE TABLE log (a int);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO log VALUES (NEW.a);\n"
        "  INSERT INTO log VALUES (NEW.a + 1);\nEND;\nINSERT INTO t VALUES (1);\n"
        "-- lupo:down\nDROP TRIGGER tr;\nDROP TABLE log;\nDROP TABLE t;\n",
    )
    with fresh_database("sqlite", tmp_path) as url:
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            context = SqlContext(tmp_path, step, conn)
            DoctrineHandler().apply(step, context)
            assert conn.exec_driver_sql("SELECT count(*) FROM log").scalar() == 2
            DoctrineHandler().rollback(step, context)
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()


@pytest.fixture(name="baseline", scope="module")
def _baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, str]]:
    """One MariaDB database with the corpus baseline loaded through the handler."""
    with fresh_database("mariadb", tmp_path_factory.mktemp("maria")) as url:
        engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        database = url.rsplit("/", 1)[1]
        step = Step(id="core", path="baseline/core.sql")
        with engine.connect() as conn:
            DoctrineHandler().apply(step, SqlContext(CORPUS, step, conn))
        yield engine, database
        engine.dispose()


def _tables(conn: sa.Connection) -> int:
    sql = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()"
    return int(conn.exec_driver_sql(sql).scalar_one())


@pytest.mark.mariadb
class TestMariaDBCorpus:
    def test_baseline_has_185_tables(self, baseline: tuple[sa.Engine, str]) -> None:
        """core.sql loads through the handler: 185 tables."""
        with baseline[0].connect() as conn:
            assert _tables(conn) >= 185

    def test_channel_migration_fails_at_line_34(self, baseline: tuple[sa.Engine, str]) -> None:
        """The channel migration fails at its second statement, line 34, ERROR 1060."""
        engine, database = baseline
        step = Step(id="channel", path="migrations/20260122_channel_system_migration.sql")
        with engine.connect() as conn:
            context = SqlContext(CORPUS, step, conn, renames={"lupopedia": database})
            with pytest.raises(StatementError) as info:
                DoctrineHandler().apply(step, context)
        error = info.value
        assert (error.index, error.line) == (1, 34)
        assert "1060" in error.reason
        assert "semantic_weight" in error.reason
        assert context.done() == {0}
        assert "20260122_channel_system_migration.sql:34" in str(error)

    @pytest.mark.parametrize("name", CLEAN)
    def test_clean_migrations_apply(self, baseline: tuple[sa.Engine, str], name: str) -> None:
        """Each clean corpus migration applies after the baseline, every statement succeeding."""
        engine, database = baseline
        step = Step(id=name, path=f"migrations/{name}")
        handler = DoctrineHandler()
        with engine.connect() as conn:
            context = SqlContext(CORPUS, step, conn, renames={"lupopedia": database})
            handler.apply(step, context)
        expected = handler.inspect(step, context.read_text(step.path), dialect="mariadb")
        assert context.done() == {s.index for s in expected.statements}

    def test_derived_rollback_restores_the_schema(
        self, baseline: tuple[sa.Engine, str], tmp_path: Path
    ) -> None:
        """A file of CREATE/ADD statements is undone exactly by its derived inverse."""
        engine, database = baseline
        step = write(
            tmp_path,
            "x.sql",
            "CREATE TABLE `lupopedia`.`x_new` (a int);\n"
            "ALTER TABLE `lupo_edges` ADD COLUMN `x_col` int, ADD INDEX `x_idx` (`x_col`);\n"
            "CREATE INDEX x_i2 ON lupopedia.x_new (a);\n",
        )
        handler = DoctrineHandler(root=tmp_path)
        assert handler.can_rollback(step)
        with engine.connect() as conn:
            before = _fingerprint(conn)
            context = SqlContext(tmp_path, step, conn, renames={"lupopedia": database})
            handler.apply(step, context)
            assert _fingerprint(conn) != before
            handler.rollback(step, context)
            assert _fingerprint(conn) == before


def _fingerprint(conn: sa.Connection) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT table_name, column_name, column_type FROM information_schema.columns"
        " WHERE table_schema = DATABASE() UNION ALL SELECT table_name, index_name, column_name"
        " FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1, 2, 3"
    )
    return [tuple(row) for row in conn.exec_driver_sql(sql)]
