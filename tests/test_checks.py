"""The schema, data, probe and lint validators: pure checks on measured facts, then for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from lupo_migrate import Fingerprint, TableData
from lupo_migrate.backends.sqlite_files import sibling_store
from lupo_migrate.core.model import (
    Classification,
    FailureKind,
    Outcome,
    Plan,
    Run,
    Severity,
    Stage,
    ValidationContext,
)
from lupo_migrate.core.validation import (
    BEFORE,
    DATA_AFTER,
    DATA_BEFORE,
    EFFECTS,
    FINGERPRINT,
    PROBES_AFTER,
    PROBES_BEFORE,
    RECORDED,
    UNKNOWN,
    declared_effects,
    performance_probes,
    schema_drift,
    untouched_unchanged,
)
from lupo_migrate.errors import InvalidArgumentError
from lupo_migrate.sql.lint import STATEMENTS, narrowing, risky_statements
from test_apply import cli as _cli
from test_runner import THREE, FakeTarget, orchestrator, write
from test_runner import _parts as _parts  # the parts fixture


def _context(stage: Stage, **facts: Any) -> ValidationContext:
    return ValidationContext(stage=stage, plan=Plan(), run=Run(id="r"), facts=facts)


def _fp(**objects: Any) -> Fingerprint:
    return Fingerprint(
        dialect="mysql", objects={k.replace("__", ":"): v for k, v in objects.items()}
    )


T = {"columns": [{"name": "id", "type": "int"}]}
T2 = {"columns": [{"name": "id", "type": "bigint"}]}


class TestDrift:
    def test_no_reference_yet_is_no_finding(self) -> None:
        assert list(schema_drift()(_context(Stage.PRE, **{FINGERPRINT: _fp(table__a=T)}))) == []

    def test_a_changed_schema_names_the_difference_and_fails(self) -> None:
        facts = {RECORDED: _fp(table__a=T), FINGERPRINT: _fp(table__a=T2, table__b=T)}
        (finding,) = schema_drift()(_context(Stage.PRE, **facts))
        assert finding.severity is Severity.ERROR
        assert finding.code == "drift"
        assert "2 difference(s)" in finding.message
        assert 'table a: column id: type: "int" -> "bigint"' in finding.message
        assert "--allow-drift" in (finding.hint or "")
        (warned,) = schema_drift(fail=False)(_context(Stage.PRE, **facts))
        assert warned.severity is Severity.WARNING


class TestDeclaredEffects:
    EFFECTS = (
        ("s1", "table", "a", "create", None),
        ("s2", "table", "b", "drop", None),
        ("s3", "table", "c", "rename", "d"),
        ("s4", "trigger", "t", "create", None),
        ("s4", "table", "e", "write", None),
    )

    def test_what_the_statements_declare_is_there(self) -> None:
        after = _fp(table__a=T, table__d=T, table__e=T, trigger__t={"table": "a"})
        facts = {FINGERPRINT: after, EFFECTS: self.EFFECTS}
        assert list(declared_effects()(_context(Stage.POST, **facts))) == []

    def test_a_missing_creation_and_a_surviving_drop_are_critical(self) -> None:
        after = _fp(table__b=T, table__c=T, table__d=T, trigger__t={"table": "a"})
        findings = list(
            declared_effects()(_context(Stage.POST, **{FINGERPRINT: after, EFFECTS: self.EFFECTS}))
        )
        assert [(f.step_id, f.message) for f in findings] == [
            ("s1", "table a should be created by the run but is missing after it"),
            ("s2", "table b should be dropped by the run but still exists after it"),
            ("s3", "table c should be dropped by the run but still exists after it"),
        ]
        assert {f.kind for f in findings} == {FailureKind.CRITICAL_VALIDATION}


class TestUntouched:
    def _check(self, before: Fingerprint, after: Fingerprint, **facts: Any) -> list[Any]:
        facts = {
            BEFORE: before,
            FINGERPRINT: after,
            EFFECTS: (("s", "table", "a", "drop", None),),
            **facts,
        }
        return list(untouched_unchanged()(_context(Stage.POST, **facts)))

    def test_a_touched_table_and_its_triggers_may_change(self) -> None:
        before = _fp(table__a=T, table__b=T, trigger__ta={"table": "a"})
        assert self._check(before, _fp(table__b=T)) == []

    def test_a_changed_untouched_table_is_a_data_integrity_error(self) -> None:
        findings = self._check(_fp(table__a=T, table__b=T), _fp(table__b=T2))
        (finding,) = findings
        assert finding.kind is FailureKind.DATA_INTEGRITY
        assert (
            'table b: column id: type: "int" -> "bigint" (the run\'s statements do not touch it)'
            in finding.message
        )

    def test_rows_of_untouched_tables_are_compared(self) -> None:
        fk = {"columns": [], "foreign_keys": [{"references": [None, "a"], "name": "fk"}]}
        before = _fp(table__a=T, table__b=T, table__c=fk)
        data_before = {"b": TableData(2, "10"), "c": TableData(2, "20")}
        data_after = {"b": TableData(1, "5"), "c": TableData(0, "0")}
        findings = self._check(before, before, **{DATA_BEFORE: data_before, DATA_AFTER: data_after})
        assert [(f.severity, f.code) for f in findings] == [
            (Severity.ERROR, "untouched-data-changed"),
            (Severity.WARNING, "untouched-data-changed"),
        ]
        assert "table b, which the run does not touch, changed: rows 2 -> 1" in findings[0].message
        assert "through a trigger or foreign key" in findings[1].message

    @pytest.mark.parametrize(
        ("dialect", "action", "severity"),
        [
            ("mysql", "alter", Severity.WARNING),  # altered online: the application may write
            ("mysql", "write", Severity.ERROR),  # its rows and the run's: the freeze matters
            ("postgresql", "alter", Severity.ERROR),
            # An ALTER that adds and drops columns alters too (a column is no rows written).
            ("mysql", "columns", Severity.WARNING),
        ],
    )
    def test_a_run_that_only_alters_tables_on_mysql_lets_the_application_write_elsewhere(
        self, dialect: str, action: str, severity: Severity
    ) -> None:
        before = attrs.evolve(_fp(table__a=T, table__b=T), dialect=dialect)
        effects: tuple[tuple[str, str, str, str, str | None], ...] = (
            ("s", "table", "a", "alter" if action == "columns" else action, None),
        )
        if action == "columns":
            effects += (("s", "column", "a.x", "add", None), ("s", "column", "a.y", "drop", None))
        findings = self._check(
            before,
            before,
            **{
                EFFECTS: effects,
                DATA_BEFORE: {"b": TableData(2, "10")},
                DATA_AFTER: {"b": TableData(3, "11")},
            },
        )
        assert [(f.severity, f.code) for f in findings] == [(severity, "untouched-data-changed")]
        told = "(the application wrote while the run only altered tables)"
        assert (told in findings[0].message) is (severity is Severity.WARNING)

    def test_statements_of_unknown_effect_skip_the_comparison(self) -> None:
        findings = self._check(_fp(table__b=T), _fp(table__b=T2), **{UNKNOWN: (("s", "CALL"),)})
        assert [(f.severity, f.code) for f in findings] == [(Severity.INFO, "untouched-unchecked")]


class TestProbes:
    def test_a_probe_over_the_threshold_is_class_b(self) -> None:
        facts = {
            PROBES_BEFORE: {"slow": 0.010, "fine": 0.010, "noise": 0.0001, "broken": 0.01},
            PROBES_AFTER: {"slow": 0.050, "fine": 0.015, "noise": 0.001, "broken": None},
        }
        findings = list(performance_probes(2.0)(_context(Stage.POST, **facts)))
        assert [f.message for f in findings] == [
            "performance probe 'broken' fails after the run (it ran before)",
            "performance probe 'slow' takes 50.0 ms after the run, 5.0x its 10.0 ms before"
            " (threshold 2.0x)",
        ]
        assert {f.kind for f in findings} == {FailureKind.PERFORMANCE_DEGRADATION}

    def test_a_threshold_below_one_is_refused(self) -> None:
        with pytest.raises(InvalidArgumentError, match=r">= 1\.0"):
            performance_probes(0.5)


class TestLint:
    def _codes(self, sql: str, **kwargs: Any) -> list[tuple[str, Severity]]:
        facts = {
            STATEMENTS: (("s1", "s1.sql", 3, sql),),
            FINGERPRINT: _fp(table__t={"columns": [{"name": "v", "type": "varchar(20)"}]}),
        }
        return [
            (f.code, f.severity) for f in risky_statements(**kwargs)(_context(Stage.PRE, **facts))
        ]

    @pytest.mark.parametrize(
        ("sql", "code"),
        [
            ("DROP TABLE IF EXISTS t", "drop-table"),
            ("ALTER TABLE t DROP COLUMN v", "drop-column"),
            ("ALTER TABLE t MODIFY v VARCHAR(5) NOT NULL", "narrowing-modify"),
            ("ALTER TABLE t CHANGE v w INT", "narrowing-modify"),
            ("UPDATE t SET v = 'x'", "update-without-where"),
            ("DELETE FROM t", "delete-without-where"),
            ("TRUNCATE TABLE t", "delete-without-where"),
        ],
    )
    def test_each_risky_statement_is_a_warning_of_class_c(self, sql: str, code: str) -> None:
        assert self._codes(sql) == [(code, Severity.WARNING)]

    @pytest.mark.parametrize(
        "sql",
        [
            "ALTER TABLE t MODIFY v VARCHAR(40)",
            "ALTER TABLE t MODIFY v TEXT",
            "ALTER TABLE t DROP INDEX v",
            "UPDATE t SET v = 'x' WHERE id = 1",
            "DELETE FROM t WHERE id = 1",
            "CREATE TABLE u (id INT)",
        ],
    )
    def test_safe_statements_say_nothing(self, sql: str) -> None:
        assert self._codes(sql) == []

    def test_foreign_keys_and_triggers_are_noted_or_forbidden(self) -> None:
        fk = "CREATE TABLE c (id INT, p INT, FOREIGN KEY (p) REFERENCES t (id))"
        trigger = "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.v = 'x'"
        assert self._codes(fk) == [("foreign-key", Severity.INFO)]
        assert self._codes(trigger, forbid=["trigger"]) == [("trigger", Severity.ERROR)]
        assert self._codes(
            "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (v) REFERENCES u (id)",
            forbid=["foreign-key"],
        ) == [("foreign-key", Severity.ERROR)]
        assert self._codes(trigger, ignore=["trigger"]) == []

    def test_unknown_rules_are_named(self) -> None:
        with pytest.raises(
            InvalidArgumentError, match=r"unknown lint rule.*triggers.*the rules are"
        ):
            risky_statements(forbid=["triggers"])

    @pytest.mark.parametrize(
        ("old", "new", "narrower"),
        [
            ("int(11)", "TINYINT", True),
            ("bigint", "int", True),
            ("int", "bigint", False),
            ("varchar(20)", "char(20)", False),
            ("varchar(20)", "text", False),
            ("text", "varchar(255)", True),
            ("decimal(10,2)", "decimal(12,2)", False),
            ("decimal(10,2)", "decimal(9,2)", True),
            ("enum('a')", "varchar(3)", False),  # unknown family: not judged
        ],
    )
    def test_narrowing(self, old: str, new: str, narrower: bool) -> None:
        assert (narrowing(old, new) is not None) is narrower


# ------------------------------------------------------------------ on real databases


@pytest.fixture(name="lite")
def _lite(tmp_path: Path) -> tuple[str, Path]:
    migrations = tmp_path / "m"
    migrations.mkdir()
    return f"sqlite:///{tmp_path / 'app.db'}", migrations


class TestOnSQLite:
    def test_drift_refuses_the_next_run_until_allowed(
        self, lite: tuple[str, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        url, migrations = lite
        (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY);\n")
        assert _cli(capsys, "apply", str(migrations), "--db", url)[0] == 0
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE t ADD COLUMN sneaky TEXT")
        engine.dispose()
        (migrations / "V2__u.sql").write_text("CREATE TABLE u (id INTEGER);\n")
        code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
        assert code == 11
        assert (
            "the schema changed since the last run (1 difference(s)): table t: column sneaky: added"
            in err
        )
        assert "0 of 1 step(s) applied" in out
        code, out, err = _cli(capsys, "apply", str(migrations), "--db", url, "--allow-drift")
        assert code == 0, err
        assert err.startswith("warning:")
        assert "column sneaky" in err
        (migrations / "V3__v.sql").write_text("CREATE TABLE v (id INTEGER);\n")
        code, _, err = _cli(capsys, "apply", str(migrations), "--db", url)
        assert (code, err) == (0, "")  # the allowed run recorded the new reference

    def test_a_forbidden_trigger_refuses_the_run_before_anything_runs(
        self, lite: tuple[str, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        url, migrations = lite
        (migrations / "V1__t.sql").write_text(
            "CREATE TABLE t (id INTEGER, v TEXT);\n"
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET v = 'x'; END;\n"
        )
        code, _, err = _cli(capsys, "apply", str(migrations), "--db", url, "--forbid", "trigger")
        assert code == 11
        assert "error: V1__t.sql:2: creates trigger tr" in err
        engine = sa.create_engine(url)
        assert "t" not in sa.inspect(engine).get_table_names()
        engine.dispose()
        code, _, err = _cli(capsys, "apply", str(migrations), "--db", url, "--forbid", "triggers")
        assert code == 2
        assert "unknown lint rule(s) triggers" in err

    def test_a_slower_probe_completes_the_run_with_a_class_b_decision(
        self, lite: tuple[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        url, migrations = lite
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE big (id INTEGER PRIMARY KEY, k INTEGER)")
            conn.exec_driver_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)"
                " INSERT INTO big SELECT i, i % 1000 FROM n"
            )
            conn.exec_driver_sql("CREATE INDEX big_k ON big (k)")
        engine.dispose()
        (migrations / "V1__drop_index.sql").write_text(
            "DROP INDEX big_k;\n-- lupo:down\nCREATE INDEX big_k ON big (k);\n"
        )
        config = tmp_path / "lupo.toml"
        config.write_text(
            'probe_threshold = 3.0\n[probes]\nlookup = "SELECT SUM(id) FROM big WHERE k = 7"\n'
        )
        code, out, err = _cli(
            capsys, "apply", str(migrations), "--db", url, "--config", str(config)
        )
        assert code == 0, err
        assert "completed, 1 of 1" in out
        assert "performance probe 'lookup' takes" in err
        run_id = out.split()[1].rstrip(":")
        code, out, _ = _cli(capsys, "decisions", str(migrations), "--db", url)
        assert f"{run_id}  B    pending      1 step(s), 23h59m left" in out
        code, out, err = _cli(
            capsys, "rollback", run_id, str(migrations), "--db", url, "--scope", "B"
        )
        assert code == 0, err
        engine = sa.create_engine(url)
        assert [i["name"] for i in sa.inspect(engine).get_indexes("big")] == ["big_k"]
        engine.dispose()


def test_probes_reach_decisions_through_the_orchestrator(parts: dict[str, Any]) -> None:
    """Any target with time_query() feeds the probes; a slowdown is a pending class B."""
    times = iter([0.010, 0.040])

    @attrs.define
    class TimedTarget(FakeTarget):
        def time_query(self, sql: str) -> float:
            return next(times)

    parts["target"] = TimedTarget()
    steps = write(parts["root"], THREE)
    orch = orchestrator(parts, probes={"q": "SELECT 1"})
    result = orch.apply(steps)
    assert result.outcome is Outcome.COMPLETED
    (decision, _material) = orch.decisions(result.run.id)
    assert decision.classification is Classification.B
    assert decision.scope == tuple(s.id for s in steps)  # no step named: every step


def test_bad_settings_are_refused_when_the_orchestrator_is_made(parts: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="drift must be"):
        orchestrator(parts, drift="maybe")
    with pytest.raises(InvalidArgumentError, match="unknown lint rule"):
        orchestrator(parts, forbid=["nope"])


def test_a_drop_needs_no_down_where_pre_images_cover_it(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pre-images cover a DROP TABLE on every engine (a soft drop or a copy): no down."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    (migrations / "V2__drop.sql").write_text("DROP TABLE t;\n")
    code, _, err = _cli(capsys, "apply", str(migrations), "--db", database_url)
    assert code == 0, err
    assert "rollback cannot be guaranteed" not in err


def test_a_step_without_a_guaranteed_rollback_is_refused_unless_said_irreversible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A statement whose effects cannot be told, with no down section: the run is refused
    before anything runs; its header's ``irreversible: why`` or --allow-irreversible lets it
    run, and a warning records it."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    (migrations / "V2__vacuum.sql").write_text("PRAGMA user_version = 7;\n")
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == 11, (out, err)
    assert "V2__vacuum: its rollback cannot be guaranteed (statements whose effects" in err
    assert "--allow-irreversible V2__vacuum" in err
    assert "0 of 2 step(s) applied" in out
    code, out, err = _cli(
        capsys, "apply", str(migrations), "--db", url, "--allow-irreversible", "V2__vacuum"
    )
    assert code == 0, (out, err)
    assert "V2__vacuum runs without a guaranteed way back" in err
    assert "the operator allowed it (--allow-irreversible)" in err
    (migrations / "V3__again.sql").write_text(
        "-- irreversible: rebuilds an index, nothing to undo\nPRAGMA user_version = 8;\n"
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", url)
    assert code == 0, (out, err)
    assert "its header says irreversible (rebuilds an index, nothing to undo)" in err


def test_a_step_that_leaves_a_foreign_key_broken_is_rolled_back(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With checks turned off a step may insert orphans; the check after the step sees them."""
    if database_url.startswith("postgresql"):
        if not _superuser(database_url):
            pytest.skip("turning foreign key checks off needs superuser rights on PostgreSQL")
        off = "SET session_replication_role = replica"
    elif database_url.startswith("sqlite"):
        off = "PRAGMA foreign_keys = OFF"
    else:
        off = "SET FOREIGN_KEY_CHECKS = 0"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__tables.sql").write_text(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER,"
        " CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id));\n"
        "INSERT INTO parent (id) VALUES (1);\n"
    )
    (migrations / "V2__orphans.sql").write_text(
        f"{off};\nINSERT INTO child (id, parent_id) VALUES (1, 1), (2, 99), (3, NULL);\n"
    )
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", database_url)
    assert code == 11, (out, err)
    assert "rolled_back, 0 of 2" in out
    assert "after V2__orphans: 1 row(s) of child break foreign key" in err
    engine = sa.create_engine(database_url)
    assert "child" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_a_step_whose_declared_effect_is_missing_fails_as_class_a(parts: dict[str, Any]) -> None:
    """A target that reports the created table missing: the step fails, the run rolls back."""

    @attrs.define
    class Forgetful(FakeTarget):
        def existing(self, keys: Any, connection: Any = None) -> set[str]:
            return set()

    parts["target"] = Forgetful()
    # Two statements change t: the step's net effect (u exists) is looked up.
    (parts["root"] / "V1__t.sql").write_text("CREATE TABLE t (id INT)\nALTER TABLE t RENAME TO u\n")
    steps = write(parts["root"], {})
    orch = orchestrator(parts)

    class Lines:
        file_type = "doctrine"
        suffixes = (".sql",)

        def statements(self, step: Any, text: str, **_: Any) -> list[Any]:
            made = attrs.make_class("S", ["line", "text"])
            return [made(i + 1, line) for i, line in enumerate(text.splitlines())]

        def apply(self, step: Any, context: Any) -> None:
            for i, line in enumerate(context.read_text(step.path).splitlines()):
                context.execute(line, index=i)

        def rollback(self, step: Any, context: Any) -> None:
            context.execute(f"UNDO {step.id}", index=1000)

        def can_rollback(self, step: Any) -> bool:
            return True

    orch.registry = type(orch.registry)()
    orch.registry.register(Lines())
    result = orch.apply(steps)
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.run.classification is Classification.A
    assert [f.code for f in result.findings] == ["step-effect"]
    assert result.findings[0].message == "after V1__t: table u should exist, but is missing"


