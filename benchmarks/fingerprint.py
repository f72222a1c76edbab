"""Benchmark ``read_fingerprint`` against the bare catalog queries it is made of.

Usage::

    python benchmarks/fingerprint.py [--tables N] [--url URL] [--repeat R] [--target RATIO]
                                     [--reuse]

Creates the database ``lupo_bench_fingerprint`` with N tables (1,000): 8 columns each, 2 or 3
indexes, a foreign key to the previous table, every tenth with a check. Then, in one run,
alternating R times (5) and keeping the best of each:

1. the floor: the eleven bulk ``information_schema`` queries ``read_fingerprint`` sends, on the
   bare PyMySQL cursor, every row fetched;
2. ``read_fingerprint`` on a SQLAlchemy connection (the same queries plus the assembling);
3. SQLAlchemy's ``inspect()`` reflection of the same tables (columns, indexes, foreign keys,
   checks), once: what a tool reading table by table pays.

Prints the times and the ratios (2)/(1), the target, and (3)/(2); exits 1 when (2)/(1) is
above ``--target`` (1.5). ``--reuse`` keeps an existing database of the right size.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy import read_fingerprint
from lupo_migrate.backends.sqlalchemy.fingerprint import _mysql as fp

DATABASE = "lupo_bench_fingerprint"

_FLOOR = (
    fp._MY_TABLES,
    fp._MY_COLUMNS,
    fp._MY_INDEXES,
    fp._MY_FOREIGN_KEYS,
    fp._MY_FOREIGN_KEY_RULES,
    fp._MY_CHECKS.format(mariadb=" AND cc.table_name = tc.table_name"),
    fp._MY_VIEWS,
    fp._MY_TRIGGERS,
    fp._MY_ROUTINES,
    fp._MY_PARAMETERS,
    fp._MY_EVENTS,
)


def table_ddl(index: int) -> str:
    """CREATE TABLE of table *index*: 8 columns, 2-3 indexes, a foreign key to the previous."""
    name = f"t{index:04d}"
    parts = [
        "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "parent_id INT NULL",
        "code VARCHAR(32) NOT NULL DEFAULT ''",
        "title VARCHAR(200) NULL COMMENT 'shown to users'",
        "amount DECIMAL(12, 2) NOT NULL DEFAULT 0",
        "created BIGINT NOT NULL",
        "body TEXT NULL",
        "flag TINYINT(1) NOT NULL DEFAULT 0",
        f"UNIQUE KEY ux_{name}_code (code)",
        f"KEY ix_{name}_created (created, flag)",
    ]
    if index % 2:
        parts.append(f"KEY ix_{name}_title (title(20))")
    if index:
        parts.append(
            f"CONSTRAINT fk_{name} FOREIGN KEY (parent_id) REFERENCES t{index - 1:04d} (id)"
        )
    if index % 10 == 0:
        parts.append(f"CONSTRAINT ck_{name} CHECK (amount >= 0)")
    return f"CREATE TABLE {name} (\n  " + ",\n  ".join(parts) + "\n) ENGINE=InnoDB"


def build(server: sa.Engine, count: int, reuse: bool) -> None:
    with server.connect() as conn:
        have = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %(s)s",
            {"s": DATABASE},
        ).scalar_one()
        if reuse and have == count:
            return
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
        conn.exec_driver_sql(f"USE {DATABASE}")
        started = time.perf_counter()
        for index in range(count):
            conn.exec_driver_sql(table_ddl(index))
            if index % 200 == 199:
                print(f"  created {index + 1} of {count} tables", file=sys.stderr)
        print(f"  created in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def best(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--url", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args(argv)

    server = sa.create_engine(args.url)
    build(server, args.tables, args.reuse)
    server.dispose()
    engine = sa.create_engine(sa.make_url(args.url).set(database=DATABASE))
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None

        def floor() -> None:
            cursor = raw.cursor()
            for sql in _FLOOR:
                cursor.execute(sql, {"s": DATABASE})
                cursor.fetchall()
            cursor.close()

        fingerprint = read_fingerprint(conn)
        assert len(fingerprint.tables) == args.tables, len(fingerprint.tables)
        floor_times, ours_times = [], []
        for _ in range(args.repeat):  # alternated: both see the same server state
            floor_times.append(best(floor, 1))
            ours_times.append(best(lambda: read_fingerprint(conn), 1))
        floor_s, ours_s = min(floor_times), min(ours_times)

        def reflect() -> None:
            inspector = sa.inspect(conn)
            for name in inspector.get_table_names():
                inspector.get_columns(name)
                inspector.get_indexes(name)
                inspector.get_foreign_keys(name)
                inspector.get_check_constraints(name)

        reflect_s = best(reflect, 1)
    engine.dispose()

    ratio = ours_s / floor_s
    print(f"{args.tables} tables on {sa.make_url(args.url).render_as_string(hide_password=True)}")
    label = f"(best of {args.repeat})"
    queries = f"({len(_FLOOR)}, all rows fetched):"
    print(f"  bare catalog queries {queries:22} {floor_s:7.3f} s  {label}")
    print(f"  read_fingerprint:                           {ours_s:7.3f} s  {label}")
    print(f"  ratio: {ratio:.2f} (target {args.target})")
    print(f"  SQLAlchemy inspect() reflection:            {reflect_s:7.3f} s  (once)")
    print(f"  reflection / read_fingerprint: {reflect_s / ours_s:.1f}x")
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
