"""Every exception lupo_migrate raises.

The hierarchy (catch ``LupoMigrateError`` for all of them)::

    LupoMigrateError
    ├── InvalidArgumentError (also TypeError)      a public argument is wrong
    ├── InternalError                              a lupo_migrate bug: please report it
    ├── IllegalTransitionError                     an event the run's phase does not accept
    │   └── TargetBlockedError                     a failed rollback blocks the target
    ├── MigrationFileError                         one or more migration files are unusable
    │   ├── DiscoveryError                         a directory or path cannot be walked safely
    │   └── HeaderError                            a header cannot be read or breaks the schema
    ├── PlanError                                  the steps cannot be ordered
    │   ├── DependencyCycleError                   steps depend on each other in a circle
    │   ├── UnknownDependencyError                 steps name dependencies that do not exist
    │   └── UnknownTargetError                     "plan up to X" names no step
    ├── RegistryError                              handler registration or lookup
    │   ├── HandlerProtocolError (also TypeError)  a handler lacks methods of the protocol
    │   ├── DuplicateHandlerError                  two handlers for one file type
    │   └── NoHandlerError                         no handler for a file
    ├── StepError                                  applying or undoing a step failed
    │   ├── StatementError                         the database refused one statement
    │   ├── ConnectionLostError                    the connection dropped during a statement
    │   └── BlockedError                           sessions hold a table DDL must change
    ├── ConfigurationError                         settings, DSN or connection unusable
    ├── DecisionError                              a rollback or acceptance not allowed now
    │   └── RollbackConflictError                  it would overwrite what was written since
    ├── StorageError                               the storage backend failed
    │   └── ConcurrentUpdateError                  a compare-and-set write found another version
    └── LockError                                  the run lock backend failed
        └── LockHeldError (also TimeoutError)      someone else holds the run lock
            └── StillRunningError                  a dead run's statement still runs

Errors keep their facts as attributes (``path``, ``line``, ``cycle``, ``holder``...) and build
their message from them; every message says what happened and what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lupo_migrate.core.stamps import shown

if TYPE_CHECKING:
    from lupo_migrate.core.model import Finding

__all__ = [
    "BlockedError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConnectionLostError",
    "DecisionError",
    "DependencyCycleError",
    "DiscoveryError",
    "DuplicateHandlerError",
    "HandlerProtocolError",
    "HeaderError",
    "IllegalTransitionError",
    "InternalError",
    "InvalidArgumentError",
    "LockError",
    "LockHeldError",
    "LupoMigrateError",
    "MigrationFileError",
    "NoHandlerError",
    "OutOfOrderError",
    "PlanError",
    "RegistryError",
    "RollbackConflictError",
    "RollbackIncompleteError",
    "SchemaDriftError",
    "StatementError",
    "StepError",
    "StillRunningError",
    "StorageError",
    "TargetBlockedError",
    "UnknownDependencyError",
    "UnknownTargetError",
    "WritesFrozenError",
]


class LupoMigrateError(Exception):
    """Root of every error lupo_migrate raises on purpose."""

    #: Exit code the command line uses for this category of error.
    exit_code: int = 1


class InvalidArgumentError(LupoMigrateError, TypeError):
    """A public function was called with an argument it cannot use."""

    exit_code = 2


class InternalError(LupoMigrateError):
    """An invariant of lupo_migrate itself broke: this is a bug, please report it."""

    exit_code = 70

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message} (this is a lupo_migrate bug; please report it with the traceback,"
            " shown by --traceback)"
        )


class IllegalTransitionError(LupoMigrateError):
    """An event arrived in a phase that does not accept it; nothing changed.

    Attributes:
        run_id: the run concerned.
        phase: the phase the run was in (its ``value``).
        event: the name of the event type.
        allowed: the names of the event types the phase accepts.
    """

    exit_code = 3

    def __init__(
        self,
        run_id: str,
        phase: str,
        event: str,
        allowed: Sequence[str],
        *,
        reason: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.phase = phase
        self.event = event
        self.allowed = tuple(allowed)
        self.reason = reason
        accepts = ", ".join(self.allowed) if self.allowed else "no event (the run has ended)"
        message = (
            f"run {run_id} is {phase.upper()} and cannot accept {event};"
            f" {phase.upper()} accepts {accepts}."
        )
        if reason:
            message += f" {reason}"
        super().__init__(message)


class TargetBlockedError(IllegalTransitionError):
    """The target takes no new run: a rollback failed earlier (until ``resolve``), or a run
    died and is not finished (until ``recover``).

    Its message is in the operator's words (what happened, the command to run); the state
    machine's (phase, event, allowed events) stay in the attributes.
    """

    exit_code = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.reason:
            self.args = (f"no new run can start: {self.reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


class MigrationFileError(LupoMigrateError):
    """One or more migration files cannot be used.

    Attributes:
        problems: every problem found, as findings (path, line, message, hint), so that a
            directory with several bad files reports all of them at once.
    """

    exit_code = 5

    def __init__(self, problems: Iterable[Finding]) -> None:
        self.problems: tuple[Finding, ...] = tuple(problems)
        lines = [str(p) for p in self.problems]
        count = len(lines)
        head = "1 migration file problem" if count == 1 else f"{count} migration file problems"
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class DiscoveryError(MigrationFileError):
    """A migration directory or path cannot be walked safely (missing, escaping, a loop)."""


class HeaderError(MigrationFileError):
    """A migration file's header cannot be read, or does not match the header schema."""


