"""Whether a process that recorded itself has certainly gone (shell: reads ``/proc``).

A lease names the process that holds it by a *mark*: host name, boot id, pid namespace, pid
and the process's start time. A process on the same machine, in the same boot and pid
namespace, can tell for sure that the holder is gone: its pid no longer exists, is a zombie,
or now belongs to a process started at another time (the pid was reused). Every other case is
undecidable (another host or container, another boot, no ``/proc``, a mark written by an older
version): the lease then runs its course. So a crashed run's SQLite lock is free at once for
``recover`` on the machine it ran on, and never taken from a process that may be alive.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from typing import Final

__all__ = ["certainly_dead", "mark", "mark_of"]

#: Separates the fields of a mark (none of them contains it).
_SEP: Final = "|"
#: Separates a mark from the rest of a token that carries one (``<mark>/<uuid>``).
_TOKEN_SEP: Final = "/"
_UNKNOWN: Final = "?"


def mark() -> str:
    """This process's mark: ``host|boot|pidns|pid|start`` (``?`` for what cannot be read).
    Worked out per pid: a forked child has a mark of its own."""
    return _mark(os.getpid())


@functools.cache
def _mark(pid: int) -> str:
    host = socket.gethostname().replace(_SEP, "_").replace(_TOKEN_SEP, "_") or _UNKNOWN
    return _SEP.join((host, _boot(), _namespace(), str(pid), _started(pid) or _UNKNOWN))


def mark_of(token: str | None) -> str | None:
    """The mark at the start of a lease token (``<mark>/<uuid>``), or None if it has none."""
    if not token or _TOKEN_SEP not in token:
        return None
    head = token.split(_TOKEN_SEP, 1)[0]
    return head if head.count(_SEP) == 4 else None


def certainly_dead(recorded: str | None) -> bool:
    """Whether the process *recorded* (a :func:`mark`) is gone for sure, seen from here.

    False whenever it cannot be told: another host, boot or pid namespace, an unreadable
    field, or a mark that is not one.
    """
    if recorded is None:
        return False
    fields = recorded.split(_SEP)
    here = mark().split(_SEP)
    if len(fields) != 5 or fields[:3] != here[:3] or _UNKNOWN in fields[1:3] + fields[4:]:
        return False
    pid, start = fields[3], fields[4]
    if not pid.isdigit():
        return False
    exists, started = _process(int(pid))
    if not exists:
        return True
    return started is not None and started != start  # None: alive, start time not readable


def _started(pid: int) -> str | None:
    """The start time of process *pid* (clock ticks since boot), if it can be read."""
    return _process(pid)[1]


def _process(pid: int) -> tuple[bool, str | None]:
    """Whether process *pid* exists (a zombie has exited), and its start time when readable.

    Where ``/proc`` hides other users' processes (``hidepid``), the kernel is asked instead:
    a process that exists but cannot be looked at counts as alive.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except FileNotFoundError:
        return _signalable(pid), None
    except OSError:
        return True, None
    fields = text.rsplit(")", 1)[-1].split()  # the name, in parentheses, may hold spaces
    if fields and fields[0] in ("Z", "X"):
        return False, None
    return True, fields[19] if len(fields) >= 20 else None  # field 22 of proc(5)


def _signalable(pid: int) -> bool:
    """Whether a process *pid* exists, asked of the kernel (signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, another user's
        return True
    return True


def _boot() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            return boot.read().strip() or _UNKNOWN
    except OSError:
        return _UNKNOWN


def _namespace() -> str:
    try:
        found = re.search(r"\d+", os.readlink("/proc/self/ns/pid"))
    except OSError:
        return _UNKNOWN
    return found.group(0) if found else _UNKNOWN
