"""The client-grade SQL splitter: comments, strings, DELIMITER, compound bodies, the corpus."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lupo_migrate.sql import split as _sqlsplit
from lupo_migrate.sql.split import (
    CODE,
    COMMENT,
    HINT,
    QUOTED,
    STRING,
    SplitError,
    Statement,
    family,
    scan,
    split,
    split_sections,
)

CORPUS = Path("/work/shared/corpus/lupopedia")
MIGRATIONS = sorted((CORPUS / "migrations").glob("*.sql"))
DIALECTS = ("mysql", "postgresql", "sqlite")


def texts(sql: str, dialect: str = "mysql") -> list[str]:
    return [s.text for s in split(sql, dialect=dialect)]


class TestBasics:
    def test_statements_are_trimmed_numbered_and_located(self) -> None:
        """Each statement loses its delimiter and surrounding space and knows its first line."""
        result = split("\n\n  SELECT 1 ;\nSELECT\n 2;")
        assert result == (Statement("SELECT 1", 3, 0), Statement("SELECT\n 2", 4, 1))

    def test_final_statement_without_delimiter_is_kept(self) -> None:
        """A last statement with no delimiter is still a statement."""
        assert texts("SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]

    def test_empty_and_comment_only_statements_are_dropped(self) -> None:
        """Empty statements and statements made only of comments are not emitted."""
        sql = ";;\n-- only a comment;\n/* block; */;\n# hash;\nSELECT 1;\n-- trailing\n"
        assert texts(sql) == ["SELECT 1"]

    def test_line_points_past_leading_comments(self) -> None:
        """The line is that of the first non-comment token, and leading comments are cut."""
        sql = "SELECT 0;\n-- c1\n/* c2\n c3 */\n  INSERT INTO t VALUES (1);"
        assert split(sql)[1] == Statement("INSERT INTO t VALUES (1)", 5, 1)

    def test_trailing_comments_are_cut_inner_comments_kept(self) -> None:
        """Comments inside a statement stay; comments between its end and the delimiter go."""
        assert texts("SELECT /* a; */ 1 -- tail\n;") == ["SELECT /* a; */ 1"]

    def test_unknown_dialect_is_refused(self) -> None:
        """An unknown dialect name raises ValueError naming the known ones."""
        with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'; known: mariadb"):
            split("SELECT 1", dialect="oracle")

    def test_families(self) -> None:
        """MariaDB follows MySQL rules."""
        assert family("mariadb") == "mysql"
        assert family("PostgreSQL") == "postgresql"


class TestMySQL:
    def test_strings_with_delimiters_escapes_and_doubled_quotes(self) -> None:
        """Quotes hide delimiters; backslash escapes and doubled quotes do not end a string."""
        sql = "SELECT 'a;b', 'it''s;', 'x\\';y', \"q;\\\"r\", `c;``d`; SELECT 2"
        assert texts(sql) == [sql.split("; SELECT 2")[0], "SELECT 2"]

    def test_dash_dash_needs_whitespace(self) -> None:
        """``--`` starts a comment only before whitespace; ``1--1`` is arithmetic."""
        assert texts("SELECT 1--1;\nSELECT 2 -- ;x\n;") == ["SELECT 1--1", "SELECT 2"]
        assert texts("SELECT 2 --;x") == ["SELECT 2 --", "x"]
        assert texts("SELECT 3 --") == ["SELECT 3"]

    def test_hash_comments(self) -> None:
        """``#`` comments run to the end of the line."""
        assert texts("SELECT 1 # ; not a delimiter\n, 2;") == ["SELECT 1 # ; not a delimiter\n, 2"]

    def test_executable_comments_are_statement_text(self) -> None:
        """``/*! */`` and ``/*+ */`` comments are sent to the server; alone they are statements."""
        sql = "/*!40101 SET NAMES utf8mb4 */;\nSELECT /*+ MAX_EXECUTION_TIME(1) */ 1;"
        assert texts(sql) == [
            "/*!40101 SET NAMES utf8mb4 */",
            "SELECT /*+ MAX_EXECUTION_TIME(1) */ 1",
        ]

    def test_delimiter_directive(self) -> None:
        """DELIMITER lines are not statements; bodies end at the custom delimiter."""
        sql = (
            "DELIMITER $$\n"
            "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 'x$$';\nEND$$\n"
            "delimiter //\nCREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 1//\n"
            "DELIMITER ;\nSELECT 3;"
        )
        result = split(sql)
        assert [s.line for s in result] == [2, 8, 10]
        assert result[0].text == "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 'x$$';\nEND"
        assert result[1].text.endswith("SET NEW.a = 1")
        assert result[2] == Statement("SELECT 3", 10, 2)

    def test_double_quotes_are_strings(self) -> None:
        """On MySQL a double-quoted token is a string."""
        assert [t.kind for t in scan('"a"', dialect="mysql")] == [STRING]


