"""A file applied by lupo_migrate leaves exactly what the engine's own client leaves.

Each case applies the same files to two fresh databases: with the engine's client, one process
per file (``mariadb db < file.sql``, ``psql -v ON_ERROR_STOP=1 -f file.sql``,
``sqlite3 db < file.sql``), and with ``lupo-migrate apply``; then it compares what a query reads
from both. The files use what a session remembers between statements: ``LAST_INSERT_ID()``,
``ROW_COUNT()``, ``FOUND_ROWS()``, the warnings, user variables and session settings on
MariaDB; ``lastval()``, ``currval()`` and settings on PostgreSQL; ``last_insert_rowid()`` and
``changes()`` on SQLite. lupo_migrate's own writes (journal, ledger, run state, savepoints) run
on the same connection as the files' statements; none of them may show through, and a file
must start from a session as fresh as the client's.

A case whose file fails under the client must fail at the same file under lupo_migrate (then
the run rolls back, so only the failing file is compared).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from databases import fresh_database
from lupo_migrate.run.shared import _commits_nothing
from lupo_migrate.sql.session_state import changes_session


@attrs.frozen
class Case:
    """Files applied in order (each list of *runs* is one ``apply``; the client runs each file
    in a process of its own anyway), and the query whose rows must be the same."""

    files: tuple[str, ...]
    query: str
    runs: tuple[int, ...] = ()  # where a new ``apply`` starts (file indexes); none: one run


#: Asserts that lupo_migrate leaves what the client leaves: (engine kind, case).
Check = Callable[[str, Case], None]


@attrs.frozen
class Result:
    failed: int | None  # the index of the first file that failed, or None
    rows: tuple[tuple[Any, ...], ...] = ()


CLIENTS = {"mariadb": "mariadb", "postgresql": "psql", "sqlite": "sqlite3"}


def _client_command(kind: str, url: str) -> list[str]:
    parsed = sa.make_url(url)
    if kind == "mariadb":
        command = ["mariadb", "--protocol=TCP", "-h", parsed.host or "127.0.0.1"]
        command += ["-P", str(parsed.port or 3306), "-u", parsed.username or "root"]
        if parsed.password:
            command.append(f"-p{parsed.password}")
        return [*command, str(parsed.database)]
    if kind == "postgresql":
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", parsed.host or "127.0.0.1"]
        command += ["-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
        return [*command, "-d", str(parsed.database), "-f", "-"]
    return ["sqlite3", str(parsed.database)]


def client_apply(kind: str, url: str, files: Sequence[str]) -> int | None:
    """Apply *files* with the engine's client, one process per file; the first that fails."""
    command = _client_command(kind, url)
    for index, text in enumerate(files):
        done = subprocess.run(command, input=text, text=True, capture_output=True, check=False)
        # sqlite3 reads a script from stdin to its end and exits 0 after an error: its
        # error message on stderr is the failure.
        if done.returncode != 0 or (kind == "sqlite" and "Error" in done.stderr):
            return index
    return None


def lupo_apply(
    url: str, files: Sequence[str], runs: Sequence[int], directory: Path
) -> tuple[int | None, str]:
    """Apply *files* with ``lupo-migrate apply`` (a new run at each index of *runs*); the
    first file whose step failed, and what the command printed."""
    directory.mkdir()
    printed = []
    starts = sorted({0, *runs})
    for at, start in enumerate(starts):
        end = starts[at + 1] if at + 1 < len(starts) else len(files)
        for index in range(start, end):
            (directory / f"{index:03d}_step.sql").write_text(files[index])
        # The CLI as a user runs it; its output tells which step failed.
        done = subprocess.run(
            [sys.executable, "-m", "lupo_migrate", "apply", str(directory), "--db", url],
            text=True,
            capture_output=True,
            check=False,
        )
        printed.append(done.stdout + done.stderr)
        if done.returncode != 0:
            failed = [i for i in range(start, end) if f"{i:03d}_step" in printed[-1]]
            return (failed[0] if failed else -1), "\n".join(printed)
    return None, "\n".join(printed)


def read(url: str, query: str) -> tuple[tuple[Any, ...], ...]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return tuple(tuple(row) for row in conn.exec_driver_sql(query))
    finally:
        engine.dispose()


