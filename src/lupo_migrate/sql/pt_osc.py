"""pt-online-schema-change as the executor of an online copy (functional core: its command
line, the names it creates, what its progress lines say; the shell is
``backends/sqlalchemy/pt_osc``).

``copy_executor = "pt-online-schema-change"`` hands the copy of a statement the online
setting chose to copy (``sql.online``) to Percona's tool instead of lupo_migrate's own
(``sql.online_copy``), for teams that already trust it. The statement still runs under the
run's phases: the same refusals first (what a copy cannot reproduce exactly), the run's
checkpoint table marks the copy (``lupo-migrate copies`` lists it, ``recover`` settles it),
the old table is kept among the run's backups for the decision window, progress reaches the
events, and ``pause`` / ``resume`` / ``throttle`` from another process hold it through the
tool's pause file. What differs is the tool's: its triggers write the new table directly
(with the deadlocks and the writer latency that brings, see ``sql.online_copy``), it cannot
resume (a run killed mid-copy is copied again from the start) and it cannot postpone its
cut-over.

The tool is started with ``--no-drop-old-table`` (the old table becomes the run's backup),
``--new-table-name`` under the run's backup prefix (what a crash leaves is recognisable as
the run's), ``--recursion-method=none`` (replica lag is watched by lupo_migrate, through the
pause file) and the run's chunk time, lock wait and tries.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Final

from lupo_migrate.sql.online import EXECUTORS, LUPO, PT_OSC, check_executor

__all__ = [
    "EXECUTORS",
    "LUPO",
    "PHASE",
    "PT_OSC",
    "alter_clause",
    "check_executor",
    "command",
    "dsn",
    "last_error",
    "old_name",
    "progress",
    "triggers",
]

#: The checkpoint's phase while the tool runs.
PHASE: Final = "pt-osc"
#: MySQL/MariaDB's longest identifier; the tool's longest trigger name prefix.
_LONGEST: Final = 64
_TRIGGER_PREFIX: Final = 60
#: The underscores the tool puts before the old table's name before it turns to random ones.
_UNDERSCORES: Final = 10
_PROGRESS: Final = re.compile(r"Copying .*?:\s+(\d+)%\s+(?:(\d+):)?(\d+):(\d+) remain")
_INDEX: Final = re.compile(
    r"\A\s*create\s+(?P<kind>(?:fulltext\s+|spatial\s+)?)index\s+(?P<name>\S+)\s+"
    r"(?:using\s+\w+\s+)?on\s+\S+?\s*(?P<rest>\(.*)\Z",
    re.IGNORECASE | re.DOTALL,
)
#: Characters a DSN value cannot hold (the tool splits on them).
_DSN_UNSAFE: Final = re.compile(r"[,=]")


def alter_clause(statement_rest: str) -> str | None:
    """The tool's ``--alter`` for what a statement does to its table: the text after the
    table's name of an ``ALTER TABLE``, or a ``CREATE INDEX`` as ``ADD INDEX``; None when it
    cannot be said so.

    >>> alter_clause(" MODIFY amount BIGINT NOT NULL;")
    'MODIFY amount BIGINT NOT NULL'
    >>> alter_clause("CREATE INDEX t_k ON t (k)")
    'ADD INDEX t_k (k)'
    """
    rest = statement_rest.strip().rstrip(";").strip()
    found = _INDEX.match(rest)
    if found is not None:
        kind = " ".join(found.group("kind").split()).upper()
        kind = f"{kind} " if kind else ""
        return f"ADD {kind}INDEX {found.group('name')} {found.group('rest').strip()}"
    if re.match(r"create\b", rest, re.IGNORECASE):
        return None
    return rest or None


def triggers(database: str, table: str) -> tuple[str, str, str]:
    """The names of the tool's triggers on *table* (after insert, update, delete).

    >>> triggers("shop", "orders")
    ('pt_osc_shop_orders_ins', 'pt_osc_shop_orders_upd', 'pt_osc_shop_orders_del')
    """
    prefix = re.sub(r"\W", "_", f"pt_osc_{database}_{table}")[:_TRIGGER_PREFIX]
    return (f"{prefix}_ins", f"{prefix}_upd", f"{prefix}_del")


def old_name(table: str, existing: Collection[str]) -> str | None:
    """The name the tool gives the old table at its cut-over, given the tables there are:
    ``_<table>_old`` with one more leading underscore for each name taken; None when ten
    are taken (the tool then picks a random one).

    >>> old_name("t", {"t", "_t_old"})
    '__t_old'
    """
    name = f"{table}_old"
    for _ in range(_UNDERSCORES):
        name = ("_" + name)[:_LONGEST]
        if name not in existing:
            return name
    return None


def progress(line: str) -> tuple[int, float] | None:
    """What one of the tool's progress lines says: the percentage copied and the seconds
    it expects are left; None for another line.

    >>> progress("Copying `shop`.`orders`:  45% 01:02 remain")
    (45, 62.0)
    """
    found = _PROGRESS.search(line)
    if found is None:
        return None
    hours, minutes, seconds = (int(g or 0) for g in found.group(2, 3, 4))
    return int(found.group(1)), float(hours * 3600 + minutes * 60 + seconds)


def dsn(
    database: str,
    table: str,
    *,
    host: str | None,
    port: int | None,
    user: str | None,
    socket: str | None,
) -> str | None:
    """The tool's DSN for *table*; None when a value holds a character a DSN cannot (the
    password is not in it: the shell gives it in the tool's environment).

    >>> dsn("shop", "orders", host="db1", port=3306, user="app", socket=None)
    'D=shop,t=orders,h=db1,P=3306,u=app'
    """
    parts = [("D", database), ("t", table), ("h", host)]
    parts += [("P", None if port is None else str(port)), ("u", user), ("S", socket)]
    values = [(k, v) for k, v in parts if v]
    if any(_DSN_UNSAFE.search(v) for _k, v in values):
        return None
    return ",".join(f"{k}={v}" for k, v in values)


def command(
    tool: str,
    alter: str,
    target: str,
    *,
    new_table: str,
    chunk_time: float,
    most_threads: int,
    lock_wait: int,
    tries: int,
    backoff: float,
    pause_file: str,
) -> list[str]:
    """The tool's command line for one copy (*target*: its DSN)."""
    each = f"{max(1, tries)}:{max(backoff, 0.01):g}"
    return [
        tool,
        "--alter",
        alter,
        target,
        "--execute",
        "--no-drop-old-table",
        "--new-table-name",
        new_table,
        "--recursion-method=none",
        "--progress",
        "time,1",
        "--chunk-time",
        f"{chunk_time:g}",
        "--max-load",
        f"Threads_running={most_threads if most_threads > 0 else 1_000_000}",
        "--set-vars",
        f"lock_wait_timeout={max(1, lock_wait)}",
        "--tries",
        ",".join(f"{op}:{each}" for op in ("create_triggers", "drop_triggers", "swap_tables")),
        "--pause-file",
        pause_file,
    ]


def last_error(lines: Sequence[str]) -> str:
    """What the tool said when it failed: its last lines that are not progress."""
    said = [ln.strip() for ln in lines if ln.strip() and progress(ln) is None]
    return " ".join(said[-3:]) or "no output"