class TestPostgreSQL:
    def test_dollar_quoted_bodies(self) -> None:
        """``$$`` and ``$tag$`` bodies hide delimiters; ``$1`` is a parameter."""
        sql = (
            "CREATE FUNCTION f(int) RETURNS int AS $body$\nBEGIN RETURN $1; END;\n$body$ "
            "LANGUAGE plpgsql;\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT a$b$ FROM t;"
        )
        result = texts(sql, "postgresql")
        assert len(result) == 3
        assert result[0].endswith("LANGUAGE plpgsql")
        assert result[2] == "SELECT a$b$ FROM t"

    def test_standard_strings_and_escape_strings(self) -> None:
        """Backslashes escape only in E'' strings; any ``--`` is a comment."""
        sql = "SELECT 'a\\'; SELECT E'b\\';c'; SELECT 1--x;\n;"
        assert texts(sql, "postgresql") == ["SELECT 'a\\'", "SELECT E'b\\';c'", "SELECT 1"]

    def test_nested_block_comments(self) -> None:
        """PostgreSQL block comments nest."""
        assert texts("/* a /* b; */ c; */ SELECT 1;", "postgresql") == ["SELECT 1"]

    def test_begin_atomic_bodies_and_parentheses(self) -> None:
        """A standard-SQL function body and a ';' in parentheses do not end the statement."""
        sql = (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
            "SELECT CASE WHEN true THEN 2 END; END;\nCREATE RULE r AS ON INSERT TO t DO (A; B);"
        )
        assert len(texts(sql, "postgresql")) == 2

    def test_double_quotes_are_identifiers(self) -> None:
        """On PostgreSQL a double-quoted token is an identifier; backticks are plain text."""
        assert [t.kind for t in scan('"a;"', dialect="postgresql")] == [QUOTED]


class TestSQLite:
    def test_trigger_bodies_stay_whole(self) -> None:
        """``CREATE TRIGGER ... BEGIN ...; ...; END;`` is one statement, CASE ... END included."""
        sql = (
            "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO u VALUES (1);\n"
            "  UPDATE u SET a = CASE WHEN 1 THEN 2 END;\nEND;\nSELECT 1;"
        )
        result = split(sql, dialect="sqlite")
        assert [s.line for s in result] == [1, 5]
        assert result[0].text.endswith("END")

    def test_bracket_identifiers_and_no_hash_comments(self) -> None:
        """``[a;b]`` is an identifier; ``#`` is plain text on SQLite."""
        assert texts("SELECT [a;b] FROM t; SELECT 1", "sqlite") == [
            "SELECT [a;b] FROM t",
            "SELECT 1",
        ]
        assert [t.kind for t in scan("# x", dialect="sqlite")] == [CODE]