def compare(kind: str, case: Case, tmp_path: Path) -> tuple[Result, Result, str]:
    """(the client's result, lupo_migrate's, what lupo-migrate printed) for *case*."""
    if shutil.which(CLIENTS[kind]) is None:
        pytest.skip(f"the {CLIENTS[kind]} client is not installed")
    (tmp_path / "client").mkdir()
    (tmp_path / "lupo").mkdir()
    with (
        fresh_database(kind, tmp_path / "client") as client_url,
        fresh_database(kind, tmp_path / "lupo") as lupo_url,
    ):
        failed = client_apply(kind, client_url, case.files)
        client = Result(failed, () if failed is not None else read(client_url, case.query))
        failed, printed = lupo_apply(lupo_url, case.files, case.runs, tmp_path / "migrations")
        lupo = Result(failed, () if failed is not None else read(lupo_url, case.query))
    return client, lupo, printed


@pytest.fixture(name="same_as_client")
def _same_as_client(tmp_path: Path) -> Check:
    """Asserts that lupo_migrate leaves what the client leaves for a case on an engine."""

    def check(kind: str, case: Case) -> None:
        client, lupo, printed = compare(kind, case, tmp_path)
        assert lupo == client, printed

    return check


# --------------------------------------------------------------------------- MariaDB

