"""An online copy by pt-online-schema-change (imperative shell of :mod:`lupo_migrate.sql.pt_osc`,
which says what differs from lupo_migrate's own copy).

:func:`copy_with_pt_osc` runs the tool as a child process for one statement: the run's
checkpoint table first (``lupo-migrate copies`` lists the copy; ``recover`` settles what a
crash leaves, see ``online_copy.settle``), then the tool, whose progress lines become the
run's ``progress`` events; every half second the checkpoint's controls, the server's
``Threads_running`` and the replicas' lag are read, and the tool's pause file is made while
the copy must wait. The child is killed with its parent (``PR_SET_PDEATHSIG``): a run killed
with kill -9 leaves no tool copying on, only tables and triggers ``recover`` knows.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from lupo_migrate.backends.sqlalchemy import online_copy as _oc
from lupo_migrate.sql import online_copy as oc
from lupo_migrate.sql import pt_osc as pt
from lupo_migrate.sql.online import after_table

__all__ = ["Connection", "copy_with_pt_osc"]

#: Seconds between two looks at the controls, the server and the tool.
_LOOK: Final = 0.5
#: Seconds the tool is given to end after it is asked to (then it is killed).
_GRACE: Final = 10.0
_PR_SET_PDEATHSIG: Final = 1


class Connection:
    """How the tool reaches the server: the parts of the run's database URL."""

    def __init__(
        self,
        *,
        host: str | None,
        port: int | None,
        user: str | None,
        password: str | None,
        socket: str | None,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self.password, self.socket = password, socket


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the child before it runs the tool: killed when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def copy_with_pt_osc(
    dbapi: Any,
    statement: str,
    table: str,
    *,
    connection: Connection,
    run_id: str,
    backup_prefix: str,
    backup_schema: str | None,
    settings: _oc.CopySettings,
    report: Callable[[Mapping[str, Any]], None],
    stopped: Callable[[], str | None],
    required: bool,
) -> None:
    """Run *statement* (an ``ALTER TABLE`` or ``CREATE INDEX`` of *table*) by
    pt-online-schema-change, on the database of the driver connection *dbapi*.

    Raises ``NotCopyable`` when the statement or table cannot be copied exactly (nothing was
    changed), ``CopyFailed`` when the tool is missing (nothing was changed) or fails (what it
    made is dropped, the original table is as it was)."""
    tool = shutil.which(pt.PT_OSC)
    if tool is None:
        raise _oc.CopyFailed(
            "copy_executor is pt-online-schema-change, which is not installed here (not on"
            " PATH): install percona-toolkit, or set copy_executor = lupo"
        )
    cur = _oc._Cursor(dbapi)
    database = str(cur.rows("SELECT DATABASE()")[0][0])
    schema, name = _oc._split(table)
    if schema is not None and schema != database:
        raise _oc.NotCopyable(f"{table} is in another database than the connection's")
    names = oc.names_for(backup_prefix, run_id, name)
    if cur.exists(names.checkpoint):  # this run's copy, begun before a crash
        phase, old = _oc.external_phase(cur, names)
        if phase == pt.PHASE and _oc.state(dbapi, backup_prefix, run_id, name) == "cut over":
            _tidy(cur, names, old, backup_schema, report)
            return
        if phase == pt.PHASE:
            _oc.discard_external(cur, names)
        else:  # lupo_migrate's own, begun before copy_executor changed
            _oc.discard_own(cur, names, statement)
        report({"event": "restarted", "table": name, "reason": f"{pt.PT_OSC} cannot resume"})
    # Its leftover triggers dropped first: the refusal would take them for the table's own.
    # An earlier run's swap-back of the table ends (its triggers would stay on the old one).
    _oc.end_swap_backs(cur, names, table=name)
    why = _oc.refusal(dbapi, statement, least_rows=settings.least_rows, required=required)
    if why is not None:
        raise _oc.NotCopyable(why)
    alter = pt.alter_clause(after_table(statement) or "")
    if alter is None:
        raise _oc.NotCopyable("pt-online-schema-change cannot be given it as an --alter")
    if cur.exists(names.old):
        raise _oc.CopyFailed(
            f"{names.old} is in the way (an earlier copy's old table); drop it or run"
            " `lupo-migrate recover`"
        )
    existing = {
        str(r[0])
        for r in cur.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
    }
    old = pt.old_name(name, existing)
    if old is None:
        raise _oc.CopyFailed(f"ten tables named _..._{name}_old are in the way; drop them")
    estimated = int(
        (
            cur.rows(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = %s",
                name,
            )
            or [(0,)]
        )[0][0]
        or 0
    )
    _oc.create_checkpoint(cur, names, statement, estimated, pt.PHASE, old_table=old)
    try:
        code, said = _run_tool(
            tool,
            alter,
            (database, name),
            names,
            connection,
            settings,
            cur,
            estimated,
            report,
            stopped,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            if _oc.state(dbapi, backup_prefix, run_id, name) != "cut over":
                _oc.discard_external(cur, names)
        raise
    if code == 0 and _oc.state(dbapi, backup_prefix, run_id, name) != "cut over":
        old = _swapped_out(cur, names, existing) or old
    if _oc.state(dbapi, backup_prefix, run_id, name) == "cut over":
        report({"event": "cut_over", "table": name, "executor": pt.PT_OSC})
        _tidy(cur, names, old, backup_schema, report)
        return
    _oc.discard_external(cur, names)
    why = stopped()
    if why:
        raise _oc.CopyFailed(f"stopped: {why}")
    raise _oc.CopyFailed(f"pt-online-schema-change failed (exit {code}): {pt.last_error(said)}")


def _swapped_out(cur: Any, names: oc.CopyNames, existing: set[str]) -> str | None:
    """The tool's old table after a swap that named it otherwise than foreseen (a name taken
    meanwhile: the tool then adds underscores, or random letters): the one table new since
    the tool began, noted in the checkpoint. None when the swap did not happen."""
    if cur.exists(names.shadow):
        return None
    now = {
        str(r[0])
        for r in cur.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
    }
    new = sorted(now - existing - {names.checkpoint})
    if len(new) != 1:
        return None
    cur.run(f"UPDATE {_oc._q(names.checkpoint)} SET old_table = %s WHERE id = 1", new[0])
    cur.commit()
    return new[0]


def _tidy(
    cur: Any,
    names: oc.CopyNames,
    old: str | None,
    backup_schema: str | None,
    report: Callable[[Mapping[str, Any]], None],
) -> None:
    """After the tool's cut-over: see ``online_copy.finish_external``; a failure is told,
    not raised (the statement has run)."""
    try:
        _oc.finish_external(cur, names, old, backup_schema)
    except Exception as exc:
        if _oc._lost(exc):
            raise
        report({"event": "tidy_failed", "table": names.table, "reason": str(exc)})


def _run_tool(
    tool: str,
    alter: str,
    where: tuple[str, str],
    names: oc.CopyNames,
    connection: Connection,
    settings: _oc.CopySettings,
    cur: Any,
    estimated: int,
    report: Callable[[Mapping[str, Any]], None],
    stopped: Callable[[], str | None],
) -> tuple[int, list[str]]:
    """Run the tool to its end on *where* (database, table); its exit code and what it
    said."""
    database, table = where
    target = pt.dsn(
        database,
        table,
        host=connection.host,
        port=connection.port,
        user=connection.user,
        socket=connection.socket,
    )
    if target is None:
        raise _oc.NotCopyable("pt-online-schema-change cannot name it in a DSN (a , or =)")
    # The tool's pause file: named by the run's copy, so none is left to hold another.
    pause = Path(tempfile.gettempdir()) / f"lupo-pt-osc-{names.shadow}.pause"
    pause.unlink(missing_ok=True)  # left by a run killed while it held the copy
    argv = pt.command(
        tool,
        alter,
        target,
        new_table=names.shadow,
        chunk_time=settings.chunk_time,
        most_threads=settings.most_threads,
        lock_wait=settings.cutover_wait,
        tries=settings.cutover_tries,
        backoff=settings.backoff,
        pause_file=str(pause),
    )
    # The password reaches the tool's client library in its environment (MYSQL_PWD), which
    # only this user can read: never on the command line, where ps shows it, nor in a file
    # a kill -9 would leave behind.
    environment = dict(os.environ)
    environment.pop("MYSQL_PWD", None)
    if connection.password:
        environment["MYSQL_PWD"] = connection.password
    try:
        child = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        said: list[str] = []
        reader = threading.Thread(
            target=_read, args=(child, said, table, estimated, report), daemon=True
        )
        reader.start()
        try:
            _watch(child, cur, names, settings, pause, report, stopped)
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            reader.join(_GRACE)
        return int(child.returncode), said
    finally:
        pause.unlink(missing_ok=True)


def _read(
    child: subprocess.Popen[bytes],
    said: list[str],
    table: str,
    estimated: int,
    report: Callable[[Mapping[str, Any]], None],
) -> None:
    """The tool's output, line by line (a progress report ends in a carriage return)."""
    assert child.stdout is not None
    pending = b""
    while True:
        block = os.read(child.stdout.fileno(), 4096)
        if not block:
            break
        pending += block
        *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            said.append(line)
            found = pt.progress(line)
            if found is not None:
                percent, left = found
                total = max(estimated, 1)
                report(
                    {
                        "event": "progress",
                        "table": table,
                        "copied": total * percent // 100,
                        "total": total,
                        "eta": left,
                        "executor": pt.PT_OSC,
                    }
                )
    if pending:
        said.append(pending.decode("utf-8", "replace"))


def _watch(
    child: subprocess.Popen[bytes],
    cur: Any,
    names: oc.CopyNames,
    settings: _oc.CopySettings,
    pause: Path,
    report: Callable[[Mapping[str, Any]], None],
    stopped: Callable[[], str | None],
) -> None:
    """Until the tool ends: the pause file made while the copy must wait (paused by an
    operator, the server busy, a replica behind), removed when it may go on; a stop asked
    ends the tool."""
    said = ""
    while child.poll() is None:
        if stopped():
            return
        controls = _controls(cur, names)
        if controls.get("paused"):
            reason = "paused by an operator (`lupo-migrate resume` goes on)"
        else:
            most = controls.get("most_threads")
            most = settings.most_threads if most is None else int(most)
            lag = settings.replica_lag() if settings.replica_lag else None
            running = cur.status("Threads_running") if most > 0 else None
            reason = oc.throttled(running, most, lag, settings.most_lag)
        if reason:
            pause.touch()
            if reason != said:
                report({"event": "throttled", "table": names.table, "reason": reason})
        else:
            pause.unlink(missing_ok=True)
        said = reason
        try:
            child.wait(_LOOK)
        except subprocess.TimeoutExpired:
            continue


def _controls(cur: Any, names: oc.CopyNames) -> dict[str, Any]:
    rows = cur.rows(f"SELECT paused, most_threads FROM {_oc._q(names.checkpoint)} WHERE id = 1")
    cur.commit()  # the next read sees what another process set meanwhile
    if not rows:
        return {}
    return {"paused": bool(rows[0][0]), "most_threads": rows[0][1]}
