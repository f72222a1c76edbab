"""What a SQL text does (the write guard's verdicts) and ``check``'s statements that are not SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import CORPUS, needs_corpus
from lupo_migrate import errors
from lupo_migrate.cli import main
from lupo_migrate.session import api
from lupo_migrate.sql import effects
from lupo_migrate.sql.effects import Effect, check_sql, effect

ROOT = Path(__file__).resolve().parents[1]
R, W, U = Effect.READ, Effect.WRITE, Effect.UNKNOWN

#: (dialect, text, verdict). The first four are issue 18's: they passed the first-word guard.
VERDICTS = [
    ("mariadb", "# why\nINSERT INTO notes (text) VALUES ('x')", W),
    ("mariadb", "/*!INSERT INTO notes (text) VALUES ('x') */", W),
    ("mariadb", "CALL add_note('x')", U),
    ("sqlite", "WITH n(t) AS (SELECT 'x') INSERT INTO notes (text) SELECT t FROM n", W),
    ("postgresql", "WITH n AS (INSERT INTO notes VALUES ('x') RETURNING *) SELECT * FROM n", W),
    # comments of every kind before a write
    ("mysql", "-- why\nUPDATE notes SET text = 'y'", W),
    ("mysql", "/* why */ DELETE FROM notes", W),
    ("mysql", "/*+ MAX_EXECUTION_TIME(1) */ DELETE FROM notes", W),
    ("postgresql", "/* outer /* nested */ still */ DELETE FROM notes", W),
    ("sqlite", "-- a\n/* b */\n  DROP TABLE notes", W),
    # executable comments: their content runs
    ("mysql", "/*!50001 INSERT INTO notes VALUES ('x') */", W),
    ("mariadb", "/*M!100100 DELETE FROM notes */", W),
    ("mysql", "/*!40101 SET @saved = @@character_set_client */", R),
    ("mysql", "SELECT 1 /*! INTO OUTFILE '/tmp/x' */", R),
    ("mysql", "/*+ a hint only */", R),
    ("postgresql", "/*!INSERT INTO notes VALUES ('x') */ SELECT 1", R),  # a comment there
    # WITH
    ("mysql", "WITH x AS (SELECT 1) UPDATE notes SET text = 'y'", W),
    ("postgresql", "WITH d AS (DELETE FROM notes RETURNING *) SELECT count(*) FROM d", W),
    ("postgresql", "WITH x AS (SELECT 1) MERGE INTO notes USING x ON true WHEN MATCHED THEN"
                   " DELETE", W),
    ("postgresql", "WITH x AS (SELECT id FROM notes) SELECT * FROM x FOR UPDATE", R),
    ("postgresql", "WITH x AS (SELECT id FROM notes) SELECT * FROM x FOR NO KEY UPDATE", R),
    ("mysql", "WITH x AS (SELECT REPLACE(text, 'a', 'b') AS t FROM notes) SELECT * FROM x", R),
    ("mysql", "WITH x AS (SELECT INSERT(text, 1, 2, 'b') AS t FROM notes) SELECT * FROM x", R),
    ("sqlite", "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n"
               " FROM c", R),
    # reads
    ("sqlite", "SELECT * FROM notes", R),
    ("sqlite", "  \n select 1", R),
    ("mysql", "(SELECT 1) UNION (SELECT 2)", R),
    ("mysql", "SELECT * FROM notes FOR UPDATE", R),
    ("mysql", "SELECT * FROM notes LOCK IN SHARE MODE;", R),
    ("mysql", "SELECT text INTO @t FROM notes LIMIT 1", R),
    ("mysql", "SELECT text INTO OUTFILE '/tmp/notes' FROM notes", R),
    ("postgresql", "SELECT * INTO copy_of_notes FROM notes", W),
    ("postgresql", "SELECT 'into; the string' AS t", R),
    ("sqlite", "SELECT count(*) FROM notes WHERE text = 'intolerable'", R),
    ("postgresql", "SELECT nextval('notes_seq')", R),  # a function's writes: not in the text
    ("mysql", "SHOW TABLES", R),
    ("postgresql", "show standard_conforming_strings", R),
    ("postgresql", "TABLE notes", R),
    ("sqlite", "VALUES (1), (2)", R),
    ("mysql", "DESCRIBE notes", R),
    ("mysql", "EXPLAIN SELECT * FROM notes", R),
    ("postgresql", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", R),
    ("postgresql", "EXPLAIN ANALYZE DELETE FROM notes", W),
    ("sqlite", "EXPLAIN QUERY PLAN SELECT * FROM notes", R),
    ("mariadb", "ANALYZE SELECT * FROM notes", R),
    ("mariadb", "ANALYZE UPDATE notes SET text = 'y'", W),
    ("mysql", "ANALYZE TABLE notes", W),
    ("mysql", "DO SLEEP(0)", R),
    ("mysql", "HANDLER notes READ FIRST", R),
    ("mysql", "CHECK TABLE notes", R),
    # session and transaction control
    ("mysql", "SET NAMES utf8mb4", R),
    ("mysql", "SET @x = (SELECT count(*) FROM notes)", R),
    ("mysql", "SET SESSION sql_mode = 'STRICT_ALL_TABLES'", R),
    ("mysql", "SET GLOBAL read_only = OFF", W),
    ("mysql", "SET @@global.read_only = OFF", W),
    ("mysql", "SET PERSIST max_connections = 10", W),
    ("mysql", "SET PASSWORD = 'x'", W),
    ("mysql", "SET DEFAULT ROLE ALL TO 'u'@'%'", W),
    ("mariadb", "SET STATEMENT max_statement_time = 1 FOR DELETE FROM notes", W),
    ("mariadb", "SET STATEMENT max_statement_time = 1 FOR SELECT 1", R),
    ("postgresql", "SET LOCAL statement_timeout = '1s'", R),
    ("mysql", "BEGIN", R),
    ("sqlite", "BEGIN IMMEDIATE", R),
    ("postgresql", "BEGIN ISOLATION LEVEL SERIALIZABLE", R),
    ("mysql", "START TRANSACTION", R),
    ("mysql", "START REPLICA", W),
    ("mysql", "COMMIT", R),
    ("mysql", "ROLLBACK TO SAVEPOINT s1", R),
    ("sqlite", "SAVEPOINT s1", R),
    ("sqlite", "RELEASE SAVEPOINT s1", R),
    ("sqlite", "END", R),
    ("postgresql", "ABORT", R),
    ("mysql", "XA START 'x'", R),
    ("mariadb", "BEGIN NOT ATOMIC INSERT INTO notes VALUES ('x'); END", U),
    ("mariadb", "BEGIN NOT ATOMIC SELECT 1; END", U),
    ("mysql", "LOCK TABLES notes WRITE", R),
    ("mysql", "UNLOCK TABLES", R),
    ("postgresql", "LOCK TABLE notes IN ACCESS EXCLUSIVE MODE", R),
    ("mysql", "USE other", R),
    ("mysql", "PREPARE s FROM 'DELETE FROM notes'", R),  # prepared, not run
    ("mysql", "EXECUTE s", U),
    ("mysql", "DEALLOCATE PREPARE s", R),
    ("postgresql", "LISTEN news", R),
    ("postgresql", "NOTIFY news", R),
    ("postgresql", "DISCARD ALL", R),
    ("postgresql", "RESET ALL", R),
    ("mysql", "RESET MASTER", W),
    ("postgresql", "DECLARE c CURSOR FOR SELECT * FROM notes", R),
    ("postgresql", "FETCH 10 FROM c", R),
    ("sqlite", "ATTACH DATABASE 'other.db' AS other", R),
    ("sqlite", "DETACH DATABASE other", R),
    # writes by their first word
    ("mysql", "INSERT INTO notes VALUES ('x')", W),
    ("mysql", "REPLACE INTO notes VALUES ('x')", W),
    ("mysql", "LOAD DATA INFILE '/tmp/x' INTO TABLE notes", W),
    ("postgresql", "MERGE INTO notes USING x ON true WHEN MATCHED THEN DELETE", W),
    ("postgresql", "COPY notes FROM STDIN", W),
    ("postgresql", "COPY notes (text) FROM '/tmp/x'", W),
    ("postgresql", "COPY (SELECT * FROM notes WHERE text <> 'FROM') TO STDOUT", R),
    ("postgresql", "COPY notes TO STDOUT", R),
    ("mysql", "TRUNCATE notes", W),
    ("mysql", "CREATE TABLE t (id INT)", W),
    ("mysql", "ALTER TABLE notes ADD COLUMN c INT", W),
    ("mysql", "DROP TABLE notes", W),
    ("mysql", "RENAME TABLE notes TO old_notes", W),
    ("mysql", "GRANT SELECT ON notes TO 'u'@'%'", W),
    ("postgresql", "COMMENT ON TABLE notes IS 'x'", W),
    ("postgresql", "REFRESH MATERIALIZED VIEW v", W),
    ("postgresql", "VACUUM notes", W),
    ("sqlite", "VACUUM", W),
    ("sqlite", "REINDEX notes", W),
    ("sqlite", "ANALYZE", W),
    ("mysql", "OPTIMIZE TABLE notes", W),
    ("mysql", "FLUSH TABLES", W),
    ("mysql", "KILL 42", W),
    # SQLite pragmas
    ("sqlite", "PRAGMA foreign_keys = ON", R),
    ("sqlite", "PRAGMA busy_timeout(5000)", R),
    ("sqlite", 'PRAGMA main.table_info("notes")', R),
    ("sqlite", "PRAGMA read_uncommitted", R),
    ("sqlite", "PRAGMA user_version", R),
    ("sqlite", "PRAGMA user_version = 3", W),
    ("sqlite", "PRAGMA main.journal_mode = WAL", W),
    ("sqlite", "PRAGMA optimize", W),
    ("sqlite", "PRAGMA incremental_vacuum(10)", W),
    ("sqlite", "PRAGMA wal_checkpoint(TRUNCATE)", W),
    # routines and dynamic SQL: what runs is not in the text
    ("postgresql", "CALL add_note('x')", U),
    ("postgresql", "DO $$ BEGIN INSERT INTO notes VALUES ('x'); END $$", U),
    ("postgresql", "EXECUTE add_note_plan('x')", U),
    # several statements in one text: the worst counts
    ("mysql", "SELECT 1; DELETE FROM notes", W),
    ("mysql", "SELECT 1; CALL add_note('x')", U),
    ("mysql", "SELECT ';'; SELECT 2;", R),
    ("mysql", "SELECT 1; # DELETE FROM notes", R),
    # nothing, or nothing known
    ("mysql", "", R),
    ("mysql", "  \n\t", R),
    ("mysql", "-- nothing\n/* at all */ ;", R),
    ("mysql", "SELEC broken", U),
    ("mysql", "'just a string'", U),
    ("mysql", "UPDATE notes SET text = 'unterminated", W),
    ("mysql", "WITH x AS (SELECT 'unterminated", U),
    ("mssql", "EXEC add_note 'x'", U),
    ("mssql", "-- why\nINSERT INTO notes VALUES ('x')", W),
    ("mssql", "SELECT 1", R),
]  # fmt: skip


@pytest.mark.parametrize(("dialect", "sql", "verdict"), VERDICTS, ids=lambda v: str(v)[:50])
def test_what_a_text_does(dialect: str, sql: str, verdict: Effect) -> None:
    assert effect(sql, dialect=dialect) is verdict


@pytest.mark.parametrize(("dialect", "sql", "verdict"), VERDICTS, ids=lambda v: str(v)[:50])
def test_the_shortcuts_agree_with_the_full_look(dialect: str, sql: str, verdict: Effect) -> None:
    """The first-word shortcuts and the remembered verdicts say what tokenising says."""
    full = effects._classify(sql, effects._family(dialect))
    assert full is (Effect.UNKNOWN if sql.endswith("'unterminated") else verdict)
    assert effects._decide(sql, dialect) is verdict
    long = sql + " " * 5000  # past what is remembered
    assert effect(long, dialect=dialect) is verdict


@pytest.mark.parametrize("comment", ["-- c\n", "/* c */", "/* a */ -- b\n", "\n\n  "])
@pytest.mark.parametrize("write", ["INSERT INTO t VALUES (1)", "DELETE FROM t", "DROP TABLE t"])
@pytest.mark.parametrize("dialect", ["mysql", "postgresql", "sqlite"])
def test_no_comment_hides_a_write(comment: str, write: str, dialect: str) -> None:
    for text in (comment + write, comment * 3 + write, f"SELECT 1; {comment}{write}"):
        assert effect(text, dialect=dialect) is Effect.WRITE, text


def test_the_classifier_is_pure() -> None:
    """No SQLAlchemy, no I/O: only the tokenizer, the core's values and the standard library."""
    tree = ast.parse(Path(effects.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {
        "__future__",
        "collections.abc",
        "difflib",
        "enum",
        "functools",
        "re",
        "typing",
        "lupo_migrate.core.model",
        "lupo_migrate.sql.split",
        "lupo_migrate.sql.touches",
    }, imported


class TestCheckSql:
    def test_a_statement_that_is_not_sql_is_named_with_its_line_and_a_guess(self) -> None:
        text = (
            "-- lupo:up\nCREATE TABLE t (id INT);\n\nSELEC broken;\n-- lupo:down\nDROPP TABLE t;\n"
        )
        found = check_sql(text, path="V1__t.sql")
        assert [(f.path, f.line, f.code, f.severity.fails) for f in found] == [
            ("V1__t.sql", 4, "sql.statement", True),
            ("V1__t.sql", 6, "sql.statement", True),
        ]
        assert str(found[0]) == (
            "V1__t.sql:4: statement starts with 'SELEC', which is not a SQL statement"
            " (did you mean SELECT? correct or remove it: it would fail when the step runs)"
        )
        assert "did you mean DROP?" in str(found[1])

    def test_client_commands_and_stray_text_are_flagged(self) -> None:
        text = "\\i other.sql\nSELECT 1;\n.tables\n;\nfoo bar;\n"
        found = check_sql(text, path="x.sql")
        assert [(f.line, f.message.split("'")[1]) for f in found] == [
            (1, "\\i other.sql"),
            (3, ".tables"),
            (5, "foo"),
        ]
        assert "did you mean" not in str(found[0])

    @pytest.mark.parametrize(
        ("dialect", "text"),
        [
            (
                "mysql",
                "DELIMITER $$\nCREATE PROCEDURE p()\nBEGIN\n  DECLARE x INT;\n  SET x = 1;\n"
                "  IF x THEN SELECT 1; END IF;\nEND$$\nDELIMITER ;\nCALL p();\n",
            ),
            (
                "mysql",
                "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */;\n# a comment\n"
                "(SELECT 1) UNION (SELECT 2);\nLOCK TABLES t WRITE;\nUNLOCK TABLES;\n"
                "REPLACE INTO t VALUES (1);\nHANDLER t OPEN;\nXA START 'x';\n"
                "DELIMITER //\nlbl: LOOP LEAVE lbl; END LOOP lbl //\nDELIMITER ;\n",
            ),
            (
                "postgresql",
                "DO $$ BEGIN PERFORM 1; RAISE NOTICE 'x; y'; END $$;\nCOPY t FROM STDIN;\n"
                "VACUUM t;\nLISTEN ch;\nNOTIFY ch;\nCOMMENT ON TABLE t IS 'x';\n"
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n"
                "REFRESH MATERIALIZED VIEW v;\nMERGE INTO t USING s ON true WHEN MATCHED THEN"
                " DELETE;\nABORT;\n",
            ),
            (
                "sqlite",
                "PRAGMA foreign_keys = ON;\nATTACH DATABASE 'x.db' AS x;\nDETACH x;\n"
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; END;\n"
                "REINDEX t;\nVACUUM;\nEND;\n",
            ),
        ],
        ids=["mysql-procedure", "mysql-misc", "postgresql", "sqlite"],
    )
    def test_valid_statements_of_each_family_pass(self, dialect: str, text: str) -> None:
        assert check_sql(text, path="x.sql", dialect=dialect) == ()
        assert check_sql(text, path="x.sql") == ()

    def test_without_a_dialect_a_file_passes_when_any_family_reads_it(self) -> None:
        """PRAGMA is SQLite's: without a dialect the file is SQLite's; with mysql it fails."""
        text = "PRAGMA foreign_keys = ON;\nCREATE TABLE t (id INTEGER);\n"
        assert check_sql(text, path="x.sql") == ()
        found = check_sql(text, path="x.sql", dialect="mariadb")
        assert [(f.line, f.message) for f in found] == [
            (1, "statement starts with 'PRAGMA', which is not a MySQL/MariaDB statement")
        ]

    def test_a_text_no_family_can_split_is_one_finding_at_its_line(self) -> None:
        found = check_sql("SELECT 1;\nSELECT 'open;\n", path="x.sql")
        assert [(f.line, f.code, f.message) for f in found] == [
            (2, "sql.split", "unterminated string (') starts here")
        ]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


class TestCheckCommand:
    def test_check_names_file_and_line_of_a_statement_that_is_not_sql(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`lupo-migrate check` exits 5 and names V2__b.sql:3 and the word; so does a down twin."""
        _write(tmp_path, "V1__a.sql", "CREATE TABLE a (id INT);\n")
        _write(tmp_path, "V2__b.sql", "-- b\nCREATE TABLE b (id INT);\nSELEC broken;\n")
        _write(tmp_path, "V1__a.down.sql", "\nDRPO TABLE a;\n")
        code = main(["check", str(tmp_path)])
        out, err = capsys.readouterr()
        assert code == errors.MigrationFileError.exit_code == 5
        assert out.splitlines() == [
            "error: V1__a.down.sql:2: statement starts with 'DRPO', which is not a SQL statement"
            " (did you mean DROP? correct or remove it: it would fail when the step runs)",
            "error: V2__b.sql:3: statement starts with 'SELEC', which is not a SQL statement"
            " (did you mean SELECT? correct or remove it: it would fail when the step runs)",
        ]
        assert "2 error(s)" in err

    def test_a_cycle_is_still_reported_beside_a_bad_statement(self, tmp_path: Path) -> None:
        _write(tmp_path, "a.sql", "-- id: a\n-- depends_on: [b]\nSELEC 1;\n")
        _write(tmp_path, "b.sql", "-- id: b\n-- depends_on: [a]\nSELECT 1;\n")
        codes = {f.code for f in api.check_directory(tmp_path).findings}
        assert codes == {"plan", "sql.statement"}

    @pytest.mark.parametrize(
        "where", ["examples/quickstart/migrations", "examples/plugin/demo"], ids=str
    )
    def test_the_examples_pass(self, where: str) -> None:
        report = api.check_directory(ROOT / where)
        assert report.files > 0
        assert report.errors == ()

    @needs_corpus
    @pytest.mark.parametrize("dialect", [None, "mariadb"])
    def test_the_corpus_passes(self, dialect: str | None) -> None:
        report = api.check_directory(CORPUS / "migrations", dialect=dialect)
        assert report.files == 16
        assert [f for f in report.findings if f.code.startswith("sql.")] == []
        assert report.errors == ()