MYSQL_CASES = {
    "last_insert_id_in_a_file": Case(
        (
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "INSERT INTO t (ref) VALUES (0);\n"
            "SET @x = LAST_INSERT_ID();\n"
            "INSERT INTO t (ref) VALUES (@x);\n",
        ),
        "SELECT id, ref FROM t ORDER BY id",
    ),
    "last_insert_id_across_a_ddl_statement": Case(
        (
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "INSERT INTO t (ref) VALUES (0), (0), (0);\n"
            "CREATE TABLE u (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "INSERT INTO u (ref) VALUES (LAST_INSERT_ID());\n"
            "ALTER TABLE u ADD COLUMN note INT;\n"
            "INSERT INTO t (ref) VALUES (LAST_INSERT_ID());\n",
        ),
        "SELECT 't', id, ref, NULL FROM t UNION ALL SELECT 'u', id, ref, note FROM u ORDER BY 1, 2",
    ),
    "session_functions_at_a_files_start": Case(
        (
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE s (lii BIGINT, rc BIGINT, fr BIGINT, w BIGINT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n"
            "SELECT * FROM t;\n"
            "DO CAST('x' AS INT);\n",
            # A fresh session: what each function says before anything ran in it.
            # (FOUND_ROWS() has no value of its own there: a new session reads whatever the
            # server's reused thread last had, for the client too.)
            "SET @w = @@warning_count;\n"
            "INSERT INTO s VALUES (LAST_INSERT_ID(), ROW_COUNT(), 0, @w);\n",
        ),
        "SELECT lii, rc, fr, w FROM s",
    ),
    "session_functions_at_the_start_of_a_later_run": Case(
        (
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE s (lii BIGINT, rc BIGINT, fr BIGINT);\n",
            "INSERT INTO t (ref) VALUES (5), (6);\n"
            "INSERT INTO s VALUES (LAST_INSERT_ID(), ROW_COUNT(), 0);\n"
            "INSERT INTO t (ref) VALUES (LAST_INSERT_ID());\n",
        ),
        "SELECT 0, lii, rc, fr FROM s UNION ALL SELECT id, ref, NULL, NULL FROM t ORDER BY 1",
        runs=(1,),
    ),
    "session_functions_on_tables_that_existed_before_the_run": Case(
        (
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE s (id INT AUTO_INCREMENT PRIMARY KEY, v INT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n"
            "INSERT INTO s (v) VALUES (1), (2), (3), (4), (5);\n",
            # The first statement touching t comes after s changed: t's pre-image is taken
            # between them.
            "INSERT INTO s (v) VALUES (7);\n"
            "INSERT INTO t (ref) SELECT LAST_INSERT_ID();\n"
            "UPDATE s SET v = v + 1 WHERE id > 3;\n"
            "INSERT INTO t (ref) VALUES (ROW_COUNT());\n",
        ),
        "SELECT 't', id, ref FROM t UNION ALL SELECT 's', id, v FROM s ORDER BY 1, 2",
        runs=(1,),
    ),
    "row_count": Case(
        (
            "CREATE TABLE t (a BIGINT);\n"
            "INSERT INTO t VALUES (1), (2), (3);\n"
            "UPDATE t SET a = a * 10 WHERE a > 1;\n"
            "SET @n = ROW_COUNT();\n"
            "INSERT INTO t VALUES (@n);\n"
            "DELETE FROM t WHERE a = 1;\n"
            "INSERT INTO t VALUES (ROW_COUNT());\n"
            "SELECT a FROM t;\n"
            "INSERT INTO t VALUES (ROW_COUNT());\n",
        ),
        "SELECT a FROM t ORDER BY a",
    ),
    "found_rows": Case(
        (
            "CREATE TABLE t (a BIGINT);\n"
            "INSERT INTO t VALUES (1), (2), (3);\n"
            "SELECT SQL_CALC_FOUND_ROWS a FROM t LIMIT 1;\n"
            "INSERT INTO t VALUES (FOUND_ROWS());\n"
            "SELECT a FROM t WHERE a < 3;\n"
            "INSERT INTO t VALUES (100 + FOUND_ROWS());\n",
        ),
        "SELECT a FROM t ORDER BY a",
    ),
    "warnings": Case(
        (
            "CREATE TABLE t (a BIGINT);\n"
            "DO CAST('x' AS INT), CAST('y' AS INT);\n"
            "SET @w = @@warning_count;\n"
            "INSERT INTO t VALUES (@w);\n"
            "INSERT IGNORE INTO t VALUES (CAST('z' AS INT));\n"
            "SET @w = @@warning_count;\n"
            "INSERT INTO t VALUES (@w);\n",
        ),
        "SELECT a FROM t ORDER BY a",
    ),
    "a_user_variable_does_not_reach_the_next_file": Case(
        (
            "SET @v = 42;\nCREATE TABLE t (a BIGINT);\nINSERT INTO t VALUES (@v);\n",
            "INSERT INTO t VALUES (@v);\n",
            "SELECT @u := 7;\nINSERT INTO t VALUES (@u);\n",
            "INSERT INTO t VALUES (@u);\n",
        ),
        "SELECT COALESCE(a, -1) FROM t ORDER BY 1",
    ),
    "sql_mode_does_not_reach_the_next_file": Case(
        (
            "SET SQL_MODE = 'NO_AUTO_VALUE_ON_ZERO';\n"
            "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v INT);\n"
            "INSERT INTO a VALUES (0, 1);\n",
            "CREATE TABLE b (id INT AUTO_INCREMENT PRIMARY KEY, v INT);\n"
            "INSERT INTO b VALUES (0, 2);\n",
        ),
        "SELECT 'a', id, v FROM a UNION ALL SELECT 'b', id, v FROM b ORDER BY 1, 2",
    ),
    "a_mysqldump_header_does_not_reach_the_next_file": Case(
        (
            "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n"
            "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v INT);\n"
            "INSERT INTO a VALUES (0, 1);\n",
            "CREATE TABLE b (id INT AUTO_INCREMENT PRIMARY KEY, v INT);\n"
            "INSERT INTO b VALUES (0, 2);\n",
        ),
        "SELECT 'a', id, v FROM a UNION ALL SELECT 'b', id, v FROM b ORDER BY 1, 2",
    ),
    "foreign_key_checks_do_not_reach_the_next_file": Case(
        (
            "SET FOREIGN_KEY_CHECKS = 0;\n"
            "CREATE TABLE p (id INT PRIMARY KEY);\n"
            "CREATE TABLE c (p INT, FOREIGN KEY (p) REFERENCES p (id));\n",
            "CREATE TABLE k (v INT);\n"
            "INSERT INTO k VALUES (@@SESSION.foreign_key_checks);\n"
            "INSERT IGNORE INTO c VALUES (99);\n",
        ),
        "SELECT 'k', v FROM k UNION ALL SELECT 'c', p FROM c ORDER BY 1",
    ),
}


@pytest.mark.mariadb
@pytest.mark.parametrize("name", sorted(MYSQL_CASES))
def test_mariadb_session_state_is_the_clients(name: str, same_as_client: Check) -> None:
    same_as_client("mariadb", MYSQL_CASES[name])


# --------------------------------------------------------------------------- PostgreSQL

POSTGRESQL_CASES = {
    "lastval_in_a_file": Case(
        (
            "CREATE TABLE t (id SERIAL PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE u (what TEXT, ref BIGINT);\n"
            "INSERT INTO t (ref) VALUES (0);\n"
            "INSERT INTO u VALUES ('lastval', lastval());\n"
            "INSERT INTO u VALUES ('currval', currval('t_id_seq'));\n"
            "CREATE TABLE v (a INT);\n"
            "INSERT INTO u VALUES ('after DDL', lastval());\n",
        ),
        "SELECT what, ref FROM u ORDER BY what",
    ),
    "lastval_at_a_files_start_is_not_defined": Case(
        (
            "CREATE TABLE t (id SERIAL PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE u (ref BIGINT);\n"
            "INSERT INTO t (ref) VALUES (0);\n",
            "INSERT INTO u VALUES (lastval());\n",
        ),
        "SELECT ref FROM u",
    ),
    "currval_at_a_files_start_is_not_defined": Case(
        (
            "CREATE TABLE t (id SERIAL PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE u (ref BIGINT);\n"
            "INSERT INTO t (ref) VALUES (0);\n",
            "INSERT INTO u VALUES (currval('t_id_seq'));\n",
        ),
        "SELECT ref FROM u",
    ),
    "lastval_on_tables_that_existed_before_the_run": Case(
        (
            "CREATE TABLE t (id SERIAL PRIMARY KEY, ref BIGINT);\n"
            "CREATE TABLE s (id SERIAL PRIMARY KEY, v INT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n"
            "INSERT INTO s (v) VALUES (1), (2), (3), (4), (5);\n",
            "INSERT INTO s (v) VALUES (7);\nINSERT INTO t (ref) SELECT lastval();\n",
        ),
        "SELECT 't', id, ref FROM t UNION ALL SELECT 's', id, v FROM s ORDER BY 1, 2",
        runs=(1,),
    ),
    "search_path_does_not_reach_the_next_file": Case(
        (
            "CREATE SCHEMA s;\nSET search_path = s, public;\nCREATE TABLE s.a (x INT);\n",
            "CREATE TABLE b (path TEXT);\nINSERT INTO b VALUES (current_setting('search_path'));\n",
        ),
        "SELECT table_schema, table_name, (SELECT max(path) FROM public.b)"
        " FROM information_schema.tables WHERE table_schema IN ('public', 's') ORDER BY 1, 2",
    ),
    "a_setting_does_not_reach_the_next_file": Case(
        (
            "SET app.flag = 'on';\nCREATE TABLE t (v TEXT);\n"
            "INSERT INTO t VALUES (current_setting('app.flag', true));\n",
            "INSERT INTO t VALUES (coalesce(current_setting('app.flag', true), 'unset'));\n",
        ),
        "SELECT coalesce(v, 'null') FROM t ORDER BY 1",
    ),
}


@pytest.mark.postgresql
@pytest.mark.parametrize("name", sorted(POSTGRESQL_CASES))
def test_postgresql_session_state_is_the_clients(name: str, same_as_client: Check) -> None:
    same_as_client("postgresql", POSTGRESQL_CASES[name])


# --------------------------------------------------------------------------- SQLite

SQLITE_CASES = {
    "last_insert_rowid_and_changes_in_a_file": Case(
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, ref INT);\n"
            "INSERT INTO t (ref) VALUES (0);\n"
            "INSERT INTO t (ref) VALUES (last_insert_rowid());\n"
            "UPDATE t SET ref = ref + 1;\n"
            "INSERT INTO t (ref) VALUES (changes());\n",
        ),
        "SELECT id, ref FROM t ORDER BY id",
    ),
    "last_insert_rowid_and_changes_at_a_files_start": Case(
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, ref INT);\n"
            "CREATE TABLE s (lir INT, c INT, tc INT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n",
            "INSERT INTO s VALUES (last_insert_rowid(), changes(), total_changes());\n",
        ),
        "SELECT lir, c, tc FROM s",
    ),
    "a_temporary_table_does_not_reach_the_next_file": Case(
        (
            "CREATE TEMP TABLE x (a INT);\nCREATE TABLE t (a INT);\nINSERT INTO t VALUES (1);\n",
            "CREATE TEMP TABLE x (a INT);\nINSERT INTO t VALUES (2);\n",
        ),
        "SELECT a FROM t ORDER BY a",
    ),
    "a_pragma_does_not_reach_the_next_file": Case(
        (
            "PRAGMA case_sensitive_like = ON;\nCREATE TABLE t (a INT);\n",
            "INSERT INTO t VALUES ('a' LIKE 'A');\n",
        ),
        "SELECT a FROM t ORDER BY a",
    ),
}


