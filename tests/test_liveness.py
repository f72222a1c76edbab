"""Process marks: a holder that is gone is told for sure only on its own machine, boot and pid
namespace; everything else is undecidable (False)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lupo_migrate.backends import liveness
from lupo_migrate.backends.liveness import certainly_dead, mark, mark_of


def _fields() -> list[str]:
    return mark().split("|")


def _with(**changes: str) -> str:
    names = ["host", "boot", "ns", "pid", "start"]
    fields = dict(zip(names, _fields(), strict=True))
    fields.update(changes)
    return "|".join(fields[n] for n in names)


@pytest.fixture(name="gone_pid")
def _gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
class TestOnLinux:
    def test_this_process_is_alive(self) -> None:
        fields = _fields()
        assert fields[3] == str(os.getpid())
        assert "?" not in fields
        assert not certainly_dead(mark())

    def test_a_process_that_exited_is_dead(self, gone_pid: int) -> None:
        assert certainly_dead(_with(pid=str(gone_pid)))

    def test_a_reused_pid_is_another_process(self) -> None:
        """The pid is alive but started at another time: the recorded holder is gone."""
        start = int(_fields()[4])
        assert certainly_dead(_with(start=str(start + 1)))

    def test_a_zombie_is_dead(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        try:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
            assert certainly_dead(_with(pid=str(child.pid), start=_started(child.pid)))
        finally:
            child.wait()

    @pytest.mark.parametrize(
        "field", ["host", "boot", "ns"], ids=["another host", "another boot", "another pidns"]
    )
    def test_elsewhere_nothing_can_be_told(self, field: str, gone_pid: int) -> None:
        assert not certainly_dead(_with(pid=str(gone_pid), **{field: "elsewhere"}))

    def test_an_unknown_field_tells_nothing(self, gone_pid: int) -> None:
        assert not certainly_dead(_with(pid=str(gone_pid), start="?"))
        assert not certainly_dead(_with(pid=str(gone_pid), ns="?", boot="?"))

    def test_a_forked_child_has_its_own_mark(self) -> None:
        parent = mark()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(write, mark().encode())
            os._exit(0)
        os.close(write)
        child = os.read(read, 1000).decode()
        os.waitpid(pid, 0)
        os.close(read)
        assert child.split("|")[3] == str(pid)
        assert child != parent
        assert certainly_dead(child)  # and gone now


def _started(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[-1].split()[19]


@pytest.mark.parametrize(
    "text", [None, "", "x", "a|b|c|d", "a|b|c|d|e|f", "h|b|n|notapid|1", "4f2a9c"]
)
def test_what_is_not_a_mark_is_never_dead(text: str | None) -> None:
    assert not certainly_dead(text)
    assert mark_of(text) is None


def test_a_token_carries_its_mark() -> None:
    assert mark_of(f"{mark()}/0123abcd") == mark()
    assert mark_of("0123abcd") is None  # a token of an older version
    assert liveness.mark_of(f"{mark()}/x/y") == mark()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_where_proc_hides_other_users_processes_the_kernel_is_asked(
    monkeypatch: pytest.MonkeyPatch, gone_pid: int
) -> None:
    """Under ``hidepid`` another user's /proc entry is missing: a process that exists (or
    that signal 0 may not reach: another user's) counts as alive; one the kernel does not
    know is dead."""
    real_open = open

    def hidden(path: str, *args: object, **kwargs: object) -> object:
        if str(path).startswith("/proc/") and not str(path).startswith("/proc/self"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    mine = mark()
    monkeypatch.setattr("builtins.open", hidden)
    assert not certainly_dead(mine)  # exists: alive, though its start time is hidden
    assert certainly_dead(_with(pid=str(gone_pid)))

    def refused(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refused)
    assert not certainly_dead(_with(pid=str(gone_pid)))  # EPERM: someone's, alive
