"""Federation rendering: placeholders and literal schema renames, token-aware."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.errors import InvalidArgumentError
from lupo_migrate.handlers._federation import quote_identifier, render

NAMES = {"core": "app_core", "orchestration": "app_orch", "ephemeral": "app eph"}
RENAMES = {"lupopedia": "test_db"}


def mysql(sql: str, **kwargs: object) -> str:
    options: dict[str, object] = {"names": NAMES, "renames": RENAMES, "dialect": "mysql"}
    options.update(kwargs)
    return render(sql, **options)  # type: ignore[arg-type]


class TestPlaceholders:
    def test_placeholders_become_physical_names(self) -> None:
        """``${core}`` and friends are replaced in code, quoted names and strings."""
        sql = "SELECT * FROM ${core}.t JOIN `${orchestration}`.u WHERE s = '${core}'"
        assert mysql(sql) == "SELECT * FROM app_core.t JOIN `app_orch`.u WHERE s = 'app_core'"

    def test_names_needing_quotes_are_quoted_in_code(self) -> None:
        """A physical name that is not a plain identifier is quoted for the dialect."""
        assert mysql("USE ${ephemeral}") == "USE `app eph`"
        assert (
            render("SET search_path TO ${ephemeral}", names=NAMES, renames={}, dialect="postgresql")
            == 'SET search_path TO "app eph"'
        )

    def test_quote_characters_are_doubled_inside_quotes(self) -> None:
        """Inside a string or quoted name the value's quote characters are doubled."""
        names = {"core": "it's`x"}
        assert mysql("SELECT '${core}', `${core}`", names=names) == "SELECT 'it''s`x', `it's``x`"

    def test_any_key_of_names_is_a_placeholder(self) -> None:
        """Placeholders are the keys of names, not a fixed list."""
        assert mysql("SELECT ${tenant}", names={"tenant": "t1"}) == "SELECT t1"

    def test_unknown_placeholder_names_itself_and_the_known_ones(self) -> None:
        """An unknown placeholder raises InvalidArgumentError listing the known placeholders."""
        with pytest.raises(
            InvalidArgumentError,
            match=r"unknown placeholder \$\{cor\}; known"
            r" placeholders: \$\{core\}, \$\{ephemeral\}, \$\{orchestration\}",
        ):
            mysql("SELECT * FROM ${cor}.t")

    def test_comments_are_left_alone(self) -> None:
        """Placeholders in comments are neither replaced nor checked."""
        sql = "SELECT 1 -- ${nope} lupopedia.t\n/* ${core} */"
        assert mysql(sql) == sql

    def test_hint_comments_are_rendered(self) -> None:
        """MySQL executable comments are code, so placeholders in them are replaced."""
        assert mysql("/*!40101 USE ${core} */") == "/*!40101 USE app_core */"


class TestRenames:
    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            ("SELECT * FROM `lupopedia`.`t`", "SELECT * FROM `test_db`.`t`"),
            ("SELECT * FROM lupopedia.t", "SELECT * FROM test_db.t"),
            ("SELECT lupopedia . t", "SELECT test_db . t"),
            (
                "INSERT INTO lupopedia.t (a) SELECT a FROM `lupopedia`.u",
                "INSERT INTO test_db.t (a) SELECT a FROM `test_db`.u",
            ),
        ],
    )
    def test_schema_qualifiers_are_rewritten(self, sql: str, expected: str) -> None:
        """A schema name followed by '.' is renamed, keeping its quoting."""
        assert mysql(sql) == expected

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT 'lupopedia.t', \"lupopedia.t\"",  # strings (double quotes too, on MySQL)
            "SELECT 1 -- lupopedia.t",
            "SELECT 1 /* `lupopedia`.t */",
            "SELECT lupopedia FROM t",  # not followed by '.'
            "SELECT x.lupopedia.c FROM t",  # a table named lupopedia inside a qualified name
            "SELECT x.`lupopedia`.c FROM t",
            "SELECT lupopedia_x.t, mylupopedia.t",  # other names that contain it
            "SELECT LUPOPEDIA.t",  # MySQL database names are case-sensitive
        ],
    )
    def test_everything_else_is_left_alone(self, sql: str) -> None:
        """Strings, comments, non-qualifier positions and other names are untouched."""
        assert mysql(sql) == sql

    def test_postgresql_double_quoted_and_folded_names(self) -> None:
        """On PostgreSQL ``"lupopedia".`` is a qualifier and unquoted names fold case."""
        sql = "SELECT \"lupopedia\".t, LUPOPEDIA.u, 'lupopedia.v', $$lupopedia.w$$"
        expected = "SELECT \"test_db\".t, test_db.u, 'lupopedia.v', $$lupopedia.w$$"
        assert render(sql, names={}, renames=RENAMES, dialect="postgresql") == expected

    def test_a_name_needing_quotes_is_quoted(self) -> None:
        """A physical name that is not a plain identifier gets quoted when the original was not."""
        assert mysql("SELECT lupopedia.t", renames={"lupopedia": "a-b"}) == "SELECT `a-b`.t"
        assert mysql("SELECT `lupopedia`.t", renames={"lupopedia": "a`b"}) == "SELECT `a``b`.t"
        assert (
            render("SELECT [lupopedia].t", names={}, renames={"lupopedia": "x]y"}, dialect="sqlite")
            == "SELECT [x]]y].t"
        )

    def test_renames_and_placeholders_together(self) -> None:
        """A rename never touches a placeholder's physical name, and vice versa."""
        names = {"core": "lupopedia"}
        assert (
            mysql("SELECT ${core}.a, lupopedia.b", names=names) == "SELECT lupopedia.a, test_db.b"
        )

    def test_nothing_to_do_returns_the_text(self) -> None:
        """Text with no placeholder and no renamed name comes back unchanged."""
        sql = "SELECT 'unterminated"
        assert mysql(sql) == sql  # not even scanned

    def test_unknown_dialect(self) -> None:
        """An unknown dialect is an InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError, match="unknown SQL dialect"):
            render("SELECT 1", names={}, renames={}, dialect="db2")


def test_quote_identifier() -> None:
    """Identifiers are quoted with backticks on MySQL, double quotes elsewhere."""
    assert quote_identifier("a`b", dialect="mariadb") == "`a``b`"
    assert quote_identifier('a"b', dialect="sqlite") == '"a""b"'


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@given(table=_names, text=st.text(alphabet="ab ;.'`lupoedia-\n", max_size=30))
def test_strings_and_comments_never_change(table: str, text: str) -> None:
    """Whatever is inside a string or comment survives rendering byte for byte."""
    literal = "'" + text.replace("\\", "").replace("'", "''") + "'"
    comment = "/* " + text.replace("*/", "") + " */"
    sql = f"SELECT {literal}, {comment} x FROM lupopedia.{table}"
    out = mysql(sql)
    assert out == f"SELECT {literal}, {comment} x FROM test_db.{table}"