@pytest.mark.parametrize("name", sorted(SQLITE_CASES))
def test_sqlite_session_state_is_the_clients(name: str, same_as_client: Check) -> None:
    same_as_client("sqlite", SQLITE_CASES[name])


#: SQLite, on tables that existed before the run: their pre-images are taken on the step's
#: connection, which changes what last_insert_rowid(), changes() and total_changes() read.
PRE_IMAGE_CASES = {
    "after_a_tables_first_touch": Case(
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, ref INT);\n"
            "CREATE TABLE s (id INTEGER PRIMARY KEY, v INT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n"
            "INSERT INTO s (v) VALUES (1), (2), (3), (4), (5);\n",
            "INSERT INTO s (v) VALUES (7);\n"
            "INSERT INTO t (ref) SELECT last_insert_rowid();\n"
            "UPDATE s SET v = v + 1 WHERE id > 3;\n"
            "INSERT INTO t (ref) VALUES (changes());\n",
        ),
        "SELECT 't', id, ref FROM t UNION ALL SELECT 's', id, v FROM s ORDER BY 1, 2",
        runs=(1,),
    ),
    "at_a_files_start": Case(
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, ref INT);\n"
            "CREATE TABLE s (lir INT, c INT, tc INT);\n"
            "INSERT INTO t (ref) VALUES (1), (2), (3);\n",
            "INSERT INTO s VALUES (last_insert_rowid(), changes(), total_changes());\n",
        ),
        "SELECT lir, c, tc FROM s",
        runs=(1,),
    ),
}


