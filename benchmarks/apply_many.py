"""Benchmark ``lupo-migrate apply`` against one ``mariadb`` client process on the same SQL.

Usage::

    python benchmarks/apply_many.py [--count N] [--url URL] [--client PATH] [--rounds K]
                                    [--repeat R] [--target RATIO] [--noop-target SECONDS]
                                    [--baseline SRC]

Generates N migration files (every fourth a ``CREATE TABLE``, the others an ``ADD COLUMN`` on
the last table created, each followed by an ``INSERT``), then, in one run of this script,
K rounds (5) alternating (1) and (2), each on fresh databases:

1. the client: one ``mariadb`` process reads all N files concatenated, on a fresh database;
2. lupo_migrate: one ``python -m lupo_migrate apply`` process applies them from empty to head
   on another fresh database (journal, ledger and run state included, as a user runs it);
3. the nothing-to-do re-run as a whole process, best of R, over TCP and again through the
   server's socket (``?unix_socket=``, when the server has one here);
4. ``python -X importtime`` for that re-run: the total and the heaviest top-level imports.

Before timing, lupo_migrate's own modules are compiled to bytecode, as ``pip install`` does for
an installed package (an editable install under ``PYTHONDONTWRITEBYTECODE`` never gets it, and
compiling ~80 modules at every start would be measured instead of the tool).

With ``--baseline SRC`` (the ``src`` directory of another checkout, a worktree of an earlier
commit say), each round also times that version's ``apply`` (its own database), so both
versions' ratios come from one run, on the same disk and server state.

Both databases are compared afterwards (same tables, columns and rows). Prints the best wall
time of each, the ratio (2)/(1) as the median of the rounds' own ratios (a round's pair runs
back to back, so the disk's drift on a shared machine cancels out), and the peak resident
memory of each process; exits 1 when the ratio is
above ``--target`` (1.5) or the re-run above ``--noop-target`` (0.15 s).

The databases ``lupo_bench_client`` and ``lupo_bench_lupo`` are dropped and created again.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

CLIENT_DB = "lupo_bench_client"
LUPO_DB = "lupo_bench_lupo"
BASE_DB = "lupo_bench_base"


def migration(index: int) -> str:
    """The SQL of migration *index* (0-based): a CREATE every fourth, else an ADD COLUMN."""
    table = f"t{index - index % 4:04d}"
    if index % 4 == 0:
        ddl = f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT);"
    else:
        ddl = f"ALTER TABLE {table} ADD COLUMN c{index:04d} INT;"
    return f"{ddl}\nINSERT INTO {table} (id, v) VALUES ({index}, {index});\n"


def write_migrations(directory: Path, count: int) -> list[Path]:
    """N files ``V0001__m.sql``... in *directory*."""
    paths = []
    for index in range(count):
        path = directory / f"V{index + 1:04d}__m.sql"
        path.write_text(migration(index), encoding="utf-8")
        paths.append(path)
    return paths


def timed(
    argv: Sequence[str], *, stdin: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, int, str, str]:
    """Run *argv*; (wall seconds, its own peak RSS in KiB, stdout, stderr). Exits on failure.

    The child is reaped with ``wait4``, which reports that process's own peak memory.
    """
    with (
        open(stdin or os.devnull, "rb") as source,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=source, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr.strip()}")
    return elapsed, usage.ru_maxrss, stdout, stderr


def fresh(engine: sa.Engine, name: str) -> None:
    """*name* empty, and without lupo_migrate's own databases beside it."""
    with engine.connect() as conn:
        for stale in (name, f"{name}_lupo_orchestration", f"{name}_lupo_ephemeral"):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {stale}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")


