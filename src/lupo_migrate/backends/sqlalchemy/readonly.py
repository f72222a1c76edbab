"""The write freeze as the server's ``read_only`` flag (MySQL/MariaDB), thawed by the server.

Opt-in. :class:`ReadOnlyFreeze` keeps a :class:`~lupo_migrate.backends.sqlalchemy.SqlAlchemyFreeze`
lease row, which stays the truth of who froze and until when (hosts and :func:`guard` read
it), and also sets ``SET GLOBAL read_only = ON`` on the server while frozen, so that writes
of applications that do not consult the lease are refused by the server itself (MySQL error
1290; a transaction that wrote before the freeze fails at ``COMMIT``, nothing is half-done).

The thaw is guaranteed when the lease expires, even if the orchestrator is killed (-9): each
freeze creates, and each renewal moves, a one-time server event
``ON SCHEDULE AT <expiry> ON COMPLETION NOT PRESERVE DO SET GLOBAL read_only = OFF``, and
a thaw drops it. The order of the steps is chosen so that a crash between any two of them
never leaves ``read_only`` ON without a pending thaw event:

- freeze: check the event scheduler, take the lease, create (or move) the event, set
  ``read_only`` ON, then check the event is still pending (if it fired meanwhile, set OFF);
- thaw and emergency thaw: release the lease (the emergency one is recorded in
  ``migration_alerts``, level ``override``), set ``read_only`` OFF, then drop the event.

The event fires by the *server's* clock, one to two seconds after ``ttl`` from the moment it
is scheduled (event times have whole seconds), so never before the lease, judged by the
injected clock, expires (when both clocks agree). The event is named by
:func:`read_only_event_name` (a hash of the target, within the 64-character limit) and lives in
the orchestration ``schema`` or, without one, in the server connection's default database; its
definer is the orchestrator's user, which must still exist when it fires.

Freezing refuses with :class:`~lupo_migrate.core.errors.ConfigurationError` when the server's event
scheduler is not ON (the thaw could not be guaranteed), unless ``enable_scheduler=True``, in
which case the freeze turns it on (``SET GLOBAL event_scheduler = ON``).

What :meth:`ReadOnlyFreeze.status` does: the lease answers. When the lease is over (expired or
thawed) while this target's thaw event is still pending and ``read_only`` is ON (the event lags,
or the scheduler was turned off after the freeze), status sets ``read_only`` OFF itself and
leaves the event, which only sets it OFF again and drops itself. So a status read costs one
more query when not frozen: for :func:`guard`, pass a ``SqlAlchemyFreeze`` on the same target
instead (it reads the same row).

Limits, from the server:

- ``read_only`` does not apply to users with ``SUPER`` or, on MariaDB 10.5.2 and later,
  ``READ_ONLY ADMIN`` (``root`` has both). Applications must connect as ordinary users to be
  held back; the orchestrator, connected as a privileged user (it needs the privilege to set
  ``read_only``, and ``EVENT`` on the event's schema), keeps writing.
- ``read_only`` is one flag per server. Freezes of several targets on one server share it:
  the first thaw or expiry lifts it for all (their lease rows stay exact). An emergency thaw
  sets it OFF whatever froze it.
- Every uncertain case resolves towards thawed: a race between a thaw and a new freeze can
  leave the new freeze without ``read_only`` (its lease still holds), never the reverse.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final, final

import sqlalchemy as sa

from lupo_migrate.backends.sqlalchemy._tables import describe, reason
from lupo_migrate.backends.sqlalchemy.freeze import SqlAlchemyFreeze
from lupo_migrate.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    LupoMigrateError,
    StorageError,
)
from lupo_migrate.core.model import FreezeInfo
from lupo_migrate.core.ports import Clock

__all__ = ["ReadOnlyFreeze", "read_only_event_name"]

#: SQLAlchemy dialect names of the servers that have ``read_only`` and events.
_DIALECTS: Final = frozenset({"mysql", "mariadb"})
#: ER_EVENT_DOES_NOT_EXIST: ``ALTER EVENT`` on a missing event.
_UNKNOWN_EVENT: Final = 1539
#: Access denied to a database, a table or an operation (SUPER, EVENT...).
_DENIED: Final = frozenset({1044, 1142, 1227})

_PENDING: Final = sa.text(
    "SELECT COUNT(*) FROM information_schema.EVENTS"
    " WHERE EVENT_SCHEMA = :schema AND EVENT_NAME = :name"
)
_OVERDUE: Final = sa.text(
    "SELECT @@GLOBAL.read_only, (SELECT COUNT(*) FROM information_schema.EVENTS"
    " WHERE EVENT_SCHEMA = :schema AND EVENT_NAME = :name)"
)


def read_only_event_name(target: str) -> str:
    """The name of *target*'s thaw event: ``lupo_thaw_`` and 40 hex digits of its sha256."""
    return "lupo_thaw_" + hashlib.sha256(target.encode("utf-8")).hexdigest()[:40]