@pytest.mark.parametrize("name", sorted(PRE_IMAGE_CASES))
def test_sqlite_session_functions_on_tables_that_existed_before_the_run(
    name: str, same_as_client: Check
) -> None:
    same_as_client("sqlite", PRE_IMAGE_CASES[name])


# --------------------------------------------------------------------------- what lupo sets

#: Session values read in a file; lupo_migrate's own where it sets one (docs/sessions.md).
SESSION_VALUES = {
    "mariadb": (
        "sql_mode", "foreign_key_checks", "unique_checks", "time_zone", "autocommit",
        "lock_wait_timeout", "innodb_lock_wait_timeout", "tx_isolation", "max_statement_time",
        "sql_auto_is_null", "character_set_client", "character_set_connection",
        "character_set_results", "collation_connection", "div_precision_increment",
        "group_concat_max_len", "sql_select_limit", "sql_safe_updates", "big_tables",
        "sql_notes", "sql_warnings", "tx_read_only", "check_constraint_checks",
        "explicit_defaults_for_timestamp", "default_storage_engine",
    ),
    "postgresql": (
        "search_path", "TimeZone", "DateStyle", "IntervalStyle", "lock_timeout",
        "statement_timeout", "idle_in_transaction_session_timeout", "client_encoding",
        "standard_conforming_strings", "default_transaction_isolation", "transaction_isolation",
        "application_name", "extra_float_digits", "bytea_output", "role",
        "session_replication_role", "synchronous_commit", "row_security",
        "check_function_bodies", "default_transaction_read_only", "client_min_messages",
    ),
    "sqlite": (
        "foreign_keys", "recursive_triggers", "busy_timeout", "defer_foreign_keys",
        "automatic_index", "query_only", "reverse_unordered_selects", "trusted_schema",
        "temp_store", "cache_size", "encoding", "legacy_alter_table", "secure_delete",
    ),
}  # fmt: skip
LUPO_SETS = {
    "mariadb": {
        "autocommit": "0",
        "lock_wait_timeout": "5",
        "character_set_client": "utf8mb4",
        "character_set_connection": "utf8mb4",
        "character_set_results": "utf8mb4",
        "collation_connection": "utf8mb4_",  # the server's default utf8mb4 collation
    },
    "postgresql": {"lock_timeout": "5s", "application_name": ""},
    "sqlite": {"busy_timeout": "10000"},
}


