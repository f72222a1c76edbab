"""Fault injection for the crash tests: ``lupo-migrate apply`` that kills itself (-9) at a chosen
effect boundary.

    python tests/_killer.py event N ARGS...      after the N-th transition is persisted (0-based),
                                                 before its effects are carried out
    python tests/_killer.py before N ARGS...     before the N-th statement is sent (its journal
                                                 intent is written: MySQL DDL is announced first)
    python tests/_killer.py after N ARGS...      after the N-th statement ran, before its journal
                                                 row is marked done
    python tests/_killer.py file N ARGS...       after a documentation step wrote its N-th file
    python tests/_killer.py copy N ARGS...       while the N-th pre-image copy is made (its backup
                                                 table created, not yet filled)

ARGS are ``apply``'s (directory, --db, --orchestration-schema), and ``--rollback RUN`` to run
an operator's rollback of RUN instead of apply (with ``--conflicts keep|undo``). Exits 3 when
the run ended before the boundary was reached (the caller asked for one past the end).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from lupo_migrate.cli import _settings
from lupo_migrate.session import session


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Killing:
    """The target, dying around its N-th statement."""

    def __init__(self, inner: Any, mode: str, at: int) -> None:
        self._inner, self._mode, self._at, self._count = inner, mode, at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def execute(self, connection: Any, statement: str) -> None:
        if self._mode == "before" and self._count == self._at:
            _die()
        self._inner.execute(connection, statement)
        if self._mode == "after" and self._count == self._at:
            _die()
        self._count += 1


def main(argv: list[str]) -> int:
    mode, at, directory, *rest = argv
    target = int(at)
    pairs = dict(zip(rest[::2], rest[1::2], strict=True))
    settings = _settings(
        directory=Path(directory),
        db=pairs["--db"],
        target_name=None,
        manifest=None,
        config=None,
        renames=(),
        orchestration_schema=pairs.get("--orchestration-schema"),
    )
    with session.session(settings) as opened:
        orchestrator = opened.orchestrator
        count = [0]
        if mode == "event":

            def on_event(_run: Any, _event: object) -> None:
                if count[0] == target:
                    _die()
                count[0] += 1

            orchestrator.on_event = on_event
        elif mode == "file":
            from lupo_migrate.handlers import documentation

            write = documentation.write_atomically

            def dying_write(path: Path, data: bytes) -> None:
                write(path, data)
                if count[0] == target:
                    _die()
                count[0] += 1

            documentation.write_atomically = dying_write  # type: ignore[assignment]
        elif mode == "copy":
            from lupo_migrate.backends.sqlalchemy import _snapshot

            copy = _snapshot.copy_rows

            def dying_copy(conn: Any, table: str, backup: str, *args: Any, **kw: Any) -> None:
                if count[0] == target:
                    conn.exec_driver_sql(f"CREATE TABLE {backup} LIKE {table}")
                    _die()
                count[0] += 1
                copy(conn, table, backup, *args, **kw)

            _snapshot.copy_rows = dying_copy  # type: ignore[assignment]
        else:
            orchestrator.target = _Killing(orchestrator.target, mode, target)
        if "--rollback" in pairs:
            orchestrator.rollback(
                pairs["--rollback"],
                opened.steps,
                operator="day shift",
                conflicts=pairs.get("--conflicts"),
            )
        else:
            opened.apply()
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