@final
class ReadOnlyFreeze:
    """The ``Freeze`` protocol as a lease row plus the server's ``read_only`` flag.

    Args:
        engine: the orchestration database (where ``migration_system_state`` lives).
        target: the name runs are recorded under (one freeze per target).
        clock: where the lease's time comes from (its expiry is judged by it; the thaw
            event's time comes from the server).
        schema: the orchestration schema, when apart; the thaw event lives there too.
        server_engine: the MySQL/MariaDB server to make read-only (default: *engine*),
            connected as a user allowed to set ``read_only`` and to create events.
        enable_scheduler: turn the server's event scheduler on when it is off, instead of
            refusing to freeze.

    Raises:
        InvalidArgumentError: the server is not MySQL/MariaDB, or not an ``Engine``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        target: str = "default",
        *,
        clock: Clock | None = None,
        schema: str | None = None,
        server_engine: sa.Engine | None = None,
        enable_scheduler: bool = False,
    ) -> None:
        server = engine if server_engine is None else server_engine
        if not isinstance(server, sa.Engine):
            raise InvalidArgumentError(f"ReadOnlyFreeze needs an Engine, got {server!r}.")
        if server.dialect.name not in _DIALECTS:
            raise InvalidArgumentError(
                f"ReadOnlyFreeze needs a MySQL or MariaDB server, got the"
                f" {server.dialect.name} dialect ({describe(server)}): read_only and events"
                " are theirs. Use SqlAlchemyFreeze (the lease row and guard()) elsewhere."
            )
        self.lease = SqlAlchemyFreeze(engine, target, clock=clock, schema=schema)
        self.server_engine = server
        self.target = target
        self.enable_scheduler = enable_scheduler
        self.event_name = read_only_event_name(target)
        self._schema = schema

    def __repr__(self) -> str:
        return f"ReadOnlyFreeze(target={self.target!r}, server={describe(self.server_engine)!r})"

    def freeze(self, owner: str, *, ttl: timedelta) -> FreezeInfo:
        """Block writes until :meth:`thaw` or until *ttl* passes; re-freezing extends it.

        The lease is taken first, then the thaw event is scheduled (or moved) to *ttl* from
        the server's now, and only then is ``read_only`` set ON.

        Raises:
            InvalidArgumentError: *ttl* is not a positive timedelta.
            ConfigurationError: the event scheduler is not ON, or the server URL names no
                database and no *schema* was given (nothing was frozen); or the user may not
                set ``read_only`` or create events (the lease, taken, expires by itself).
            LockHeldError: another owner's freeze is active (``name`` ``"write freeze"``).
            StorageError: the server failed (the lease, if taken, expires by itself).
        """
        seconds = _whole_seconds(ttl)
        with self._server() as conn:  # refuse a misconfiguration before anything is frozen
            self._require_scheduler(conn)
            self._event(conn)
        info = self.lease.freeze(owner, ttl=ttl)
        with self._server() as conn:
            self._schedule_thaw(conn, seconds)
            conn.exec_driver_sql("SET GLOBAL read_only = ON")
            if not self._thaw_pending(conn):  # it fired already: the ttl ran out meanwhile
                conn.exec_driver_sql("SET GLOBAL read_only = OFF")
        return info

    def thaw(self, owner: str) -> None:
        """Lift *owner*'s freeze and ``read_only``; no error if there is none.

        Another owner's active freeze stays, and so does ``read_only``. With no active
        freeze, ``read_only`` is set OFF only if this target's thaw event is still pending.
        """
        current = self.lease.status()
        if current is not None and current.owner != owner:
            return
        self.lease.thaw(owner)
        with self._server() as conn:
            if current is not None or self._thaw_pending(conn):
                self._lift(conn)

    def status(self) -> FreezeInfo | None:
        """The active (unexpired) freeze, or None; an overdue ``read_only`` is lifted.

        Overdue: the lease is over, this target's thaw event is still pending and
        ``read_only`` is ON; it is then set OFF (see the module).
        """
        info = self.lease.status()
        if info is None:
            with self._server() as conn:
                schema, name = self._event(conn)
                row = conn.execute(_OVERDUE, {"schema": schema, "name": name}).one()
                if _is_on(row[0]) and row[1]:
                    conn.exec_driver_sql("SET GLOBAL read_only = OFF")
        return info

    def emergency_thaw(self, operator: str, reason: str) -> FreezeInfo | None:
        """Lift any freeze and ``read_only``, whoever set them, recorded in ``migration_alerts``.

        Returns:
            The freeze that was lifted (None when the lease was not active); ``read_only`` is
            set OFF either way.
        """
        lifted = self.lease.emergency_thaw(operator, reason)
        with self._server() as conn:
            self._lift(conn)
        return lifted

    @contextmanager
    def _server(self) -> Iterator[sa.Connection]:
        """An autocommit connection to the server; driver errors become ours."""
        try:
            with self.server_engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.DBAPIError as exc:
            raise _server_error(exc, self.server_engine) from exc

    def _require_scheduler(self, conn: sa.Connection) -> None:
        """Return if the event scheduler is ON (turned on if allowed), else refuse."""
        state = str(conn.exec_driver_sql("SELECT @@GLOBAL.event_scheduler").scalar()).upper()
        if state == "ON":
            return
        if state == "OFF" and self.enable_scheduler:
            conn.exec_driver_sql("SET GLOBAL event_scheduler = ON")
            return
        raise ConfigurationError(_scheduler_message(state, describe(self.server_engine)))

    def _event(self, conn: sa.Connection) -> tuple[str, str]:
        """The thaw event's schema and name; the schema is looked up once."""
        if self._schema is None:
            found = conn.exec_driver_sql("SELECT DATABASE()").scalar()
            if found is None:
                raise ConfigurationError(
                    f"{describe(self.server_engine)} names no database, so the read_only"
                    " freeze has nowhere to keep its thaw event. Add the database to the URL"
                    " or pass schema= to ReadOnlyFreeze."
                )
            self._schema = str(found)
        return self._schema, self.event_name

    def _event_ref(self, conn: sa.Connection) -> str:
        """The thaw event's quoted ``schema.name``, for DDL."""
        quote = self.server_engine.dialect.identifier_preparer.quote_identifier
        schema, name = self._event(conn)
        return f"{quote(schema)}.{quote(name)}"

    def _schedule_thaw(self, conn: sa.Connection, seconds: int) -> None:
        """Move this target's thaw event to *seconds* (plus one) from the server's now, or
        create it: one statement either way, so the old time holds until the new one does."""
        ref = self._event_ref(conn)
        # CURRENT_TIMESTAMP has whole seconds: one more keeps the event after the lease.
        at = f"CURRENT_TIMESTAMP + INTERVAL {seconds + 1} SECOND"
        try:
            conn.exec_driver_sql(f"ALTER EVENT {ref} ON SCHEDULE AT {at} ENABLE")
        except sa.exc.DBAPIError as exc:
            if _driver_code(exc) != _UNKNOWN_EVENT:
                raise
            conn.exec_driver_sql(
                f"CREATE EVENT {ref} ON SCHEDULE AT {at} ON COMPLETION NOT PRESERVE"
                " DO SET GLOBAL read_only = OFF"
            )

    def _thaw_pending(self, conn: sa.Connection) -> bool:
        """Whether this target's thaw event exists (it drops itself once it has run)."""
        schema, name = self._event(conn)
        return bool(conn.execute(_PENDING, {"schema": schema, "name": name}).scalar())

    def _lift(self, conn: sa.Connection) -> None:
        """Set ``read_only`` OFF, then drop the thaw event (in this order: see the module)."""
        conn.exec_driver_sql("SET GLOBAL read_only = OFF")
        conn.exec_driver_sql(f"DROP EVENT IF EXISTS {self._event_ref(conn)}")


