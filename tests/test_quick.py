"""The nothing-to-do fast path of ``apply``: right answer, or no answer (the full path decides)."""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from databases import table_names
from lupo_migrate.cli import main
from lupo_migrate.session.config import Settings
from lupo_migrate.session.fast_path import DatabaseUrl, nothing_to_do, parse_url

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "migrations"


def _as_sqlalchemy_reads(url: str) -> DatabaseUrl:
    """*url* as the full path reads it (``make_url``, the driver lupo_migrate installs)."""
    from lupo_migrate.backends.sqlalchemy.target import usable_url

    parsed = usable_url(url)
    family = {"mysql": "mysql", "postgresql": "postgresql", "sqlite": "sqlite"}[
        parsed.get_backend_name()
    ]
    query = dict(parsed.query)
    socket = query.pop("unix_socket" if family == "mysql" else "host", None)
    assert not query, query
    return DatabaseUrl(
        family,
        user=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database or None,
        socket=socket if isinstance(socket, str) else None,
    )


_SAFE = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=8)
_ANY = st.text(string.ascii_letters + string.digits + "@:/?#%&=+ _-.!", min_size=1, max_size=8)


@st.composite
def _urls(draw: st.DrawFn) -> str:
    """URLs of the three families as users write them, some with odd characters quoted."""
    scheme = draw(st.sampled_from(["mysql", "mysql+pymysql", "mariadb", "postgresql", "postgres"]))
    user = draw(st.none() | _ANY)
    password = draw(st.none() | _ANY) if user is not None else None
    host = draw(st.sampled_from(["", "localhost", "127.0.0.1", "[::1]", "db.example"]))
    port = draw(st.none() | st.integers(1, 65535))
    database = draw(st.none() | _ANY)
    option = draw(st.sampled_from(["", "unix_socket", "host", "charset"]))
    text = f"{scheme}://"
    if user is not None:
        text += quote(user, safe="")
        if password is not None:
            text += ":" + quote(password, safe="")
        text += "@"
    text += host
    if port is not None and host:
        text += f":{port}"
    if database is not None:
        text += "/" + quote(database, safe="")
    if option:
        text += f"?{option}=" + quote("/run/" + draw(_SAFE), safe="/")
    return text


class TestParseUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (
                "mysql+pymysql://root@127.0.0.1:3306/test",
                DatabaseUrl("mysql", user="root", host="127.0.0.1", port=3306, database="test"),
            ),
            (
                "mariadb://u:p%40ss%3Aw@db.example:3307/app",
                DatabaseUrl("mysql", "u", "p@ss:w", "db.example", 3307, "app"),
            ),
            (
                "postgresql://postgres@[::1]:5432/test",
                DatabaseUrl("postgresql", user="postgres", host="::1", port=5432, database="test"),
            ),
            ("postgresql:///test", DatabaseUrl("postgresql", database="test")),
            ("sqlite:///app.db", DatabaseUrl("sqlite", database="app.db")),
            ("sqlite:////var/lib/app.db", DatabaseUrl("sqlite", database="/var/lib/app.db")),
            ("sqlite://", DatabaseUrl("sqlite")),
        ],
    )
    def test_plain_urls_are_understood(self, url: str, expected: DatabaseUrl) -> None:
        """User, password (percent-decoded), host, IPv6 host, port and database."""
        assert parse_url(url) == expected
        assert parse_url(url) == _as_sqlalchemy_reads(url)

    @pytest.mark.parametrize(
        ("url", "socket"),
        [
            (
                "mysql+pymysql://root@localhost/test?unix_socket=/run/mysqld/mysqld.sock",
                "/run/mysqld/mysqld.sock",
            ),
            ("mysql://root@/test?unix_socket=%2Ftmp%2Fm.sock", "/tmp/m.sock"),
            ("postgresql://postgres@/test?host=/var/run/postgresql", "/var/run/postgresql"),
        ],
    )
    def test_a_socket_is_understood(self, url: str, socket: str) -> None:
        """The socket forms take the fast path too (issue 19: they fell through to the full
        path, 0.39-0.65 s against 0.12-0.15 s over TCP)."""
        parsed = parse_url(url)
        assert parsed is not None
        assert parsed.socket == socket
        assert parsed == _as_sqlalchemy_reads(url)

    @settings(max_examples=300, deadline=None)
    @given(url=_urls())
    def test_what_it_understands_it_reads_as_sqlalchemy_does(self, url: str) -> None:
        """One reading of a URL: whatever the fast path accepts, SQLAlchemy reads the same."""
        parsed = parse_url(url)
        if parsed is not None:
            assert parsed == _as_sqlalchemy_reads(url)

    @pytest.mark.parametrize(
        "url",
        [
            "mysql+pymysql://root@localhost/test?charset=latin1",
            "mysql+pymysql://root@localhost/test?unix_socket=/a&unix_socket=/b",
            "postgresql://postgres@127.0.0.1/test?sslmode=require",
            "sqlite:///app.db?mode=ro",
            "mysql+mysqldb://root@127.0.0.1/test",
            "oracle://scott@127.0.0.1/orcl",
            "not a url",
            "sqlite://host/app.db",
        ],
    )
    def test_anything_unusual_is_left_to_sqlalchemy(self, url: str) -> None:
        """Options, other drivers and odd forms: None, so the full path reads them."""
        assert parse_url(url) is None


def _settings(url: str, migrations: Path) -> Settings:
    return Settings(db=url, migrations=migrations)