class TestErrors:
    @pytest.mark.parametrize(
        ("sql", "dialect", "line", "what"),
        [
            ("SELECT 1;\nSELECT 'abc;\n\n", "mysql", 2, "string"),
            ("SELECT 1;\n\n/* never closed", "mysql", 3, "comment"),
            ("SELECT `x", "mysql", 1, "quoted identifier"),
            ('SELECT "x\\"', "mysql", 1, "quoted text"),
            ("\nSELECT $a$ body", "postgresql", 2, r"dollar quote \(\$a\$\)"),
            ("SELECT [x", "sqlite", 1, "quoted identifier"),
        ],
    )
    def test_unterminated_constructs_name_their_first_line(
        self, sql: str, dialect: str, line: int, what: str
    ) -> None:
        """An unterminated string, comment or quote raises SplitError with its starting line."""
        with pytest.raises(SplitError, match=f"line {line}: unterminated {what}") as info:
            split(sql, dialect=dialect)
        assert info.value.line == line
        assert isinstance(info.value, ValueError)


class TestScan:
    def test_tokens_rebuild_the_text(self) -> None:
        """Joining every token gives back the input; kinds are as documented."""
        sql = "SELECT `a`.b, 'x' /* c */ -- d\n/*!1 e */ FROM t"
        tokens = list(scan(sql))
        assert "".join(t.text for t in tokens) == sql
        assert {t.kind for t in tokens} == {CODE, QUOTED, STRING, COMMENT, HINT}
        assert tokens[-1].line == 2


class TestSections:
    @pytest.mark.parametrize("marker", ["-- lupo:down", "-- +migrate Down", "--  LUPO:DOWN  "])
    def test_down_marker_splits_up_and_down(self, marker: str) -> None:
        """Statements after a down marker are the down section, numbered from 0."""
        sql = f"-- lupo:up\nCREATE TABLE t (a int);\n{marker}\nDROP TABLE t;\n"
        sections = split_sections(sql)
        assert sections.up == (Statement("CREATE TABLE t (a int)", 2, 0),)
        assert sections.down == (Statement("DROP TABLE t", 4, 0),)
        assert sections.has_down

    def test_marker_ends_an_unterminated_statement(self) -> None:
        """A statement without a delimiter before the marker still belongs to the up section."""
        sections = split_sections("SELECT 1\n-- +migrate Down\nSELECT 2\n-- +migrate Up\nSELECT 3")
        assert [s.text for s in sections.up] == ["SELECT 1", "SELECT 3"]
        assert [s.text for s in sections.down] == ["SELECT 2"]

    def test_marker_inside_a_string_or_after_code_is_not_a_marker(self) -> None:
        """Only a line comment on a line of its own is a marker."""
        sections = split_sections("SELECT '\n-- lupo:down\n'; SELECT 1 -- lupo:down\n;")
        assert len(sections.up) == 2
        assert not sections.has_down

    def test_empty_down_section_still_counts(self) -> None:
        """A down marker with nothing after it declares an empty (no-op) rollback."""
        assert split_sections("SELECT 1;\n-- lupo:down\n").has_down
        assert not split_sections("SELECT 1;").has_down

    def test_plain_split_ignores_markers(self) -> None:
        """split() treats markers as comments."""
        assert texts("SELECT 1;\n-- lupo:down\nSELECT 2;") == ["SELECT 1", "SELECT 2"]


