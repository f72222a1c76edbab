"""Benchmark: changing a big MySQL/MariaDB table while the application keeps writing.

Usage::

    python benchmarks/online_alter.py [--rows N] [--rate W] [--host H] [--port P] [--user U]
                                      [--only OP]

On MariaDB (its sequence engine builds the seed). Builds ``lupo_bench_online.seed`` with N
rows (1,000,000) once (kept for the next run), then for each change (ADD COLUMN, ADD INDEX, a
column type change the server must copy for) and each tool in the same run: the table is
rebuilt from the seed; a writer (W writes a second, 100: inserts and updates in turn, each in
its own transaction) and a reader (point reads, as often) start; the tool changes the table;
both stop half a second after it ends. Tools:

- ``plain``: the ``ALTER TABLE`` as written, on one connection (what ``mariadb db < f.sql``
  does);
- ``lupo_migrate``: ``lupo-migrate apply`` of a one-file directory, as a process, with its
  defaults (``online = auto``: ``INSTANT``, else ``INPLACE, LOCK=NONE``, else an online copy);
  its own schema is made once before the runs, as on any database it migrated before (a
  first run on a database pays about 0.4 s more to make it);
- ``pt-osc``: ``pt-online-schema-change --execute``, when installed (Debian's
  ``percona-toolkit``).

Before the runs, the modules ``lupo-migrate`` loads get their bytecode cached where it is
not (as ``pip install`` leaves them; with ``PYTHONDONTWRITEBYTECODE`` set nothing is, and
each run would compile SQLAlchemy again, about half a second of its time).

Latencies are counted from when each operation was due, not from when it could start: a write
held for 2 s also delays the 200 due after it, and each of those counts its wait (the
correction for coordinated omission), so a blocked table shows in the p99.

Prints for each: the time it took, the writer's p50/p99/max latency and errors, the reader's
p99/max, and whether every row is as the writer left it (checksums of the untouched rows
against the seed, the written rows against the writer's own record). Then the targets of
issue 21 for lupo_migrate: writer p99 at most 50 ms, no writer error, no lost or changed row,
time at most pt-online-schema-change's; exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pymysql

DATABASE = "lupo_bench_online"
#: lupo_migrate's own schema on that database.
ORCHESTRATION = f"{DATABASE}_lupo_orchestration"
OPERATIONS = {
    "add column": "ALTER TABLE t ADD COLUMN note VARCHAR(20)",
    "add index": "ALTER TABLE t ADD INDEX t_k (k)",
    "type change": "ALTER TABLE t MODIFY amount BIGINT NOT NULL",
}
#: The way back of each, the file's down section: a type change of a table over the backup
#: limit is refused without one (it changes rows a rollback could not put back otherwise).
DOWNS = {
    "ALTER TABLE t ADD COLUMN note VARCHAR(20)": "ALTER TABLE t DROP COLUMN note",
    "ALTER TABLE t ADD INDEX t_k (k)": "ALTER TABLE t DROP INDEX t_k",
    "ALTER TABLE t MODIFY amount BIGINT NOT NULL": "ALTER TABLE t MODIFY amount INT NOT NULL",
}
P99_TARGET_MS = 50.0


@attrs.define
class Load:
    """A writer or a reader: its latencies (seconds) and errors."""

    took: list[float] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    def figures(self) -> tuple[float, float, float]:
        """p50, p99 and max, in milliseconds."""
        if not self.took:
            return 0.0, 0.0, 0.0
        ordered = sorted(self.took)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3


@attrs.define
class Written:
    """What the writer did: ids it inserted, and how often it incremented each id's amount."""

    inserted: list[int] = attrs.field(factory=list)
    bumped: dict[int, int] = attrs.field(factory=dict)


def connect(args: argparse.Namespace, database: str | None = DATABASE) -> pymysql.Connection:
    return pymysql.connect(
        host=args.host, port=args.port, user=args.user, database=database, autocommit=True
    )