def _copy_quickstart(tmp_path: Path) -> Path:
    migrations = tmp_path / "m"
    migrations.mkdir()
    for path in QUICKSTART.iterdir():
        (migrations / path.name).write_bytes(path.read_bytes())
    return migrations


def _batches(url: str) -> tuple[str, str]:
    """Where ``apply`` keeps migration_batches by default: (URL, qualified table name)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name(path.stem + '.lupo' + path.suffix)}", "migration_batches"
    if url.startswith("mysql"):
        return url, f"{sa.make_url(url).database}_lupo_orchestration.migration_batches"
    return url, "lupo_orchestration.migration_batches"


class TestNothingToDo:
    def test_answers_only_when_everything_is_applied_unchanged(
        self, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """None before the first run, the count after it; None again for a new or edited file
        and for a blocked target."""
        migrations = _copy_quickstart(tmp_path)
        settings = _settings(database_url, migrations)
        assert nothing_to_do(settings) is None  # no orchestration tables yet
        assert main(["apply", str(migrations), "--db", database_url]) == 0
        capsys.readouterr()
        assert nothing_to_do(settings) == 4

        (migrations / "V5__more.sql").write_text("CREATE TABLE more_things (id INTEGER);\n")
        assert nothing_to_do(settings) is None  # pending
        (migrations / "V5__more.sql").unlink()
        assert nothing_to_do(settings) == 4

        first = sorted(migrations.glob("V1__*"))[0]
        original = first.read_bytes()
        first.write_bytes(original + b"\n-- edited\n")
        assert nothing_to_do(settings) is None  # edited: the full path refuses and explains
        first.write_bytes(original)

        url, batches = _batches(database_url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {batches} SET blocked = TRUE")
        engine.dispose()
        assert nothing_to_do(settings) is None  # blocked: the full path says so

    def test_another_target_name_has_its_own_ledger(
        self, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        migrations = _copy_quickstart(tmp_path)
        assert main(["apply", str(migrations), "--db", database_url]) == 0
        capsys.readouterr()
        other = attrs.evolve(_settings(database_url, migrations), target="staging")
        assert nothing_to_do(other) is None

    def test_a_missing_sqlite_file_is_not_created(self, tmp_path: Path) -> None:
        db = tmp_path / "absent.db"
        assert nothing_to_do(_settings(f"sqlite:///{db}", QUICKSTART)) is None
        assert not db.exists()
        assert not db.with_name("absent.lupo.db").exists()

    def test_a_wrong_password_is_left_to_the_full_path(self, mariadb_url: str) -> None:
        url = mariadb_url.replace("root@", "root:wrong@")
        assert nothing_to_do(_settings(url, QUICKSTART)) is None

    def test_a_bad_file_is_still_reported(self, tmp_path: Path) -> None:
        """The files are read first: errors propagate as on the full path."""
        from lupo_migrate.errors import MigrationFileError

        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__bad.sql").write_bytes(b"\xff\xfe not utf-8")
        with pytest.raises(MigrationFileError, match=r"V1__bad\.sql"):
            nothing_to_do(_settings(f"sqlite:///{tmp_path / 'x.db'}", migrations))


def test_the_re_run_does_not_load_sqlalchemy_networkx_or_yaml(tmp_path: Path) -> None:
    """The command's nothing-to-do answer comes from the fast path, in a process of its own
    (PyYAML too is left for files with YAML headers; the quickstart's have none)."""
    db = tmp_path / "app.db"
    args = ["apply", str(QUICKSTART), "--db", f"sqlite:///{db}"]
    assert main(args) == 0
    code = (
        "import sys\n"
        "from lupo_migrate.cli import main\n"
        f"code = main({args!r})\n"
        "print(code, sorted(m for m in ('sqlalchemy', 'networkx', 'yaml')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert out.splitlines() == ["nothing to do: all 4 migration(s) already applied", "0 []"]


def _drop(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {table}")
    finally:
        engine.dispose()


def test_nothing_pending_but_tables_the_last_run_left_gone_is_not_nothing_to_do(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database recreated (or a table dropped by hand) while lupo_migrate's record of it
    stayed read "nothing to do" on 1e1146b, through the fast path and the full one alike.
    Now the fast path declines and the full path names what is gone: exit 16, nothing
    applied; --allow-drift reports it and goes on; drift = off says nothing to do."""
    migrations = _copy_quickstart(tmp_path)
    url = database_url
    assert main(["apply", str(migrations), "--db", url]) == 0
    settings = _settings(url, migrations)
    assert nothing_to_do(settings) == 4
    capsys.readouterr()
    _drop(url, "posts")
    before = table_names(url)
    assert nothing_to_do(settings) is None
    code = main(["apply", str(migrations), "--db", url])
    out, err = capsys.readouterr()
    assert code == 16, (out, err)
    assert "1 of the 2 table(s) the last run left are gone: posts." in err
    assert "still lists every migration as applied" in err
    assert "nothing to do" not in out
    assert table_names(url) == before  # nothing applied, nothing created
    assert main(["apply", str(migrations), "--db", url, "--allow-drift"]) == 0
    out, err = capsys.readouterr()
    assert out == "nothing to do: all 4 migration(s) already applied\n"
    assert "warning: nothing is pending, but 1 of the 2 table(s)" in err
    monkeypatch.setenv("LUPO_MIGRATE_DRIFT", "off")
    assert nothing_to_do(attrs.evolve(settings, drift="off")) == 4
    assert main(["apply", str(migrations), "--db", url]) == 0
    assert capsys.readouterr().out == "nothing to do: all 4 migration(s) already applied\n"
