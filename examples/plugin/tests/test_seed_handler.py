"""Tests of the ``seed`` handler, through lupo_migrate's public API only.

Three layers, the way a plugin author would test any handler:

- reading and rendering (``parse_seed``, ``sql_literal``, ``statements``): pure, no database;
- ``apply``/``rollback`` against a recording ``StepContext`` (a fake, not a mock): resume and
  partial rollback follow the journal;
- a real round trip: an ``Orchestrator`` on a SQLite file applies the demo migrations and
  rolls them back, and the plugin's entry point registers the handler.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from lupo_example_plugin import (
    DOWN_OFFSET,
    MAX_ROWS,
    SeedHandler,
    parse_seed,
    quote_identifier,
    sql_literal,
)

from lupo_migrate import HandlerRegistry, Orchestrator, Step, load_entry_points, load_steps
from lupo_migrate.backends import InMemoryFreeze, SystemClock
from lupo_migrate.backends.sqlalchemy import (
    SqlAlchemyLock,
    SqlAlchemyStorage,
    SqlAlchemyTarget,
    make_engine,
)
from lupo_migrate.errors import StepError
from lupo_migrate.handlers import DoctrineHandler

DEMO = Path(__file__).resolve().parents[1] / "demo"
PATH = "V2__countries.seed.csv"
SEED = """\
---
id: seed_countries
table: ${core}.countries
---
code,name,population
fr,France,68170000
ci,Côte d'Ivoire,31170000
nl,"Netherlands,
Kingdom of the",17880000
aq,Antarctica,
"""


def _step(**meta: object) -> Step:
    """The seed step of ``PATH``; *meta* is its header as discovery reads it."""
    return Step(id="seed_countries", path=PATH, file_type="seed", meta=meta)


@attrs.define
class RecordingContext:
    """A ``StepContext`` that records statements instead of running them.

    ``done`` starts as the journal would say after a crash; ``fail_at`` makes the statement
    of that index raise, as a database refusing it would.
    """

    text: str
    dialect: str = "sqlite"
    names: Mapping[str, str] = attrs.field(factory=lambda: {"core": "main"})
    renames: Mapping[str, str] = attrs.field(factory=dict)
    connection: Any = None
    files_root: Path | None = None
    finished: set[int] = attrs.field(factory=set)
    executed: list[tuple[int, str, int | None]] = attrs.field(factory=list)
    fail_at: int | None = None

    def read_text(self, relpath: str) -> str:
        assert relpath == PATH
        return self.text

    def execute(self, statement: str, *, index: int, line: int | None = None) -> None:
        if index == self.fail_at:
            raise StepError("seed_countries", PATH, f"statement {index} refused")
        self.executed.append((index, statement, line))
        self.finished.add(index)

    def done(self) -> frozenset[int]:
        return frozenset(self.finished)

    def record(self, text: str) -> int:
        raise AssertionError(f"the seed handler keeps no undo records, got {text!r}")

    def records(self) -> list[tuple[int, str]]:
        return []


class TestLiterals:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, "NULL"),
            ("42", "42"),
            ("-7", "-7"),
            ("0", "0"),
            ("007", "'007'"),
            ("+1", "'+1'"),
            ("-0", "'-0'"),
            ("1.5", "'1.5'"),
            (str(2**63), f"'{2**63}'"),
            (str(-(2**63)), str(-(2**63))),
            ("", "''"),
            ("Côte d'Ivoire", "'Côte d''Ivoire'"),
            ("'); DROP TABLE t; --", "'''); DROP TABLE t; --'"),
        ],
    )
    def test_values_render_the_same_on_every_dialect(
        self, value: str | None, expected: str
    ) -> None:
        """NULL, canonical 64-bit integers as numbers, anything else a quoted string."""
        for dialect in ("mysql", "mariadb", "postgresql", "sqlite"):
            assert sql_literal(value, dialect=dialect) == expected

    def test_a_backslash_reads_the_same_in_every_server_mode(self) -> None:
        """MySQL gets a UTF-8 hex literal, PostgreSQL an escape string, SQLite the text."""
        value = "C:\\temp\\'x'"
        assert sql_literal(value, dialect="mysql") == (
            "_utf8mb4 X'" + value.encode().hex().upper() + "'"
        )
        assert sql_literal(value, dialect="mariadb").startswith("_utf8mb4 X'")
        assert sql_literal(value, dialect="postgresql") == "E'C:\\\\temp\\\\''x'''"
        assert sql_literal(value, dialect="sqlite") == "'C:\\temp\\''x'''"

    def test_a_nul_character_or_an_unknown_dialect_is_refused(self) -> None:
        """Neither has a safe literal: ValueError rather than a guess."""
        with pytest.raises(ValueError, match="NUL"):
            sql_literal("a\x00b", dialect="sqlite")
        with pytest.raises(ValueError, match="'oracle'"):
            sql_literal("a", dialect="oracle")

    def test_identifiers_are_quoted_with_the_quote_doubled(self) -> None:
        """Backticks on MySQL/MariaDB, double quotes elsewhere."""
        assert quote_identifier("my`col", dialect="mariadb") == "`my``col`"
        assert quote_identifier('my"col', dialect="postgresql") == '"my""col"'
        assert quote_identifier("order", dialect="sqlite") == '"order"'


class TestStatements:
    def test_one_insert_per_row_with_its_line(self) -> None:
        """Placeholders resolved, empty fields NULL, a quoted field may span lines."""
        listed = SeedHandler().statements(
            _step(table="${core}.countries"),
            SEED,
            dialect="postgresql",
            names={"core": "public"},
            renames={},
        )
        head = 'INSERT INTO "public"."countries" ("code", "name", "population") VALUES'
        assert [(s.index, s.line) for s in listed] == [(0, 6), (1, 7), (2, 8), (3, 10)]
        assert [s.text for s in listed] == [
            f"{head} ('fr', 'France', 68170000)",
            f"{head} ('ci', 'Côte d''Ivoire', 31170000)",
            f"{head} ('nl', 'Netherlands,\nKingdom of the', 17880000)",
            f"{head} ('aq', 'Antarctica', NULL)",
        ]

    def test_table_defaults_to_the_file_name_and_schemas_are_renamed(self) -> None:
        """No 'table' in the header: V2__countries -> countries; a literal schema renamed."""
        text = "code,name\nfr,France\n"
        (plain,) = SeedHandler().statements(_step(), text, dialect="mysql", names={}, renames={})
        assert plain.text == "INSERT INTO `countries` (`code`, `name`) VALUES ('fr', 'France')"
        (renamed,) = SeedHandler().statements(
            _step(table="sales.countries"),
            text,
            dialect="mysql",
            names={},
            renames={"sales": "test"},
        )
        assert renamed.text.startswith("INSERT INTO `test`.`countries`")

    def test_inspect_says_the_step_brings_its_own_undo(self) -> None:
        """Invertible, like a doctrine file with a down section."""
        info = SeedHandler().inspect(_step(table="countries"), SEED, dialect="sqlite")
        assert (info.invertible, info.down_source, info.reasons) == (True, "section", ())

    def test_crlf_and_a_byte_order_mark_read_like_lf(self) -> None:
        """The dry run reads files as they are on disk."""
        text = "\ufeff" + SEED.replace("\n", "\r\n")
        assert parse_seed(_step(), text) == parse_seed(_step(), SEED)


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "meta", "message"),
        [
            ("code,name\nfr\n", {}, "line 2: 1 value.s. for 2 column.s. .code, name.: 'fr'"),
            ("code,name\n,France\n", {}, "line 2: key column 'code' is empty"),
            ("code\nfr\nde\nfr\n", {}, "line 4: key code='fr' repeats line 2"),
            ("code,code\n", {}, "line 1: column 'code' is named twice"),
            ("code,,name\n", {}, "line 1: column 2 has no name"),
            ("---\nkey: id\n---\ncode\n", {"key": "id"}, "line 2: key column 'id' is not one"),
            ("---\ntable: countries\n", {}, "line 1: the header opened by '---' is never closed"),
            ("table: countries\n---\ncode\n", {}, "line 2: '---' closes a header never opened"),
            ('code,name\nfr,"France\n', {}, "line 3: not valid CSV"),
            ('code,name\nfr,"Fra"nce\n', {}, "line 2: not valid CSV"),
            ("---\nid: x\n---\n\n", {}, "line 4: no column names"),
            ("code,name\nfr,Fr\x00ance\n", {}, "line 2: column 'name' holds a NUL character"),
            ("---\ntable: a.b.c\n---\ncode\n", {"table": "a.b.c"}, "line 2: table 'a.b.c' is"),
            ("---\ntable: 42\n---\ncode\n", {"table": 42}, "line 2: 'table' must name a table"),
            ("code\nfr\n", {"table": "${cor}.countries"}, r"unknown placeholder \$\{cor\}"),
        ],
    )
    def test_a_bad_file_names_file_line_and_value(
        self, text: str, meta: dict[str, object], message: str
    ) -> None:
        """Every problem is a StepError naming the file, the line and what is wrong."""
        with pytest.raises(StepError, match=message) as caught:
            SeedHandler().apply(_step(**meta), RecordingContext(text))
        assert caught.value.path == PATH
        assert str(caught.value).startswith(f"{PATH}: step seed_countries: line ")

    def test_a_bad_row_fails_before_any_row_is_inserted(self) -> None:
        """The whole file is checked first: nothing runs."""
        context = RecordingContext("code,name\nfr,France\nde\n")
        with pytest.raises(StepError, match="line 3"):
            SeedHandler().apply(_step(), context)
        assert context.executed == []

    def test_a_file_holds_at_most_max_rows(self) -> None:
        """Row MAX_ROWS + 1 (on line MAX_ROWS + 2) is refused: the journal has no room."""
        rows = [str(i) for i in range(MAX_ROWS + 1)]
        with pytest.raises(StepError, match=f"line {MAX_ROWS + 2}: more than {MAX_ROWS} rows"):
            parse_seed(_step(), "\n".join(["code", *rows]))
        assert len(parse_seed(_step(), "\n".join(["code", *rows[:-1]])).rows) == MAX_ROWS

    def test_an_unsupported_dialect_is_refused(self) -> None:
        with pytest.raises(StepError, match="no quoting rules for dialect 'oracle'"):
            SeedHandler().apply(_step(), RecordingContext("code\nfr\n", dialect="oracle"))


class TestApplyAndRollback:
    def test_apply_runs_every_row_in_order(self) -> None:
        context = RecordingContext(SEED)
        SeedHandler().apply(_step(table="${core}.countries"), context)
        assert [(i, line) for i, _, line in context.executed] == [(0, 6), (1, 7), (2, 8), (3, 10)]
        assert context.executed[0][1].startswith('INSERT INTO "main"."countries"')

    def test_a_resumed_apply_skips_the_rows_the_journal_records(self) -> None:
        context = RecordingContext(SEED, finished={0, 1})
        SeedHandler().apply(_step(), context)
        assert [i for i, _, _ in context.executed] == [2, 3]

    def test_rollback_deletes_every_row_by_key_newest_first(self) -> None:
        context = RecordingContext(SEED, dialect="mysql")
        SeedHandler().rollback(_step(), context)
        assert [(i - DOWN_OFFSET, sql) for i, sql, _ in context.executed] == [
            (3, "DELETE FROM `countries` WHERE `code` = 'aq'"),
            (2, "DELETE FROM `countries` WHERE `code` = 'nl'"),
            (1, "DELETE FROM `countries` WHERE `code` = 'ci'"),
            (0, "DELETE FROM `countries` WHERE `code` = 'fr'"),
        ]

    def test_a_partly_applied_step_loses_only_the_rows_that_ran(self) -> None:
        """The journal says rows 0 and 1 ran; the DELETE of row 1 ran before a crash."""
        context = RecordingContext(SEED, finished={0, 1, DOWN_OFFSET + 1})
        SeedHandler().rollback(_step(), context)
        assert [i for i, _, _ in context.executed] == [DOWN_OFFSET]

    def test_the_key_column_can_be_named(self) -> None:
        context = RecordingContext("name,code\nFrance,fr\n")
        SeedHandler().rollback(_step(key="code"), context)
        assert context.executed[0][1] == 'DELETE FROM "countries" WHERE "code" = \'fr\''

    def test_it_can_always_be_rolled_back(self) -> None:
        assert SeedHandler().can_rollback(_step())


# ----------------------------------------------------------------------- on a real database


@pytest.fixture(name="engine")
def _engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'seed.db'}")
    yield engine
    engine.dispose()


def _orchestrator(engine: sa.Engine, root: Path) -> tuple[Orchestrator, list[Step]]:
    """An orchestrator on *engine* with the doctrine and seed handlers, and *root*'s steps."""
    storage = SqlAlchemyStorage(engine)
    storage.ensure_schema()
    clock = SystemClock()
    registry = HandlerRegistry()
    registry.register(DoctrineHandler(root=root))
    registry.register(SeedHandler())
    orchestrator = Orchestrator(
        storage=storage,
        lock=SqlAlchemyLock(engine, "lupo_migrate:seed-test", clock=clock),
        freeze=InMemoryFreeze(clock),
        clock=clock,
        registry=registry,
        target=SqlAlchemyTarget(engine, names={"core": "main"}),
        root=root,
        target_name="seed-test",
    )
    return orchestrator, list(load_steps(root, suffixes=registry.suffix_map()))


