"""Benchmark one big migration file against each engine's own client, in one run.

Usage::

    python benchmarks/big_file.py [--rows N] [--engines sqlite,mariadb,postgresql]
                                  [--target RATIO] [--memory MIB]

Writes one file: a ``CREATE TABLE`` and N (100,000) single-row ``INSERT`` statements, the shape
of a seed or a dump. For each engine, on fresh databases: the engine's client reads the file
(``sqlite3 db < file``, ``mariadb db < file``, ``psql -f file``), then one
``python -m lupo_migrate apply`` process applies it (journal, ledger and run state included,
as a user runs it). Prints both wall times, the ratio lupo/client, lupo's peak resident memory
(its own process, from ``wait4``) and whether both databases hold the same rows; exits 1 when a
ratio is above ``--target`` (1.5) or a peak above ``--memory`` (100 MiB).

The databases ``lupo_big_client`` and ``lupo_big_lupo`` (MariaDB, PostgreSQL) are dropped and
created again; the SQLite files live in a temporary directory.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_many import timed  # the same timing, next to this file

CLIENT_DB = "lupo_big_client"
LUPO_DB = "lupo_big_lupo"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/"
POSTGRESQL = "postgresql+psycopg2://postgres@127.0.0.1:5432/"


def write_file(path: Path, rows: int) -> None:
    """The big file: a table and *rows* INSERTs, one per line."""
    with path.open("w", encoding="utf-8") as out:
        out.write("CREATE TABLE big (id INTEGER PRIMARY KEY, name VARCHAR(40), v INTEGER);\n")
        for i in range(rows):
            out.write(f"INSERT INTO big (id, name, v) VALUES ({i}, 'name {i}', {i * 7});\n")


def _server(url: str, database: str) -> tuple[str, Callable[[], None]]:
    """A fresh *database* on the server of *url*: its URL, and how to drop it again."""
    admin_url = sa.make_url(url)
    postgres = admin_url.get_backend_name() == "postgresql"
    admin = sa.create_engine(
        admin_url.set(database="postgres" if postgres else None), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        for stale in (database, f"{database}_lupo_orchestration", f"{database}_lupo_ephemeral"):
            extra = " WITH (FORCE)" if postgres else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {stale}{extra}")
        conn.exec_driver_sql(f"CREATE DATABASE {database}")

    def drop() -> None:
        with admin.connect() as conn:
            for stale in (database, f"{database}_lupo_orchestration"):
                extra = " WITH (FORCE)" if postgres else ""
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {stale}{extra}")
        admin.dispose()

    return admin_url.set(database=database).render_as_string(hide_password=False), drop


def _rows(url: str) -> tuple[int, int]:
    """(rows, sum of v) of the table ``big`` at *url*."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            count, total = conn.exec_driver_sql("SELECT COUNT(*), SUM(v) FROM big").one()
            return int(count), int(total or 0)
    finally:
        engine.dispose()


@attrs.frozen
class Figures:
    """One engine's figures: seconds and peak MiB of the client and of lupo-migrate."""

    engine: str
    client: float
    client_mib: float
    lupo: float
    lupo_mib: float
    same: bool

    @property
    def ratio(self) -> float:
        return self.lupo / self.client


def run_engine(engine: str, script: Path, migrations: Path, tmp: Path) -> Figures:
    """Time the client and lupo_migrate on *engine*; their figures."""
    tmp.mkdir(exist_ok=True)
    lupo = [sys.executable, "-m", "lupo_migrate", "apply", str(migrations), "--progress", "off"]
    drops: list[Callable[[], None]] = []
    try:
        if engine == "sqlite":
            client_url = f"sqlite:///{tmp / 'client.db'}"
            lupo_url = f"sqlite:///{tmp / 'lupo.db'}"
            client = [shutil.which("sqlite3") or "sqlite3", str(tmp / "client.db")]
            stdin: Path | None = script
        elif engine == "mariadb":
            client_url, drop_client = _server(MARIADB, CLIENT_DB)
            lupo_url, drop_lupo = _server(MARIADB, LUPO_DB)
            drops += [drop_client, drop_lupo]
            binary = shutil.which("mariadb") or "mysql"
            client = [binary, "-u", "root", "-h", "127.0.0.1", "-P", "3306", CLIENT_DB]
            stdin = script
        else:
            client_url, drop_client = _server(POSTGRESQL, CLIENT_DB)
            lupo_url, drop_lupo = _server(POSTGRESQL, LUPO_DB)
            drops += [drop_client, drop_lupo]
            client = [shutil.which("psql") or "psql", "-h", "127.0.0.1", "-U", "postgres"]
            client += ["-d", CLIENT_DB, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)]
            stdin = None
        client_s, client_kib, _, _ = timed(client, stdin=stdin)
        lupo_s, lupo_kib, out, _ = timed([*lupo, "--db", lupo_url])
        if "completed, 1 of 1" not in out:
            raise SystemExit(f"{engine}: lupo-migrate apply did not complete: {out.strip()}")
        same = _rows(client_url) == _rows(lupo_url)
        return Figures(engine, client_s, client_kib / 1024, lupo_s, lupo_kib / 1024, same)
    finally:
        for drop in drops:
            drop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,mariadb,postgresql")
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--memory", type=float, default=100.0, help="MiB")
    args = parser.parse_args(argv)
    source = Path(__file__).resolve().parents[1] / "src"
    compileall.compile_dir(source, quiet=1)  # as pip install does: the tool, not compiling
    ok = True
    with tempfile.TemporaryDirectory(prefix="lupo-big-") as tmp_name:
        tmp = Path(tmp_name)
        migrations = tmp / "migrations"
        migrations.mkdir()
        script = migrations / "V1__big.sql"
        write_file(script, args.rows)
        size = script.stat().st_size / 2**20
        print(f"one file of {args.rows:,} INSERT statements ({size:.1f} MiB)")
        for engine in args.engines.split(","):
            f = run_engine(engine, script, migrations, tmp / engine)
            ok = ok and f.ratio <= args.target and f.lupo_mib <= args.memory and f.same
            print(
                f"  {engine:<10} client {f.client:7.2f} s ({f.client_mib:5.1f} MiB)"
                f"   lupo-migrate {f.lupo:7.2f} s ({f.lupo_mib:5.1f} MiB peak)"
                f"   ratio {f.ratio:.2f} (target {args.target}, memory {args.memory:.0f} MiB)"
                f"   same rows: {'yes' if f.same else 'NO'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
