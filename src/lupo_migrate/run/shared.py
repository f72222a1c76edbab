"""What the orchestrator's modules share (shell): the run's result, reading step files,
telling statements apart, the failures steps turn into."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from lupo_migrate.core import state as sm
from lupo_migrate.core.errors import LupoMigrateError, StepError
from lupo_migrate.core.model import (
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Plan,
    Run,
    Step,
    StepId,
)
from lupo_migrate.core.names import normalise

if TYPE_CHECKING:
    from lupo_migrate.core.ports import Target


@attrs.frozen(kw_only=True)
class RunResult:
    """What a call to :meth:`Orchestrator.apply` did.

    Attributes:
        run: the run as it ended (None when there was nothing to do).
        plan: the plan it ran (empty when nothing was pending).
        applied: ids of the steps applied and kept.
        findings: every finding recorded.
    """

    run: Run | None
    plan: Plan
    applied: tuple[StepId, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def nothing_to_do(self) -> bool:
        """Whether every step was applied already."""
        return self.run is None

    @property
    def outcome(self) -> Outcome | None:
        """The run's outcome, or None when nothing ran."""
        return self.run.outcome if self.run is not None else None


@functools.lru_cache(maxsize=8)
def _real_root(root: Path) -> str:
    """*root* with symbolic links resolved, ending in a separator (for prefix checks)."""
    return os.path.join(os.path.realpath(root), "")


# Statements that never commit on their own, on any database: plain DML. (MySQL commits
# before DDL, LOCK TABLES, START TRANSACTION and more; anything not listed here is treated
# as possibly committing.)
_DML = re.compile(
    r"(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*(?![!+])[\s\S]*?\*/)*"
    r"(?i:insert|update|delete|replace)\b"
)


class Apply(Protocol):
    """``Orchestrator.apply``, handed to the parts that start an ordinary run of their own (a
    stopped downgrade applying again, the queue draining): they get the command, not the
    orchestrator."""

    def __call__(self, steps: Sequence[Step], *, upto: StepId | None = None) -> RunResult: ...


def _in_transaction(statement: str) -> bool:
    """Whether *statement* is plain DML, which commits or rolls back with its transaction."""
    return _DML.match(statement) is not None


# Statements that only read, or set a value of their session, and never commit on their own:
# on MySQL, SET commits only when it turns autocommit on, or sets a password or a role (and
# MariaDB's SET STATEMENT ... FOR runs another statement). Comments are skipped as in _DML.
_QUIET = re.compile(
    r"(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*(?![!+])[\s\S]*?\*/)*"
    r"(?i:select|do|show|explain|describe|desc"
    r"|set(?![\s\S]*\b(?:autocommit|password|role|statement|global|persist|persist_only)\b))\b",
    re.IGNORECASE,
)


def _commits_nothing(statement: str) -> bool:
    """Whether *statement* cannot commit on its own: plain DML, or a statement that only
    reads or sets a session value (``SELECT``, ``DO``, ``SHOW``, ``SET @x = ...``)."""
    return _DML.match(statement) is not None or _QUIET.match(statement) is not None


def _reason(exc: BaseException) -> str:
    """The database's own message, without SQLAlchemy's statement echo and links."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.split("\n[SQL:")[0].strip()


#: Phases whose resumed effect needs what the dead run measured before it migrated.
_RESUMED_WITH_FACTS: Final = frozenset(
    {sm.Phase.MIGRATING, sm.Phase.VALIDATING_POST, sm.Phase.COMPLETING}
)


class _StepCheckFailed(LupoMigrateError):
    """A step ran, but its during-validation failed."""


#: Statements that turn foreign key checks off (MySQL, SQLite, PostgreSQL's replica role).
_CHECKS_OFF = re.compile(
    r"foreign_key_checks\s*=\s*(?:0|off|false)|foreign_keys\s*=\s*(?:0|off|false|no)"
    r"|session_replication_role\s*=\s*'?replica",
    re.IGNORECASE,
)


@attrs.define
class _Rollback:
    """An operator's rollback of a completed run, while it is driven."""

    of: Run
    scope: Classification | None
    operator: str
    #: Steps of the run that stay applied (outside the scope).
    others: tuple[StepId, ...] = ()
    #: The objects whose pre-images may be put back (None: every touched object).
    only: set[str] | None = None
    #: The pre-images of *of*, read before the rollback started (None: none kept), and what
    #: reading them found to say.
    pre: Any = None
    findings: list[Finding] = attrs.field(factory=list)
    #: A downgrade to this step (see ``run.downgrade``): no kept pre-images; the downs alone.
    downgrade: StepId | None = None


def _family(target: Target) -> str:
    """The dialect family statements are written in (``mysql`` for MariaDB too)."""
    return "mysql" if target.dialect in ("mysql", "mariadb") else target.dialect


def _files_root(root: Path, files: Path | None) -> Path:
    """The files directory agent-folder and documentation steps change: *files* (setting
    ``files``), else the parent of the migrations directory *root* (as a step sees it)."""
    return files if files is not None else root.parent


def _read_under(root: Path, relpath: str, step: Step) -> str:
    """The text of *relpath* under *root* (LF line ends, no BOM), for *step*.

    A run reads each file more than once (the checks before it, then the step): a text read
    before is used again while the file it came from is unchanged (same inode, size and
    modification time), without resolving the path again.
    """
    key = (os.fspath(root), relpath)
    kept = _TEXTS.get(key)
    if kept is not None:
        real, stamp, text = kept
        with contextlib.suppress(OSError):
            if _stamp(os.stat(real)) == stamp:
                return text
    real = os.path.realpath(os.path.join(root, relpath))
    if not real.startswith(_real_root(root)):
        raise StepError(step.id, relpath, "path leaves the migrations root")
    with open(real, "rb") as file:
        stamp = _stamp(os.fstat(file.fileno()))
        text = normalise(file.read().decode("utf-8"))
    if stamp[1] <= _KEPT_SIZE:
        if len(_TEXTS) >= _TEXTS_KEPT:
            _TEXTS.clear()
        _TEXTS[key] = (real, stamp, text)
    return text


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


#: Texts read by :func:`_read_under`, by (root, relative path): the resolved path, its
#: (inode, size, mtime) when read, the text. Files up to ``_KEPT_SIZE`` bytes are kept;
#: emptied when it holds ``_TEXTS_KEPT`` files.
_TEXTS: dict[tuple[str, str], tuple[str, tuple[int, int, int], str]] = {}
_TEXTS_KEPT: Final = 4096
_KEPT_SIZE: Final = 1 << 20


def _rollback_failure(message: str) -> Failure:
    return Failure(kind=FailureKind.DATA_INTEGRITY, message=message, critical=True)


def _failure(step: Step, error: BaseException) -> Failure:
    return Failure(kind=FailureKind.STEP_FAILED_PARTWAY, message=str(error), step_id=step.id)


def _transactional(handler: Any) -> bool:
    """Whether a handler's work is in the step's database transaction (the default); one
    that changes files says ``transactional = False``."""
    return bool(getattr(handler, "transactional", True))


def pause_unless_stopped(seconds: float, stopped: Callable[[], bool]) -> None:
    """Wait *seconds* (before a retry after a lock wait ran out), in short slices: a stop
    asked meanwhile (*stopped* says so: ``request_stop``) ends the wait at once."""
    until = time.monotonic() + seconds
    while not stopped():
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