class PlanError(LupoMigrateError):
    """The steps cannot be put in an order."""

    exit_code = 6


class DependencyCycleError(PlanError):
    """Steps depend on each other in a circle.

    Attributes:
        cycle: the step ids of the cycle, in dependency order, the first repeated at the end.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            "dependency cycle: "
            + " -> ".join(self.cycle)
            + ". Remove one of these dependencies (a step cannot need what needs it)."
        )


class UnknownDependencyError(PlanError):
    """Steps name dependencies that are not among the steps.

    Attributes:
        missing: each unknown dependency mapped to the ids of the steps that named it.
    """

    def __init__(self, missing: Mapping[str, Sequence[str]]) -> None:
        self.missing = {dep: tuple(sorted(by)) for dep, by in sorted(missing.items())}
        parts = [f"{dep!r} (named by {', '.join(by)})" for dep, by in self.missing.items()]
        super().__init__(
            f"{len(parts)} unknown dependenc{'y' if len(parts) == 1 else 'ies'}: "
            + "; ".join(parts)
            + ". Add the missing migration files, or correct the ids in depends_on."
        )


class UnknownTargetError(PlanError):
    """A plan was asked to stop at a step id that does not exist."""

    def __init__(self, target: str, known: Sequence[str]) -> None:
        self.target = target
        sample = ", ".join(sorted(known)[:10])
        more = "" if len(known) <= 10 else f" and {len(known) - 10} more"
        super().__init__(
            f"no step {target!r} to plan up to; known steps: {sample}{more}."
            " Use an id that `lupo-migrate plan` lists."
        )


class OutOfOrderError(PlanError):
    """A pending versioned file has a lower version than one applied already.

    Attributes:
        late: ``(path, version)`` of each such pending file, in plan order.
        highest: ``(path, version)`` of the highest version applied.
    """

    def __init__(self, late: Sequence[tuple[str, str]], highest: tuple[str, str]) -> None:
        self.late = tuple(late)
        self.highest = highest
        (path, version), others = self.late[0], self.late[1:]
        more = (
            f" (so {'is' if len(others) == 1 else 'are'} {', '.join(p for p, _ in others)})"
            if others
            else ""
        )
        super().__init__(
            f"{path} (version {version}) is pending but version {highest[1]} ({highest[0]}) is"
            f" applied already: it would run out of order{more}. Pass --out-of-order (or set"
            " out_of_order = true in lupo.toml) to apply it anyway, or renumber it above"
            f" {highest[1]}."
        )


class RegistryError(LupoMigrateError):
    """A handler could not be registered or looked up."""

    exit_code = 7


class HandlerProtocolError(RegistryError, TypeError):
    """A handler was registered that lacks methods or attributes of the ``Handler`` protocol."""

    def __init__(self, handler: object, missing: Sequence[str]) -> None:
        self.handler = handler
        self.missing = tuple(missing)
        super().__init__(
            f"{handler!r} is not a Handler: missing {', '.join(self.missing)}."
            " See lupo_migrate.core.ports.Handler for what a handler provides."
        )


class DuplicateHandlerError(RegistryError):
    """Two handlers claim the same file type."""

    def __init__(self, file_type: str, existing: object, new: object) -> None:
        self.file_type = file_type
        self.existing = existing
        self.new = new
        super().__init__(
            f"file type {file_type!r} is already handled by {existing!r}; cannot also register"
            f" {new!r}. Unregister the first, or give the new handler another file type."
        )


class NoHandlerError(RegistryError):
    """No registered handler accepts a file."""

    def __init__(self, what: str, registered: Sequence[str]) -> None:
        self.what = what
        self.registered = tuple(sorted(registered))
        listed = ", ".join(self.registered) or "none"
        super().__init__(
            f"no handler for {what}; registered: {listed}. Register one, or install a package"
            " providing the 'lupo_migrate.handlers' entry point."
        )


class StepError(LupoMigrateError):
    """Applying or undoing a step failed.

    Attributes:
        step_id: the step.
        path: its file, relative to the migrations root.
    """

    exit_code = 11

    def __init__(self, step_id: str, path: str, message: str) -> None:
        self.step_id = step_id
        self.path = path
        super().__init__(f"{path}: step {step_id}: {message}")


class RollbackIncompleteError(StepError):
    """A run failed and its rollback could not finish: the target is blocked (exit 15, where
    a run that failed and was rolled back cleanly exits 11). Put the database right by hand
    (``status`` and ``show`` say what is left), then ``resolve``."""

    exit_code = 15


class StatementError(StepError):
    """The database refused one statement of a step.

    Attributes:
        index: the statement's 0-based position in the step.
        line: its first line in the file (None if unknown).
        statement: the statement text (first 200 characters in the message).
        reason: the database's own message.
        what: how the message names the statement (default ``statement N``, N from 1).
    """

    def __init__(
        self,
        step_id: str,
        path: str,
        *,
        index: int,
        line: int | None,
        statement: str,
        reason: str,
        what: str | None = None,
    ) -> None:
        self.index = index
        self.line = line
        self.statement = statement
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        short = " ".join(statement.split())
        short = short if len(short) <= 200 else short[:197] + "..."
        StepError.__init__(self, step_id, path, "")
        Exception.__init__(
            self,
            f"{where}: step {step_id}, {what or f'statement {index + 1}'} failed: {reason}"
            f"\n  {short}",
        )


class ConnectionLostError(StepError):
    """The connection dropped after a statement was sent: whether it ran is unknown until the
    live schema is looked at (the statement is never sent again blindly).

    Attributes:
        index: the statement's 0-based position in the step.
        statement: the statement text.
        reason: the driver's message.
    """

    def __init__(self, step_id: str, path: str, *, index: int, statement: str, reason: str) -> None:
        self.index = index
        self.statement = statement
        self.reason = reason
        StepError.__init__(
            self,
            step_id,
            path,
            f"the connection dropped during statement {index + 1} ({reason}); its outcome is"
            " looked up in the live schema and the run rolled back",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_lost,
            (self.step_id, self.path, self.index, self.statement, self.reason),
        )


def _rebuild_lost(
    step_id: str, path: str, index: int, statement: str, reason: str
) -> ConnectionLostError:
    return ConnectionLostError(step_id, path, index=index, statement=statement, reason=reason)


class BlockedError(StepError):
    """Other sessions hold a table a DDL statement must change, longer than the configured
    wait: a transient failure (retry once they are gone); nothing of the statement ran.

    Attributes:
        sessions: how each blocking session was described (id, user, age, state, tables).
        waited: seconds waited.
        index: the statement's 0-based position in the step (None if unknown).
        timed_out: the statement was sent and gave up waiting for its lock (the server's
            ``lock_wait_timeout`` / ``lock_timeout``), rather than held back unsent while
            other sessions' transactions held its tables (``long_transaction_wait``). A run
            retries a step that timed out (``lock_retries``), with a growing pause.
        attempts: how many times the step was tried before it gave up (1: not retried).
    """

    def __init__(
        self,
        step_id: str,
        path: str,
        *,
        sessions: Sequence[str],
        waited: float,
        index: int | None = None,
        timed_out: bool = False,
        attempts: int = 1,
    ) -> None:
        self.sessions = tuple(sessions)
        self.waited = waited
        self.index = index
        self.timed_out = timed_out
        self.attempts = attempts
        which = "a statement" if index is None else f"statement {index + 1}"
        tries = f" (each of {attempts} tries)" if attempts > 1 else ""
        StepError.__init__(
            self,
            step_id,
            path,
            f"transient: {which} waited {waited:.1f} s{tries} for {'; '.join(self.sessions)};"
            " it did not run. Retry once that transaction ends (or end it);"
            " long_transaction_wait, lock_wait_timeout and lock_retries set how long a run"
            " waits",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_blocked,
            (
                self.step_id,
                self.path,
                self.sessions,
                self.waited,
                self.index,
                self.timed_out,
                self.attempts,
            ),
        )


def _rebuild_blocked(
    step_id: str,
    path: str,
    sessions: Sequence[str],
    waited: float,
    index: int | None,
    timed_out: bool = False,
    attempts: int = 1,
) -> BlockedError:
    return BlockedError(
        step_id,
        path,
        sessions=sessions,
        waited=waited,
        index=index,
        timed_out=timed_out,
        attempts=attempts,
    )


class SchemaDriftError(LupoMigrateError):
    """Nothing is pending, but the database no longer holds tables the applied migrations
    left (it was recreated, emptied or restored from an older backup while lupo_migrate's
    record of it stayed): nothing was applied (exit 16). The message names the tables and
    where that record is.

    Attributes:
        missing: the tables the last run left that are gone.
    """

    exit_code = 16

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = tuple(missing)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.missing))


class ConfigurationError(LupoMigrateError):
    """The settings, the database URL or the connection cannot be used; the message says how."""

    exit_code = 12


class DecisionError(LupoMigrateError):
    """A rollback, acceptance or resolution the rollback log does not allow now: no such run,
    a run that did not complete, a closed window, a later run in the way; the message says
    what to do instead."""

    exit_code = 13


class RollbackConflictError(DecisionError):
    """Rolling back a completed run would overwrite or lose what was written since it (rows
    the application changed again, data in tables the run created), or what it changed was
    changed again; nothing was touched.

    Attributes:
        preview: the :class:`~lupo_migrate.RollbackPreview` that says what and where.
    """

    def __init__(self, message: str, preview: Any) -> None:
        self.preview = preview
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.preview))


class StorageError(LupoMigrateError):
    """The storage backend failed; the original exception is chained as ``__cause__``."""

    exit_code = 8


class ConcurrentUpdateError(StorageError):
    """A compare-and-set write found a version other than the one expected."""

    def __init__(self, table: str, run_id: str, expected: int, found: int | None) -> None:
        self.table = table
        self.run_id = run_id
        self.expected = expected
        self.found = found
        super().__init__(
            f"{table}: run {run_id} was expected at version {expected} but is at"
            f" {'no version (missing)' if found is None else found}; another process changed"
            " it. Re-read the run and retry, or check for a second orchestrator."
        )


class LockError(LupoMigrateError):
    """The run lock backend failed."""

    exit_code = 9


class LockHeldError(LockError, TimeoutError):
    """Another owner holds the run lock.

    Attributes:
        name: the lock name.
        holder: who holds it, as recorded (may be None if the backend cannot tell).
        since: when they took it, ``YYYYMMDDHHMMSS`` UTC (None if unknown).
    """

    exit_code = 10

    def __init__(self, name: str, holder: str | None, since: int | None = None) -> None:
        self.name = name
        self.holder = holder
        self.since = since
        who = holder if holder is not None else "another process"
        when = f" since {shown(since)}" if since is not None else ""
        if name == "write freeze":
            super().__init__(
                f"writes are frozen by {who}{when}; the freeze ends by itself when its lease"
                " runs out. If that process is gone: `lupo-migrate thaw --emergency --reason"
                " TEXT`."
            )
            return
        super().__init__(
            f"run lock {name!r} is held by {who}{when}. Wait for that run to finish, or check"
            " `lupo-migrate status` if it may have crashed."
        )

    def __reduce__(self) -> tuple[type[LockHeldError], tuple[str, str | None, int | None]]:
        return (type(self), (self.name, self.holder, self.since))


class StillRunningError(LockHeldError):
    """A statement of a run whose process (or connection) died still runs on the server: its
    session ends only when the statement does. Recovering before then would read a schema
    the statement is still changing.

    Attributes:
        session: the server's id of that session.
        statement: what it runs (None if the server does not say).
        seconds: how long it has run (None if unknown).
        waited: how long recovery waited for it.
    """

    def __init__(
        self, session: int, statement: str | None, seconds: float | None, waited: float
    ) -> None:
        self.session, self.statement = session, statement
        self.seconds, self.waited = seconds, waited
        self.name, self.holder, self.since = "statements", f"session {session}", None
        what = "" if statement is None else f" ({' '.join(statement.split())[:120]})"
        took = "" if seconds is None else f", running for {seconds:.0f} s"
        LupoMigrateError.__init__(
            self,
            f"a statement of the run that died still runs on session {session}{what}{took};"
            f" recovery waited {waited:.0f} s for it to finish. Wait until it does (or end it"
            f" with KILL {session}, which rolls back what it had not finished), then recover"
            " again.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.session, self.statement, self.seconds, self.waited))


class WritesFrozenError(LupoMigrateError):
    """A write was refused: a migration froze writes (the statement was not sent).

    Attributes:
        owner: who froze them.
        expires: when the freeze ends by itself, ``YYYYMMDDHHMMSS`` UTC.
    """

    exit_code = 14

    def __init__(self, owner: str, expires: int) -> None:
        self.owner = owner
        self.expires = expires
        super().__init__(
            f"writes are frozen by {owner} (a migration is running) until {shown(expires)} at"
            " the latest; nothing was written. Retry after the thaw."
        )

    def __reduce__(self) -> tuple[type[WritesFrozenError], tuple[str, int]]:
        return (type(self), (self.owner, self.expires))