def test_alerts_are_recorded_in_migration_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed run raises a critical alert; a completed run an info one: both kept."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    assert _cli(capsys, "apply", str(migrations), "--db", url)[0] == 0
    (migrations / "V2__bad.sql").write_text("SELECT no_such_function();\n")
    assert _cli(capsys, "apply", str(migrations), "--db", url)[0] == 11
    engine = sa.create_engine(f"sqlite:///{sibling_store(str(tmp_path / 'app.db'))}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT level, message FROM migration_alerts ORDER BY id").all()
    engine.dispose()
    assert [r[0] for r in rows] == ["info", "critical"]
    assert "1 step(s) applied" in rows[0][1]
    assert "class A rollback from migrating" in rows[1][1]


def test_a_wrong_down_section_is_caught_by_the_comparison_on_every_database(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The down section undoes too much: every engine puts the rows back from the copy."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 10), (2, 20)")
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__bump.sql").write_text(
        "UPDATE t SET v = v + 1 WHERE id > 0;\n-- lupo:down\nUPDATE t SET v = v - 2 WHERE id > 0;\n"
    )
    (migrations / "V2__fails.sql").write_text("SELECT no_such_function();\n")
    code, out, err = _cli(capsys, "apply", str(migrations), "--db", database_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, v FROM t ORDER BY id").all()
    engine.dispose()
    assert code == 11
    assert "rolled_back, 0 of 2" in out
    assert "restored 1, dropped 0" in err
    assert [tuple(r) for r in rows] == [(1, 10), (2, 20)]


class TestColumnEffects:
    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            (
                "ALTER TABLE t ADD COLUMN a INT, ADD b INT, DROP COLUMN IF EXISTS c,"
                " ADD INDEX i (a)",
                [("t", "add", "a", None), ("t", "add", "b", None), ("t", "drop", "c", None)],
            ),
            ("ALTER TABLE `t` RENAME COLUMN a TO `b`", [("t", "rename", "a", "b")]),
            ("ALTER TABLE t CHANGE COLUMN a b INT", [("t", "rename", "a", "b")]),
            ("ALTER TABLE t CHANGE a a BIGINT", []),
            ("ALTER TABLE t ADD COLUMN IF NOT EXISTS x INT", [("t", "add", "x", None)]),
            ("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)", []),
            ("UPDATE t SET a = 1", []),
        ],
    )
    def test_what_an_alter_does_to_columns(self, sql: str, expected: list[Any]) -> None:
        from lupo_migrate.sql.lint import column_effects

        assert column_effects(sql, "mysql") == expected

    def test_columns_follow_their_table_through_renames_and_drops(self) -> None:
        from lupo_migrate.core.validation import expected_existence

        effects = [
            ("s1", "column", "t.a", "add", None),
            ("s2", "table", "t", "rename", "u"),
            ("s3", "column", "u.a", "rename", "u.b"),
            ("s4", "column", "v.x", "add", None),
            ("s5", "table", "v", "drop", None),
        ]
        assert expected_existence(effects) == {
            "table:t": False,
            "table:u": True,
            "column:u.a": False,
            "column:u.b": True,
            "table:v": False,
        }

    def test_a_missing_column_after_the_run_is_named(self) -> None:
        after = _fp(table__t={"columns": [{"name": "id", "type": "int"}]})
        effects = (("s1", "column", "t.added", "add", None), ("s1", "table", "t", "alter", None))
        (finding,) = declared_effects()(
            _context(Stage.POST, **{FINGERPRINT: after, EFFECTS: effects})
        )
        assert (
            finding.message == "column t.added should be created by the run but is missing after it"
        )


def _superuser(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SHOW is_superuser").scalar() == "on"
    finally:
        engine.dispose()