def one(cur: Any) -> Any:
    """The first value of the cursor's next row."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


def build_seed(args: argparse.Namespace) -> None:
    """``seed`` with ``--rows`` rows (kept between runs when it has as many)."""
    with connect(args, None) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(f"USE {DATABASE}")
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = 'seed'",
            (DATABASE,),
        )
        if one(cur):
            cur.execute("SELECT COUNT(*) FROM seed")
            if one(cur) == args.rows:
                return
            cur.execute("DROP TABLE seed")
        began = time.monotonic()
        cur.execute(
            "CREATE TABLE seed (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL,"
            " payload VARCHAR(100) NOT NULL, amount INT NOT NULL) ENGINE=InnoDB"
        )
        cur.execute(
            "INSERT INTO seed (k, payload, amount) SELECT seq % 9973, REPEAT('x', 60), seq % 1000"
            f" FROM seq_1_to_{args.rows}"
        )
        print(f"seed: {args.rows:,} rows in {time.monotonic() - began:.1f} s", flush=True)


def reset(args: argparse.Namespace) -> None:
    """``t`` as the seed, and no table of a tool before left: pt-online-schema-change's, and
    lupo_migrate's backups (its own schema stays, as on any database it migrated before;
    each run records under a target of its own, see :func:`run_lupo`)."""
    with connect(args) as conn, conn.cursor() as cur:
        for name in ("t", "_t_new", "_t_old"):
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name LIKE 'lupo\\_bk\\_%%'",
            (ORCHESTRATION,),
        )
        for (name,) in cur.fetchall():
            cur.execute(f"DROP TABLE `{ORCHESTRATION}`.`{name}`")
        cur.execute("CREATE TABLE t LIKE seed")
        cur.execute("INSERT INTO t SELECT * FROM seed")


def lupo(args: argparse.Namespace, directory: str, target: str) -> None:
    """``lupo-migrate apply DIRECTORY`` as a process, recorded under *target*."""
    url = f"mysql+pymysql://{args.user}@{args.host}:{args.port}/{DATABASE}"
    done = subprocess.run(
        [sys.executable, "-m", "lupo_migrate", "apply", directory, "--db", url, "--target", target],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.startswith("error")]
        raise RuntimeError(f"lupo-migrate exited {done.returncode}: {' '.join(said)[:300]}")


def writer(args: argparse.Namespace, stop: threading.Event, load: Load, done: Written) -> None:
    """Inserts and updates in turn, ``--rate`` a second, each its own transaction."""
    conn = connect(args)
    rng = random.Random(7)
    period = 1.0 / args.rate
    n = 0
    next_at = time.monotonic()
    with conn.cursor() as cur:
        while not stop.is_set():
            # From when the write was due, not when it could start: a write held for 2 s
            # also holds the 199 after it (they count, as a client waiting on them would).
            began = next_at
            try:
                if n % 2 == 0:
                    cur.execute(
                        "INSERT INTO t (k, payload, amount) VALUES (%s, 'written', 1)", (n,)
                    )
                    done.inserted.append(int(cur.lastrowid))
                else:
                    row = rng.randint(1, args.rows)
                    cur.execute("UPDATE t SET amount = amount + 1 WHERE id = %s", (row,))
                    if cur.rowcount == 1:
                        done.bumped[row] = done.bumped.get(row, 0) + 1
            except pymysql.MySQLError as error:
                load.errors.append(str(error))
            load.took.append(time.monotonic() - began)
            n += 1
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()


def reader(args: argparse.Namespace, stop: threading.Event, load: Load) -> None:
    """Point reads by primary key, ``--rate`` a second."""
    conn = connect(args)
    rng = random.Random(11)
    period = 1.0 / args.rate
    next_at = time.monotonic()
    with conn.cursor() as cur:
        while not stop.is_set():
            began = next_at  # from when the read was due (see writer)
            try:
                cur.execute("SELECT amount FROM t WHERE id = %s", (rng.randint(1, args.rows),))
                cur.fetchall()
            except pymysql.MySQLError as error:
                load.errors.append(str(error))
            load.took.append(time.monotonic() - began)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()


def intact(args: argparse.Namespace, done: Written) -> str:
    """ "ok", or what differs: the rows the writer did not touch against the seed, the ones
    it touched against its own record."""
    touched = set(done.bumped)
    with connect(args) as conn, conn.cursor() as cur:
        sums = []
        for table in ("seed", "t"):
            skip = ",".join(["0", *map(str, touched)])
            cur.execute(
                f"SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', id, k, payload, amount)))"
                f" FROM {table} WHERE id <= %s AND id NOT IN ({skip})",
                (args.rows,),
            )
            sums.append(cur.fetchone())
        if sums[0] != sums[1]:
            return f"untouched rows differ: seed {sums[0]}, table {sums[1]}"
        for row, times in done.bumped.items():
            cur.execute(
                "SELECT s.amount, t.amount FROM seed s JOIN t USING (id) WHERE id = %s", (row,)
            )
            got = cur.fetchone()
            if got is None or int(got[1]) != int(got[0]) + times:
                return f"row {row}: amount {got}, expected +{times}"
        cur.execute("SELECT COUNT(*) FROM t WHERE id > %s", (args.rows,))
        count = one(cur)
        if count != len(done.inserted):
            return f"{count} inserted rows in the table, the writer inserted {len(done.inserted)}"
    return "ok"


#: What ``lupo-migrate apply`` imports on its way to a copy, listed by a child process.
_LOADED = (
    "import sys, lupo_migrate.cli.command_line, lupo_migrate.session.session,"
    " lupo_migrate.backends.sqlalchemy.target\n"
    "for m in list(sys.modules.values()):\n"
    "    f = getattr(m, '__file__', None)\n"
    "    if f and f.endswith('.py'): print(f)"
)


def cache_bytecode() -> int:
    """Compile the modules ``lupo-migrate`` loads whose bytecode is not cached, as
    ``pip install`` leaves them (with ``PYTHONDONTWRITEBYTECODE`` set, nothing is cached,
    and each run compiles SQLAlchemy again: about half a second). How many were compiled."""
    import importlib.util
    import py_compile

    listed = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True
    ).stdout.split()
    compiled = 0
    for source in listed:
        cached = importlib.util.cache_from_source(source)
        if not Path(cached).exists():
            try:
                py_compile.compile(source, cfile=cached, doraise=True)
                compiled += 1
            except (OSError, py_compile.PyCompileError):
                pass  # read-only: that run pays for it, as it would anywhere
    return compiled


def run_plain(args: argparse.Namespace, sql: str) -> None:
    with connect(args) as conn, conn.cursor() as cur:
        cur.execute(sql)


def run_lupo(args: argparse.Namespace, sql: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "V1__change.sql").write_text(f"{sql};\n-- lupo:down\n{DOWNS[sql]};\n")
        lupo(args, tmp, f"bench-{uuid.uuid4().hex[:12]}")


def run_pt_osc(args: argparse.Namespace, sql: str) -> None:
    alter = sql.removeprefix("ALTER TABLE t ")
    done = subprocess.run(
        [
            "pt-online-schema-change",
            "--alter",
            alter,
            f"D={DATABASE},t=t,h={args.host},P={args.port},u={args.user}",
            "--execute",
            "--recursion-method=none",
            "--no-check-alter",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pt-online-schema-change exited {done.returncode}: {done.stderr[-500:]}"
        )


def measure(
    args: argparse.Namespace, tool: Callable[[argparse.Namespace, str], None], sql: str
) -> dict[str, object]:
    reset(args)
    stop = threading.Event()
    writes, reads, done = Load(), Load(), Written()
    threads = [
        threading.Thread(target=writer, args=(args, stop, writes, done)),
        threading.Thread(target=reader, args=(args, stop, reads)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    failure = None
    try:
        tool(args, sql)
    except Exception as error:
        failure = str(error)
    took = time.monotonic() - began
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "took": took,
        "writes": writes,
        "reads": reads,
        "intact": intact(args, done) if failure is None else f"tool failed: {failure}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--only", choices=sorted(OPERATIONS), action="append")
    args = parser.parse_args(argv)
    compiled = cache_bytecode()
    if compiled:
        print(f"bytecode cached for {compiled} module(s) lupo-migrate loads, as pip leaves them")
    build_seed(args)
    with tempfile.TemporaryDirectory() as empty:
        # lupo_migrate's own schema, made once per database (its first run there pays
        # about 0.4 s more); every run below finds it, as on a database migrated before.
        lupo(args, empty, "bench-setup")
    tools: dict[str, Callable[[argparse.Namespace, str], None]] = {
        "plain": run_plain,
        "lupo_migrate": run_lupo,
    }
    if shutil.which("pt-online-schema-change"):
        tools["pt-osc"] = run_pt_osc
    else:
        print("pt-online-schema-change is not installed (Debian: percona-toolkit): left out")
    missed: list[str] = []
    print(
        f"{'change':<12} {'tool':<13} {'time s':>7} {'write p50':>9} {'p99':>7} {'max ms':>8}"
        f" {'errors':>6} {'read p99':>8} {'max ms':>8}  rows"
    )
    for name in args.only or OPERATIONS:
        results = {}
        for tool_name, tool in tools.items():
            got = measure(args, tool, OPERATIONS[name])
            results[tool_name] = got
            writes, reads = got["writes"], got["reads"]
            assert isinstance(writes, Load)
            assert isinstance(reads, Load)
            w50, w99, wmax = writes.figures()
            _, r99, rmax = reads.figures()
            print(
                f"{name:<12} {tool_name:<13} {got['took']:>7.2f} {w50:>9.1f} {w99:>7.1f}"
                f" {wmax:>8.1f} {len(writes.errors):>6} {r99:>8.1f} {rmax:>8.1f}  {got['intact']}",
                flush=True,
            )
        ours = results["lupo_migrate"]
        writes = ours["writes"]
        assert isinstance(writes, Load)
        if writes.figures()[1] > P99_TARGET_MS:
            missed.append(f"{name}: writer p99 {writes.figures()[1]:.1f} ms > {P99_TARGET_MS} ms")
        if writes.errors:
            missed.append(f"{name}: {len(writes.errors)} writer error(s): {writes.errors[0]}")
        if ours["intact"] != "ok":
            missed.append(f"{name}: {ours['intact']}")
        if "pt-osc" in results and float(ours["took"]) > float(results["pt-osc"]["took"]):  # type: ignore[arg-type]
            missed.append(f"{name}: {ours['took']:.2f} s, slower than pt-osc")
    print(
        "targets (issue 21): writer p99 <= 50 ms, no writer error, every row intact,"
        " time <= pt-online-schema-change's"
    )
    for line in missed:
        print(f"  missed: {line}")
    if not missed:
        print("  all met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