def _session_values_file(kind: str) -> str:
    names = SESSION_VALUES[kind]
    if kind == "mariadb":
        rows = ", ".join(f"('{n}', @@SESSION.{n})" for n in names)
        table = "CREATE TABLE v (name VARCHAR(64), value VARCHAR(1024));\n"
        return f"{table}INSERT INTO v VALUES {rows};\n"
    if kind == "postgresql":
        rows = ", ".join(f"('{n}', current_setting('{n}'))" for n in names)
        return f"CREATE TABLE v (name TEXT, value TEXT);\nINSERT INTO v VALUES {rows};\n"
    reads = "".join(f"INSERT INTO v SELECT '{n}', * FROM pragma_{n};\n" for n in names)
    return f"CREATE TABLE v (name TEXT, value TEXT);\n{reads}"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        "sqlite",
    ],
)
def test_a_file_sees_the_clients_session_but_for_what_lupo_sets(kind: str, tmp_path: Path) -> None:
    """The session values a file reads are the client's, except those docs/sessions.md lists
    (the short lock wait, the transaction, the character set...), which are lupo_migrate's."""
    case = Case((_session_values_file(kind),), "SELECT name, value FROM v ORDER BY 1")
    client, lupo, printed = compare(kind, case, tmp_path)
    assert client.failed is None
    assert lupo.failed is None, printed
    theirs = {name: str(value) for name, value in client.rows}
    ours = {name: str(value) for name, value in lupo.rows}
    assert set(ours) == set(SESSION_VALUES[kind])
    differ = {name for name in ours if ours[name] != theirs[name]}
    assert differ <= set(LUPO_SETS[kind]), {n: (theirs[n], ours[n]) for n in differ}
    for name, value in LUPO_SETS[kind].items():
        assert ours[name].startswith(value) if value.endswith("_") else ours[name] == value


# --------------------------------------------------------------------------- the classifiers


@pytest.mark.parametrize(
    ("statement", "family", "changes"),
    [
        ("SET @x = 1", "mysql", True),
        ("SELECT @u := 7", "mysql", True),
        ("SELECT a INTO @v FROM t", "mysql", True),
        (
            "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */",
            "mysql",
            True,
        ),
        ("SET SESSION sql_mode = ''", "mysql", True),
        ("USE other", "mysql", True),
        ("CREATE TEMPORARY TABLE x (a INT)", "mysql", True),
        ("SELECT GET_LOCK('a', 1)", "mysql", True),
        ("INSERT INTO t VALUES (@x, @@foreign_key_checks)", "mysql", False),
        ("CREATE TABLE t (a VARCHAR(3) CHARACTER SET utf8)", "mysql", False),
        ("CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH (a) */", "mysql", False),
        ("UPDATE t SET a = 1 -- SET @x = 1", "mysql", False),
        ("INSERT INTO t VALUES ('SET @x = 1')", "mysql", False),
        ("SET search_path = s", "postgresql", True),
        ("RESET ALL", "postgresql", True),
        ("CREATE TEMP TABLE x (a int)", "postgresql", True),
        ("SELECT set_config('a.b', '1', false)", "postgresql", True),
        ("SELECT 1 INTO TEMP t", "postgresql", True),
        ("SET LOCAL lock_timeout = '1s'", "postgresql", False),
        ("SET CONSTRAINTS ALL DEFERRED", "postgresql", False),
        ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "postgresql", False),
        ("UPDATE t SET a = 1", "postgresql", False),
    ],
)
def test_which_statements_change_their_session(statement: str, family: str, changes: bool) -> None:
    assert changes_session(statement, family) is changes


@pytest.mark.parametrize(
    ("statement", "quiet"),
    [
        ("SET @x = LAST_INSERT_ID()", True),
        ("SET SESSION sql_mode = ''", True),
        ("  -- a comment\nSELECT 1", True),
        ("DO CAST('x' AS INT)", True),
        ("SHOW WARNINGS", True),
        ("INSERT INTO t VALUES (1)", True),
        ("set autocommit = 1", False),  # commits what is pending
        ("SET PASSWORD = PASSWORD('x')", False),
        ("SET STATEMENT max_statement_time = 1 FOR ALTER TABLE t ADD c INT", False),
        ("/*!40101 SET NAMES utf8 */", False),  # not looked into: announced first, as DDL
        ("ALTER TABLE t ADD c INT", False),
        ("CREATE TABLE u AS SELECT 1", False),
    ],
)
def test_which_statements_cannot_commit_on_their_own(statement: str, quiet: bool) -> None:
    """Their journal rows wait with the step's other held writes (MySQL)."""
    assert _commits_nothing(statement) is quiet