def _rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        result = connection.exec_driver_sql("SELECT * FROM countries ORDER BY code")
        return [tuple(row) for row in result]


def _tables(engine: sa.Engine) -> list[str]:
    names = sa.inspect(engine).get_table_names()
    return sorted(n for n in names if not n.startswith(("migration_", "lupo_bk_")))


class TestOnSqlite:
    def test_the_demo_applies_and_rolls_back(self, engine: sa.Engine) -> None:
        """The rows read back as written; a rollback leaves the schema as before."""
        orchestrator, steps = _orchestrator(engine, DEMO)
        assert [(s.id, s.file_type) for s in steps] == [
            ("create_countries", "doctrine"),
            ("seed_countries", "seed"),
        ]
        result = orchestrator.apply(steps)
        assert result.run is not None
        assert result.applied == ("create_countries", "seed_countries")
        assert _rows(engine) == [
            ("aq", "Antarctica", None),
            ("ci", "Côte d'Ivoire", 31170000),
            ("fr", "France", 68170000),
            ("jp", "日本", 124500000),
            ("nl", "Netherlands, Kingdom of the", 17880000),
        ]
        undone = orchestrator.rollback(result.run.id, steps, operator="test")
        assert undone.run is not None
        assert undone.run.outcome is not None
        assert undone.run.outcome.value == "rolled_back"
        assert _tables(engine) == []

    def test_odd_values_round_trip(self, engine: sa.Engine, tmp_path: Path) -> None:
        """Quotes, backslashes, SQL, newlines and non-ASCII text come back unchanged."""
        root = tmp_path / "migrations"
        root.mkdir()
        shutil.copy(DEMO / "V1__create_countries.sql", root)
        odd = ["it's", "C:\\x\\", "'); DROP TABLE countries; --", "a\nb", "🦊", "007", " x "]
        lines = ["code,name"] + [f'{i:02},"{v}"' for i, v in enumerate(odd)]
        (root / PATH).write_text(
            "---\ndepends_on: [create_countries]\n---\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )
        orchestrator, steps = _orchestrator(engine, root)
        assert orchestrator.apply(steps).applied == ("create_countries", "V2__countries")
        assert [name for _, name, _ in _rows(engine)] == odd

    def test_a_failing_row_rolls_the_run_back(self, engine: sa.Engine, tmp_path: Path) -> None:
        """Row 2 (line 6) breaks NOT NULL: the run fails naming the line; nothing stays."""
        root = tmp_path / "migrations"
        root.mkdir()
        shutil.copy(DEMO / "V1__create_countries.sql", root)
        (root / PATH).write_text(
            "---\ndepends_on: [create_countries]\n---\ncode,name\nfr,France\nde,\n",
            encoding="utf-8",
        )
        orchestrator, steps = _orchestrator(engine, root)
        result = orchestrator.apply(steps)
        assert result.run is not None
        assert result.run.outcome is not None
        assert result.run.outcome.value == "rolled_back"
        assert result.run.failure is not None
        message = result.run.failure.message
        assert message.startswith(f"{PATH}:6: step V2__countries, statement 2 failed: NOT NULL")
        assert _tables(engine) == []
        assert dict(orchestrator.storage.applied("seed-test")) == {}


def test_the_entry_point_registers_the_handler() -> None:
    """Installed, the package's entry point gives lupo_migrate the seed handler."""
    registry = HandlerRegistry()
    assert "seed" in load_entry_points(registry)
    assert isinstance(registry.lookup("seed"), SeedHandler)
    assert registry.for_path("demo/V2__countries.seed.csv").file_type == "seed"