class TestCorpus:
    @pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: p.name)
    def test_every_migration_splits(self, path: Path) -> None:
        """Each corpus migration splits, with as many statements as a rough count suggests."""
        text = path.read_text(encoding="utf-8")
        statements = split(text)
        assert statements
        # Rough independent count: statement starts at the beginning of a line.
        starts = re.findall(
            r"(?im)^(?:INSERT|CREATE|ALTER|DROP|UPDATE|SET|START|COMMIT|SELECT)\b", text
        )
        assert len(statements) <= len(starts)
        assert all(not s.text.endswith(";") for s in statements if "BEGIN" not in s.text)

    def test_known_counts(self) -> None:
        """Hand-counted files split into the expected statements."""
        counts = {p.name: len(split(p.read_text(encoding="utf-8"))) for p in MIGRATIONS}
        assert counts["20260120_drop_legacy_tables_and_set_limit_4.1.17.sql"] == 8
        assert counts["20260122_channel_system_migration.sql"] == 10
        assert counts["4_1_2_fix_labs_timestamps.sql"] == 15
        assert counts["4.2.0_schema_freeze_enforcement.sql"] == 2

    def test_channel_migration_alter_is_statement_two_at_line_34(self) -> None:
        """The failing ALTER of the channel migration starts at line 34."""
        text = (CORPUS / "migrations" / "20260122_channel_system_migration.sql").read_text()
        assert split(text)[1].line == 34

    def test_event_body_stays_whole(self) -> None:
        """The DELIMITER $$ event body of 4.2.0 is one statement with its inner ';'."""
        text = (CORPUS / "migrations" / "4.2.0_schema_freeze_enforcement.sql").read_text()
        drop, create = split(text)
        assert drop == Statement("DROP EVENT IF EXISTS schema_freeze_enforcement_4_2_0", 15, 0)
        assert create.text.startswith("CREATE EVENT")
        assert create.text.endswith("END")
        assert create.text.count(";") == 4  # DECLARE, SELECT, INSERT, END IF

    def test_baseline_has_185_create_table_statements(self) -> None:
        """core.sql is one SET and 185 CREATE TABLE statements, matching a grep."""
        text = (CORPUS / "baseline" / "core.sql").read_text(encoding="utf-8")
        statements = split(text)
        creates = [s for s in statements if s.text.startswith("CREATE TABLE")]
        assert len(creates) == len(re.findall(r"(?m)^CREATE TABLE", text)) == 185
        assert len(statements) == 186
        assert all(
            text.split("\n")[s.line - 1].startswith(s.text.split("\n")[0]) for s in statements
        )

    def test_a_megabyte_splits_well_under_a_second(self) -> None:
        """The scan is linear: 1 MB of real DDL splits in well under a second."""
        text = (CORPUS / "baseline" / "core.sql").read_text(encoding="utf-8")
        big = text * (1_000_000 // len(text) + 1)
        started = time.perf_counter()
        statements = split(big)
        elapsed = time.perf_counter() - started
        assert len(statements) == 186 * (1_000_000 // len(text) + 1)
        assert elapsed < 1.0


# --- properties ------------------------------------------------------------------------------

_RESERVED = {"delimiter", "begin", "case", "end", "create", "trigger"}
_words = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda w: w not in _RESERVED)
_inner = st.text(alphabet="ab ;#-*/\n$`\"'\\", max_size=12)


def _string(dialect: str) -> st.SearchStrategy[str]:
    if dialect == "mysql":
        escape = lambda s: s.replace("\\", "\\\\").replace("'", "''")  # noqa: E731
    else:
        escape = lambda s: s.replace("'", "''")  # noqa: E731
    return _inner.map(lambda s: "'" + escape(s) + "'")


def _identifier(dialect: str) -> st.SearchStrategy[str]:
    quote = "`" if dialect in ("mysql", "sqlite") else '"'
    return _inner.map(lambda s: quote + s.replace(quote, quote * 2) + quote)


def _block_comment() -> st.SearchStrategy[str]:
    return _inner.filter(lambda s: "*/" not in s and "/*" not in s and not s.endswith("*")).map(
        lambda s: "/* " + s + " */"
    )


def _line_comment() -> st.SearchStrategy[str]:
    return _inner.map(lambda s: "-- " + s.replace("\n", " ") + "\n")


@st.composite
def statements(draw: st.DrawFn, dialect: str) -> str:
    """A statement: a word, then words, strings, quoted names and comments; ends in code."""
    parts = [draw(_words)]
    fragment = st.one_of(
        _words, _string(dialect), _identifier(dialect), _block_comment(), _line_comment()
    )
    if dialect == "postgresql":
        fragment = st.one_of(fragment, _inner.map(lambda s: "$q$" + s.replace("$q$", "") + "$q$"))
    parts += draw(st.lists(fragment, max_size=6))
    parts.append(draw(st.one_of(_words, _string(dialect), _identifier(dialect))))
    return " ".join(parts)


@pytest.mark.parametrize("dialect", DIALECTS)
@given(data=st.data())
def test_joined_statements_split_back(dialect: str, data: st.DataObject) -> None:
    """Statements joined with ';\\n' (between comments) split back exactly, lines and all."""
    stmts = data.draw(st.lists(statements(dialect), min_size=1, max_size=6), label="statements")
    gaps = data.draw(
        st.lists(
            st.sampled_from(["", "\n", "-- c;\n", "/* ; */ ", "\n\n"]),
            min_size=len(stmts),
            max_size=len(stmts),
        ),
        label="gaps",
    )
    doc, lines = "", []
    for gap, stmt in zip(gaps, stmts, strict=True):
        doc += gap
        lines.append(doc.count("\n") + 1)
        doc += stmt + ";\n"
    result = split(doc, dialect=dialect)
    assert [s.text for s in result] == stmts
    assert [s.line for s in result] == lines
    assert [s.index for s in result] == list(range(len(stmts)))


@pytest.mark.parametrize("dialect", DIALECTS)
@given(text=st.text(alphabet="ab ;\n'\"`#-/*$[]\\E", max_size=60))
def test_splitting_is_idempotent(dialect: str, text: str) -> None:
    """Splitting the rejoined output of a split gives the same statements."""
    try:
        first = [s.text for s in split(text, dialect=dialect)]
    except SplitError:
        assume(False)
        return
    again = [s.text for s in split("".join(t + ";\n" for t in first), dialect=dialect)]
    assert again == first


@given(text=st.text(alphabet="ab ;\n'\"`#-/*$\\", max_size=60))
def test_scan_is_lossless(text: str) -> None:
    """scan() never loses or invents text, whatever the input."""
    for dialect in DIALECTS:
        try:
            tokens = list(scan(text, dialect=dialect))
        except SplitError:
            continue
        assert "".join(t.text for t in tokens) == text
        assert all(t.line == text.count("\n", 0, t.start) + 1 for t in tokens)


_SCRIPT_PIECES = st.sampled_from(
    [
        "SELECT 1;", "INSERT INTO t VALUES ('a;b');", "\n", " ", "-- c\n", "/* x; */",
        "-- lupo:down\n", "CREATE TABLE t (id INT);", "DROP TABLE t;", "'", "x", ";",
    ]
)  # fmt: skip


@given(pieces=st.lists(_SCRIPT_PIECES, max_size=30), fam=st.sampled_from(["mysql", "sqlite"]))
def test_a_big_script_kept_as_offsets_reads_as_the_same_statements(
    pieces: list[str], fam: str
) -> None:
    """Sections of over 2,000 statements are kept as offsets into the text (Spans): read,
    indexed, sliced and compared, they are the statements the tuple holds."""
    text = "".join(pieces)
    try:
        expected = _sqlsplit.split_sections(text, dialect=fam)
    except SplitError:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_sqlsplit, "_SPANS_AT", 0)
        got = _sqlsplit.split_sections(text, dialect=fam)
    assert got.has_down == expected.has_down
    for spans, kept in ((got.up, expected.up), (got.down, expected.down)):
        assert isinstance(kept, tuple)
        assert isinstance(spans, _sqlsplit.Spans) or not kept
        assert tuple(spans) == kept
        assert spans == kept
        assert len(spans) == len(kept)
        assert [spans[i] for i in range(-len(kept), len(kept))] == [*kept, *kept]
        assert spans[1:3] == kept[1:3]
        assert spans[::-1] == kept[::-1]
        with pytest.raises(IndexError):
            spans[len(kept)]
