"""The lupo-migrate command line: output, exit codes and errors, as a user sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import needs_corpus
from lupo_migrate import errors
from lupo_migrate.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"
CORPUS = ROOT.parent / "shared" / "corpus" / "lupopedia"
CORPUS_MANIFEST = ROOT / "examples" / "corpus-manifest.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class TestPlan:
    def test_quickstart_plan_lists_order_generations_types_and_checksums(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Four steps in three generations, each with its type and a checksum prefix."""
        code, out, _ = run(capsys, "plan", str(QUICKSTART))
        assert code == 0
        lines = out.splitlines()
        assert lines[0].endswith("4 step(s) in 3 generation(s)")
        ids = [line.split()[2] for line in lines[2:]]
        assert ids == ["create_authors", "create_posts", "seed_authors", "add_post_status"]
        assert all(" doctrine " in line for line in lines[2:])

    def test_json_output_is_machine_readable(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--format json gives steps with full checksums and the generations."""
        code, out, _ = run(capsys, "plan", str(QUICKSTART), "--format", "json")
        data = json.loads(out)
        assert code == 0
        assert [len(s["checksum"]) for s in data["steps"]] == [64] * 4
        assert data["generations"] == [
            ["create_authors"],
            ["create_posts", "seed_authors"],
            ["add_post_status"],
        ]

    def test_upto_plans_only_a_step_and_what_it_needs(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--upto create_posts leaves out the seed and the later column."""
        code, out, _ = run(capsys, "plan", str(QUICKSTART), "--upto", "create_posts")
        assert code == 0
        assert "2 step(s)" in out.splitlines()[0]

    @needs_corpus
    def test_corpus_plan_with_its_manifest(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The 16 corpus migrations plan in version order, the dated files after 4.1.x."""
        code, out, _ = run(
            capsys, "plan", str(CORPUS / "migrations"), "--manifest", str(CORPUS_MANIFEST)
        )
        assert code == 0
        ids = [line.split()[2] for line in out.splitlines()[2:]]
        assert len(ids) == 16
        assert ids[0] == "4.0.113_add_seven_love_agents"
        assert ids[-1] == "4.4.1_create_actor_moods_table"
        assert ids.index("20260120_drop_legacy_tables_and_set_limit_4.1.17") < ids.index(
            "4.2.0_add_genesis_doctrine_tables"
        )

    def test_a_cycle_exits_with_the_plan_code_and_names_the_cycle(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """a needs b, b needs a: exit 6 and both ids in the one-line error."""
        (tmp_path / "a.sql").write_text("-- depends_on: [b]\nSELECT 1;\n")
        (tmp_path / "b.sql").write_text("-- depends_on: [a]\nSELECT 1;\n")
        code, _, err = run(capsys, "plan", str(tmp_path))
        assert code == errors.PlanError.exit_code == 6
        assert err.startswith("error: dependency cycle:")
        assert "a -> b -> a" in err or "b -> a -> b" in err

    def test_a_missing_directory_is_one_line_saying_what_to_do(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No traceback, exit 5, the path in the message."""
        code, out, err = run(capsys, "plan", str(tmp_path / "nope"))
        assert code == errors.MigrationFileError.exit_code
        assert out == ""
        assert err.count("\n") == 1
        assert str(tmp_path / "nope") in err

    def test_traceback_flag_re_raises(self, tmp_path: Path) -> None:
        """--traceback shows the real exception instead of the one-line error."""
        with pytest.raises(errors.DiscoveryError):
            main(["--traceback", "plan", str(tmp_path / "nope")])


class TestCheck:
    @needs_corpus
    def test_corpus_docs_all_read_and_not_strict_ones_are_listed(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """All 40 headers read; the not-strict ones are named with a line; exit 0."""
        code, out, err = run(capsys, "check", str(CORPUS / "docs"))
        assert code == 0
        assert "checked 40 file(s)" in out
        assert "0 error(s)" in out
        not_strict = [line for line in out.splitlines() if line.startswith("warning:")]
        assert len(not_strict) >= 30
        assert any(line.startswith("warning: ANIBUS_DOCTRINE.md:") for line in not_strict)
        assert f"{len(not_strict)} header(s) not strict YAML" in out
        assert err == ""

    @needs_corpus
    def test_strict_fails_on_lenient_headers(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--strict turns 'not strict YAML' into a failing check (exit 5)."""
        code, _, err = run(capsys, "check", "--strict", str(CORPUS / "docs"))
        assert code == errors.MigrationFileError.exit_code
        assert "header(s) not strict YAML" in err

    def test_every_bad_file_is_reported_at_once(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Two broken files: both named with their line, exit 5."""
        (tmp_path / "a.md").write_text("---\nid: a\nx: &anchor 1\ny: *anchor\n---\n")
        (tmp_path / "b.sql").write_text("-- id: b\n-- depends_on: [unclosed\nSELECT 1;\n")
        (tmp_path / "c.sql").write_bytes(b"SELECT '\xff';\n")
        code, out, _ = run(capsys, "check", str(tmp_path))
        assert code == 5
        errors_out = [line for line in out.splitlines() if line.startswith("error:")]
        assert {line.split(":")[1].strip() for line in errors_out} >= {"a.md", "b.sql", "c.sql"}


class TestHelp:
    def test_help_explains_each_command_and_the_exit_codes(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--help lists plan and check; a command's help lists the exit codes."""
        code, out, _ = run(capsys, "--help")
        assert code == 0
        assert "plan" in out
        assert "check" in out
        help_text = " ".join(out.split())
        assert "6 plan" in help_text
        assert "130 stopped by Ctrl-C" in help_text
        code, out, _ = run(capsys, "plan", "--help")
        assert "Exit codes: 0 ok; `lupo-migrate --help` lists the others." in " ".join(out.split())
        assert "6 plan" not in out  # said once, in the main help
        for code_ in {type_.exit_code for type_ in _error_types()}:
            assert f" {code_} " in help_text, f"exit code {code_} missing from --help"

    def test_an_unknown_option_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """click's usage errors exit 2."""
        code, _, err = run(capsys, "plan", "--bogus", str(QUICKSTART))
        assert code == 2
        assert "No such option" in err


def test_console_script_runs_as_a_module() -> None:
    """python -m lupo_migrate is the same program, with the same exit codes."""
    done = subprocess.run(
        [sys.executable, "-m", "lupo_migrate", "plan", str(QUICKSTART)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "create_authors" in done.stdout


def test_the_process_ends_without_teardown_but_with_its_output_atexit_and_exit_code(
    tmp_path: Path,
) -> None:
    """The entry point ends the process at once (no interpreter teardown) after the atexit
    handlers ran and the streams were flushed; another thread still running is waited for."""
    marks = tmp_path / "marks"
    script = (
        "import atexit, os, sys, threading, time\n"
        f"fd = os.open({str(marks)!r}, os.O_WRONLY | os.O_APPEND)\n"
        "atexit.register(os.write, fd, b'atexit ')\n"
        "class Teardown:\n"
        "    def __del__(self, write=os.write, fd=fd):\n"
        "        write(fd, b'teardown ')\n"
        "kept = Teardown()\n"
        "if sys.argv[1] == 'thread':\n"
        "    def late():\n"
        "        time.sleep(0.3); os.write(fd, b'thread ')\n"
        "    threading.Thread(target=late).start()\n"
        "sys.argv = ['lupo-migrate', *sys.argv[2:]]\n"
        "from lupo_migrate.cli.entry import run\n"
        "run()\n"
    )

    def ran(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        marks.write_text("")
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            check=False,
            env=buffered,  # a pipe is then block-buffered: what is written must be flushed
        )
        return done, marks.read_text().split()

    apply = ("apply", str(QUICKSTART), "--db", f"sqlite:///{tmp_path / 'q.db'}")
    done, seen = ran("-", *apply)
    assert done.returncode == 0, done.stderr
    assert seen == ["atexit"]  # no teardown
    done, seen = ran("-", *apply)  # answered by the quick path, written unflushed
    assert done.stdout == "nothing to do: all 4 migration(s) already applied\n"
    assert seen == ["atexit"]
    done, seen = ran("-", "apply", str(tmp_path / "missing"))
    assert done.returncode == 5
    assert "does not exist" in done.stderr
    done, seen = ran("thread", "plan", str(QUICKSTART))
    assert done.returncode == 0
    assert seen[:2] == ["thread", "atexit"]  # the usual exit: the thread was waited for


@pytest.mark.slow
def test_plan_of_a_10000_file_tree_and_a_malformed_file_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 generated files plan; one malformed header is then reported by path and line."""
    for i in range(10_000):
        folder = tmp_path / f"d{i // 500:02d}"
        folder.mkdir(exist_ok=True)
        deps = f"-- depends_on: [s{i - 1}]\n" if i % 3 and i else ""
        (folder / f"{i:05d}_s.sql").write_text(f"-- id: s{i}\n{deps}SELECT {i};\n")
    code, out, _ = run(capsys, "plan", str(tmp_path))
    assert code == 0
    assert out.splitlines()[0].endswith("10000 step(s) in " + out.splitlines()[0].split(" in ")[-1])
    assert len(out.splitlines()) == 10_002
    (tmp_path / "d07" / "03601_s.sql").write_text("-- id: s3601\n-- depends_on: [oops\nSELECT 1;\n")
    code, _, err = run(capsys, "plan", str(tmp_path))
    assert code == 5
    assert "d07/03601_s.sql:2" in err


def _error_types() -> list[type[errors.LupoMigrateError]]:
    """Every error class of lupo_migrate.errors (each has an exit code)."""
    return [
        obj
        for name in errors.__all__
        if isinstance(obj := getattr(errors, name), type)
        and issubclass(obj, errors.LupoMigrateError)
    ]


class TestQuickEntry:
    """``lupo-migrate apply`` with nothing pending is answered before click is loaded."""

    def test_only_plain_apply_arguments_take_the_quick_path(self) -> None:
        from lupo_migrate.cli.entry import _options

        assert _options(["apply", "m", "--db", "sqlite:///x.db"]) == {
            "directory": "m",
            "db": "sqlite:///x.db",
        }
        assert _options(["apply", "--db=u", "--target", "t", "--progress", "off"]) == {
            "db": "u",
            "target_name": "t",
            "progress": "off",
        }
        assert _options(
            ["apply", "m", "--table-budget", "250", "--allow-drift", "--forbid", "x", "--forbid=y"]
        ) == {"directory": "m"}
        for args in (
            ["apply", "m", "--table-budget", "many"],
            ["apply", "m", "--rename", "nothing"],
            ["apply", "m", "--metrics-port", "70000"],
            ["status", "m"],
            ["apply", "m", "--upto", "V1"],
            ["apply", "m", "--dry-run"],
            ["apply", "m", "n"],
            ["apply", "m", "--db"],
            ["apply", "--db", "a", "--db", "b"],
            ["apply", "--progress", "loud"],
            ["apply", "-h"],
        ):
            assert _options(args) is None, args

    def test_a_rerun_prints_the_same_without_click_and_anything_else_runs_in_full(
        self, tmp_path: Path
    ) -> None:
        import subprocess
        import sys

        url = f"sqlite:///{tmp_path / 'q.db'}"
        script = (
            "import sys\n"
            "from lupo_migrate.cli.entry import main\n"
            f"code = main(['apply', {str(QUICKSTART)!r}, '--db', {url!r}])\n"
            "print('click loaded' if 'click' in sys.modules else 'no click', code)\n"
        )
        first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[-1] == "click loaded 0"  # it had work to do
        again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert again.stdout.splitlines() == [
            "nothing to do: all 4 migration(s) already applied",
            "no click 0",
        ]

    def test_the_files_are_read_once_when_the_quick_look_hands_over_to_the_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from lupo_migrate.cli import entry as _entry
        from lupo_migrate.files import discover
        from lupo_migrate.session import fast_path

        reads: list[Path] = []
        load = discover.load_steps

        def counted(root: Path, **kwargs: Any) -> Any:
            reads.append(Path(root))
            return load(root, **kwargs)

        monkeypatch.setattr(discover, "load_steps", counted)
        url = f"sqlite:///{tmp_path / 'q.db'}"
        assert _entry.main(["apply", str(QUICKSTART), "--db", url]) == 0
        assert "completed, 4 of 4" in capsys.readouterr().out
        assert reads == [QUICKSTART]  # the quick look's read, taken by the command
        assert fast_path._READ == []
        assert _entry.main(["apply", str(QUICKSTART), "--db", url]) == 0
        assert capsys.readouterr().out.startswith("nothing to do")
        assert len(reads) == 2
        assert fast_path._READ == []


class TestDatabaseUrls:
    """The URLs users type: without a driver they open with the one lupo_migrate installs;
    a driver that is not installed, or no URL at all, is one line saying what works."""

    @pytest.mark.parametrize(
        ("typed", "opened"),
        [
            ("mysql://root@127.0.0.1/app", "mysql+pymysql"),
            ("mariadb://root@127.0.0.1/app", "mysql+pymysql"),
            ("MySQL://root@127.0.0.1/app", "mysql+pymysql"),
            ("postgresql://postgres@127.0.0.1/app", "postgresql+psycopg2"),
            ("postgres://postgres@127.0.0.1/app", "postgresql+psycopg2"),
            ("mysql+mysqldb://root@127.0.0.1/app", "mysql+mysqldb"),  # as written
            ("sqlite:///app.db", "sqlite"),
        ],
    )
    def test_a_url_without_a_driver_gets_the_installed_one(self, typed: str, opened: str) -> None:
        from lupo_migrate.backends.sqlalchemy.target import usable_url

        assert usable_url(typed).drivername == opened

    def test_the_urls_users_type_apply_on_every_engine(
        self, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        typed = database_url.replace("+pymysql", "").replace("postgresql+psycopg2", "postgres")
        code, out, err = run(capsys, "apply", str(QUICKSTART), "--db", typed)
        assert code == 0, err
        assert "completed, 4 of 4 step(s) applied" in out

    @pytest.mark.parametrize(
        ("url", "said"),
        [
            (
                "mysql+mysqldb://root@127.0.0.1/app",
                "names a driver that is not installed (MySQLdb)",
            ),
            ("postgresql+asyncpg://postgres@127.0.0.1/app", "not installed (asyncpg)"),
            ("nosuchdb://x/y", "not a usable database URL"),
            ("127.0.0.1/app", "not a usable database URL"),
            ("mysql://root:secret@127.0.0.1:port/app", "root:***@127.0.0.1:port/app: invalid"),
            ("mysql://root@[::1/app", "an IPv6 host is written [::1]"),
        ],
    )
    def test_a_url_that_cannot_be_opened_is_one_line(
        self, url: str, said: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(capsys, "apply", str(QUICKSTART), "--db", url)
        assert code == errors.ConfigurationError.exit_code == 12
        assert said in err
        assert "mysql://user:password@127.0.0.1/db (PyMySQL)" in err
        assert "Traceback" not in err
        assert "secret" not in err

    @pytest.mark.mariadb
    def test_a_query_option_the_driver_does_not_know_is_one_line(
        self, mariadb_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        url = mariadb_url + "?no_such_option=1"
        code, _, err = run(capsys, "apply", str(QUICKSTART), "--db", url)
        assert code == errors.ConfigurationError.exit_code
        assert "the driver does not know an option of the URL's query" in err
        assert "no_such_option" in err


def test_ctrl_c_during_a_run_says_what_to_do_and_recover_rolls_it_back(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C in the middle of a run stops it where it is, as a crash would: one line says
    so (writes stay frozen) and what to run; ``recover`` then rolls the run back."""
    from lupo_migrate.backends.sqlalchemy import _step_session

    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    (migrations / "V2__b.sql").write_text("CREATE TABLE b (id INT);\nINSERT INTO b VALUES (1);\n")
    execute = _step_session.StepSessions.execute
    sent = []

    def interrupted(self: Any, connection: Any, statement: str) -> None:
        if len(sent) == 1:
            raise KeyboardInterrupt
        sent.append(statement)
        execute(self, connection, statement)

    monkeypatch.setattr(_step_session.StepSessions, "execute", interrupted)
    code, _, err = run(capsys, "apply", str(migrations), "--db", database_url)
    assert code == 130
    assert "aborted: a run under way stopped where it was" in err
    assert "`lupo-migrate recover` rolls it back" in err
    monkeypatch.setattr(_step_session.StepSessions, "execute", execute)
    code, out, err = run(capsys, "status", str(migrations), "--db", database_url)
    assert "died in migrating at step V2__b" in err, (out, err)
    code, out, err = run(capsys, "recover", str(migrations), "--db", database_url)
    assert code == 0, (out, err)
    assert "recovered, rolled_back" in out
    code, out, err = run(capsys, "status", str(migrations), "--db", database_url)
    assert "0 applied, 2 pending" in out


@pytest.mark.parametrize(
    ("sent", "name", "exit_code"),
    [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)],
)
def test_ctrl_c_or_sigterm_stops_the_run_cleanly_and_rolls_it_back(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sent: signal.Signals,
    name: str,
    exit_code: int,
) -> None:
    """Issue 19, 3: the first Ctrl-C (or a deploy tool's SIGTERM) during step 1 lets its
    statement finish, starts no further step and rolls the run back to where it began:
    exit 130 / 143, nothing left behind, writes thawed, the next apply runs as usual."""
    from lupo_migrate.backends.sqlalchemy import _step_session

    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\nINSERT INTO a VALUES (1);\n")
    (migrations / "V2__b.sql").write_text("CREATE TABLE b (id INT);\n")
    execute = _step_session.StepSessions.execute
    ran: list[str] = []

    def signalled(self: Any, connection: Any, statement: str) -> None:
        if not ran:
            os.kill(os.getpid(), sent)  # as the terminal or the deploy tool would
        ran.append(statement)
        execute(self, connection, statement)

    monkeypatch.setattr(_step_session.StepSessions, "execute", signalled)
    # As from a terminal, whatever pytest was started with (a background job ignores SIGINT).
    before = signal.signal(sent, signal.default_int_handler if name == "Ctrl-C" else signal.SIG_DFL)
    try:
        code, out, err = run(capsys, "apply", str(migrations), "--db", database_url)
        restored = signal.getsignal(sent)
    finally:
        signal.signal(sent, before)
    assert code == exit_code, (out, err)
    assert f"{name}: stopping. No further step starts" in err
    assert f"stopped by {name}: the run rolled back to where it began" in err
    assert ran[:2] == ["CREATE TABLE a (id INT)", "INSERT INTO a VALUES (1)"]
    assert "CREATE TABLE b (id INT)" not in ran  # V2 never started (then V1 was undone)
    assert "Traceback" not in err
    assert restored in (signal.default_int_handler, signal.SIG_DFL)  # given back
    engine = sa.create_engine(database_url)
    try:
        assert not {"a", "b"} & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    monkeypatch.setattr(_step_session.StepSessions, "execute", execute)
    code, out, err = run(capsys, "apply", str(migrations), "--db", database_url)
    assert code == 0, (out, err)
    assert "completed, 2 of 2 step(s) applied" in out


def test_a_second_ctrl_c_stops_at_once_and_recover_rolls_the_run_back(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C twice: the run stops where it is (exit 130), and `recover` repairs it."""
    from lupo_migrate.backends.sqlalchemy import _step_session

    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\nINSERT INTO a VALUES (1);\n")
    execute = _step_session.StepSessions.execute
    ran: list[str] = []

    def signalled_twice(self: Any, connection: Any, statement: str) -> None:
        ran.append(statement)
        if len(ran) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        execute(self, connection, statement)

    monkeypatch.setattr(_step_session.StepSessions, "execute", signalled_twice)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal
    try:
        code, out, err = run(capsys, "apply", str(migrations), "--db", database_url)
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130, (out, err)
    assert "aborted: a run under way stopped where it was" in err
    monkeypatch.setattr(_step_session.StepSessions, "execute", execute)
    code, out, err = run(capsys, "apply", str(migrations), "--db", database_url)
    assert code == errors.TargetBlockedError.exit_code
    assert "no new run can start: run " in err
    assert "died in migrating at step V1__a" in err
    assert "`lupo-migrate recover` rolls it back to where it began" in err
    assert "LockAcquired" not in err  # the state machine's words stay out of it
    code, out, err = run(capsys, "recover", str(migrations), "--db", database_url)
    assert code == 0, (out, err)
    assert "recovered, rolled_back" in out


def test_a_signal_the_process_ignores_stays_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Started with SIGINT ignored (a background job): apply leaves it so, as Python does."""
    from lupo_migrate.backends.sqlalchemy import _step_session

    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n")
    execute = _step_session.StepSessions.execute
    seen: list[object] = []

    def watching(self: Any, connection: Any, statement: str) -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        execute(self, connection, statement)

    monkeypatch.setattr(_step_session.StepSessions, "execute", watching)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, out, err = run(
            capsys, "apply", str(migrations), "--db", f"sqlite:///{tmp_path / 'a.db'}"
        )
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 0, (out, err)
    assert seen == [signal.SIG_IGN]