def snapshot(engine: sa.Engine, name: str) -> dict[str, tuple[tuple[str, ...], int]]:
    """Table name to (columns, row count), lupo_migrate's own tables (orchestration tables,
    and the rollback material a completed run keeps) left out."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT table_name, GROUP_CONCAT(column_name ORDER BY ordinal_position)"
            " FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name NOT LIKE 'migration%%' AND table_name NOT LIKE 'lupo\\_bk\\_%%'"
            " GROUP BY table_name",
            (name,),
        ).all()
        result = {}
        for table, columns in rows:
            count = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}.{table}").scalar_one()
            result[table] = (tuple(columns.split(",")), count)
    return result


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_totals(stderr: str) -> tuple[int, list[tuple[int, str]]]:
    """(total microseconds, [(cumulative us, top-level module)...] heaviest first)."""
    tops = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and len(match.group(3)) == 1:  # one space: imported at the top level
            tops.append((int(match.group(2)), match.group(4)))
    return sum(us for us, _ in tops), sorted(tops, reverse=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--url", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--client", default=shutil.which("mariadb") or "mysql")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--noop-target", type=float, default=0.15)
    parser.add_argument("--baseline", type=Path, help="another checkout's src directory")
    args = parser.parse_args(argv)

    import lupo_migrate

    compileall.compile_dir(Path(lupo_migrate.__file__).parent, quiet=1)
    base_env = None
    if args.baseline is not None:
        compileall.compile_dir(args.baseline / "lupo_migrate", quiet=1)
        base_env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
    server = sa.make_url(args.url)
    engine = sa.create_engine(server)
    lupo_url = server.set(database=LUPO_DB).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="lupo-bench-") as tmp:
        directory = Path(tmp) / "migrations"
        directory.mkdir()
        paths = write_migrations(directory, args.count)
        script = Path(tmp) / "all.sql"
        script.write_text("".join(p.read_text() for p in paths), encoding="utf-8")

        client = [args.client, "-u", server.username or "root", "-h", server.host or "127.0.0.1"]
        client += ["-P", str(server.port or 3306), CLIENT_DB]
        if server.password:
            client.insert(1, f"-p{server.password}")
        apply = [sys.executable, "-m", "lupo_migrate", "apply", str(directory)]
        apply += ["--db", lupo_url, "--table-budget", str(args.count)]
        base = [*apply[:-4], "--db", server.set(database=BASE_DB).render_as_string(False)]
        base += apply[-2:]
        clients, lupos, bases = [], [], []
        for _ in range(args.rounds):  # alternated, so both see the same disk and server state
            fresh(engine, CLIENT_DB)
            fresh(engine, LUPO_DB)
            clients.append(timed(client, stdin=script))
            lupos.append(timed(apply))
            if f"completed, {args.count} of {args.count}" not in lupos[-1][2]:
                raise SystemExit(f"lupo-migrate apply did not complete: {lupos[-1][2].strip()}")
            if base_env is not None:
                fresh(engine, BASE_DB)
                bases.append(timed(base, env=base_env))
        client_s, client_kib, _, _ = min(clients)
        lupo_s, lupo_kib, _, _ = min(lupos)
        # Each round's own ratio: the disk's speed drifts from round to round on a shared
        # machine, and a pair run back to back sees the same disk.
        paired = sorted(lupo[0] / client[0] for client, lupo in zip(clients, lupos, strict=True))

        noops = [timed(apply) for _ in range(args.repeat)]
        noop_s, noop_kib, out, _ = min(noops)
        if not out.startswith("nothing to do"):
            raise SystemExit(f"the re-run did something: {out.strip()}")
        _, _, _, importtime = timed([sys.executable, "-X", "importtime", *apply[1:]])
        # The same re-run through the server's socket (a URL with ?unix_socket=...).
        with engine.connect() as connection:
            socket = connection.exec_driver_sql("SELECT @@socket").scalar()
        socket_noop: tuple[float, str] | None = None
        if socket and Path(str(socket)).exists():
            by_socket = server.set(
                host="localhost", port=None, database=LUPO_DB, query={"unix_socket": str(socket)}
            ).render_as_string(hide_password=False)
            over = [*apply[:-4], "--db", by_socket, *apply[-2:]]
            best = min(timed(over) for _ in range(args.repeat))
            if not best[2].startswith("nothing to do"):
                raise SystemExit(f"the re-run by socket did something: {best[2].strip()}")
            socket_noop = (best[0], f"?unix_socket={socket}")

    same = snapshot(engine, CLIENT_DB) == snapshot(engine, LUPO_DB)
    engine.dispose()
    total_us, heaviest = import_totals(importtime)
    ratio = paired[len(paired) // 2]

    print(f"{args.count} migrations on {server.render_as_string(hide_password=True)}")
    name = f"{Path(args.client).name} client, one process:"
    print(f"  {name:33} {client_s:7.2f} s  {client_kib / 1024:6.1f} MiB peak")
    print(f"  {'lupo-migrate apply:':33} {lupo_s:7.2f} s  {lupo_kib / 1024:6.1f} MiB peak")
    print(
        f"  ratio: {ratio:.2f} (target {args.target}): the median of {args.rounds} rounds' own"
        f" ratios ({', '.join(f'{r:.2f}' for r in paired)}); times above: best of each"
    )
    print(
        f"  nothing-to-do re-run, best of {args.repeat}: {noop_s:.3f} s"
        f"  {noop_kib / 1024:.1f} MiB peak (target {args.noop_target} s)"
    )
    if socket_noop is not None:
        print(
            f"  the same through the socket ({socket_noop[1]}): {socket_noop[0]:.3f} s"
            f" (target {args.noop_target} s)"
        )
    print(f"  python -X importtime for the re-run: {total_us / 1000:.0f} ms of imports; heaviest:")
    for us, module in heaviest[:8]:
        print(f"    {us / 1000:7.1f} ms  {module}")
    if bases:
        base_ratios = sorted(b[0] / c[0] for c, b in zip(clients, bases, strict=True))
        print(
            f"  baseline {args.baseline}: best {min(bases)[0]:.2f} s; ratio"
            f" {base_ratios[len(base_ratios) // 2]:.2f} (rounds:"
            f" {', '.join(f'{r:.2f}' for r in base_ratios)}); this version: {ratio:.2f}"
        )
    print(f"  databases identical: {'yes' if same else 'NO'}")
    ok = same and ratio <= args.target and noop_s <= args.noop_target
    ok = ok and (socket_noop is None or socket_noop[0] <= args.noop_target)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