def _whole_seconds(ttl: Any) -> int:
    """*ttl* in whole seconds, rounded up; refuses what is not a positive timedelta."""
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgumentError(f"ttl must be a positive timedelta, got {ttl!r}.")
    return math.ceil(ttl.total_seconds())


def _is_on(value: Any) -> bool:
    """Whether a ``read_only`` value read back means ON (``1`` on MariaDB 10, or a name)."""
    return str(value).upper() not in ("0", "OFF")


def _driver_code(exc: sa.exc.DBAPIError) -> int | None:
    """The MySQL error number of a driver error, if it has one."""
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _scheduler_message(state: str, server: str) -> str:
    """Why a freeze was refused for an event scheduler in *state*, and how to fix it."""
    head = (
        f"the event scheduler of {server} is {state}, so the thaw of a read_only freeze could"
        " not be guaranteed (a server event lifts read_only when the lease expires, even if"
        " the orchestrator dies); nothing was frozen."
    )
    if state == "DISABLED":
        return (
            f"{head} It was disabled at server start and cannot be turned on while running:"
            " set event_scheduler=ON under [mysqld] in my.cnf and restart the server."
        )
    return (
        f"{head} Turn it on with SET GLOBAL event_scheduler = ON (and event_scheduler=ON"
        " under [mysqld] in my.cnf, to keep it after a restart), or pass"
        " enable_scheduler=True to ReadOnlyFreeze."
    )


def _server_error(exc: sa.exc.DBAPIError, server: sa.Engine) -> LupoMigrateError:
    """Our error for a driver error of the read_only freeze: refused privileges are a
    configuration problem, anything else a storage failure."""
    if _driver_code(exc) in _DENIED:
        return ConfigurationError(
            f"the read_only freeze on {describe(server)} was refused: {reason(exc)}. Its user"
            " needs SUPER (or READ_ONLY ADMIN on MariaDB, SYSTEM_VARIABLES_ADMIN on MySQL 8)"
            " to set read_only (and event_scheduler, with enable_scheduler=True), and the"
            " EVENT privilege on the thaw event's schema."
        )
    return StorageError(f"the read_only freeze on {describe(server)} failed: {reason(exc)}")
