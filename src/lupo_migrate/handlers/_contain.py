"""Containment: every file a handler reads, writes or deletes lies inside the files directory.

Handlers that change files (agent folders, documentation) name their files relative to the
files directory (setting ``files``). Each such path is resolved, symbolic links followed
(:func:`os.path.realpath`, so a dangling link resolves to where it points), and refused when
it leads outside the resolved files directory, whether by ``..``, an absolute path, or a link
on the way (the file itself, its folder, any directory above it). The handlers then read and
write the resolved path, the one checked.

It is asked twice: before a run, where the paths are known from the migration files
(``lupo-migrate check`` and pre-validation, through each handler's ``check_files``, see
:func:`check_steps`), and again by the step itself and by its rollback, because the files
can change in between (a folder replaced by a link after the step ran must not turn the
rollback into a write outside).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import LupoMigrateError, StepError
from lupo_migrate.core.model import FailureKind, Finding, Severity, Step
from lupo_migrate.files.walk import inside
from lupo_migrate.handlers.registry import HandlerRegistry

__all__ = [
    "HINT",
    "Outside",
    "check_steps",
    "contained",
    "escape",
    "outside_finding",
    "outside_findings",
    "unsafe",
    "unsafe_finding",
]

#: What to do about a path that leads outside the files directory.
HINT: Final = (
    "keep the files a migration changes inside the files directory: replace the link by a"
    " copy of what it points to, or set `files` (--files) to a directory that holds both"
)


def unsafe(relpath: str) -> str | None:
    """Why *relpath* cannot name a file inside the files directory, told from its text
    alone (absolute, or going up with ``..``), or None."""
    if PurePosixPath(relpath).is_absolute() or PureWindowsPath(relpath).anchor:
        return "is an absolute path"
    if ".." in PurePosixPath(relpath.replace("\\", "/")).parts:
        return "goes up with '..'"
    return None


@attrs.frozen(kw_only=True)
class Outside:
    """A path named relative to the files directory that leads out of it.

    Attributes:
        relpath: the path as named (relative to the files directory).
        real: where it leads (resolved).
        root: the files directory (resolved).
        link: the first symbolic link on the way that leads out (relative), or None
            (the path itself leaves: absolute, or ``..``).
        target: where that link leads (resolved), or None.
    """

    relpath: str
    real: str
    root: str
    link: str | None = None
    target: str | None = None

    def message(self) -> str:
        """What is wrong, naming the path, the link and where it points."""
        if self.link == self.relpath:
            return (
                f"{self.relpath} is a symbolic link to {self.target}, outside the files"
                f" directory {self.root}"
            )
        if self.link is not None:
            return (
                f"{self.relpath} leads outside the files directory {self.root}: {self.link}"
                f" is a symbolic link to {self.target}"
            )
        return f"{self.relpath} leads outside the files directory {self.root}, to {self.real}"


def escape(root: Path, relpath: str) -> Outside | None:
    """Where *relpath* under *root* leads when that is outside *root* (both resolved), or None."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, relpath))
    if inside(real, base):
        return None
    link = target = None
    walked = PurePosixPath()
    for part in () if unsafe(relpath) else PurePosixPath(relpath.replace("\\", "/")).parts:
        walked /= part
        if not os.path.islink(os.path.join(base, walked)):
            continue
        leads = os.path.realpath(os.path.join(base, walked))
        if not inside(leads, base):
            link, target = walked.as_posix(), leads
            break
    return Outside(relpath=relpath, real=real, root=base, link=link, target=target)


def contained(step: Step, root: Path, relpath: str) -> Path:
    """The resolved path of *relpath* under *root*, the one to read, write or delete.

    Raises:
        StepError: it leads outside *root*; the message names the path, the link and where
            it points, and what to do.
    """
    outside = escape(root, relpath)
    if outside is not None:
        raise StepError(step.id, step.path, f"{outside.message()}; refused ({HINT})")
    return Path(os.path.realpath(os.path.join(root, relpath)))


def outside_finding(step: Step, outside: Outside, *, also: int = 0) -> Finding:
    """The finding refusing *step* because of *outside* (*also*: more paths behind the same
    link)."""
    more = f" (and {also} more file(s) of the step behind it)" if also else ""
    return Finding(
        severity=Severity.ERROR,
        message=f"step {step.id}: {outside.message()}{more}",
        path=step.path,
        hint=HINT,
        code="files.outside",
        kind=FailureKind.CRITICAL_VALIDATION,
        step_id=step.id,
    )


def unsafe_finding(step: Step, key: str, value: str, why: str) -> Finding:
    """The finding refusing *step* because its *key* names a path (*value*) that leaves the
    files directory by its text alone (*why*: see :func:`unsafe`)."""
    return Finding(
        severity=Severity.ERROR,
        message=f"step {step.id}: {key}: {value!r} {why}: it must stay inside the files directory",
        path=step.path,
        hint="name it relative to the files directory (setting `files`, --files)",
        code="files.outside",
        kind=FailureKind.CRITICAL_VALIDATION,
        step_id=step.id,
    )


def outside_findings(step: Step, outsides: Iterable[Outside]) -> list[Finding]:
    """One finding per link (or path) that leads out, saying how many paths are behind it."""
    grouped: dict[str, list[Outside]] = {}
    for outside in outsides:
        grouped.setdefault(outside.link or outside.relpath, []).append(outside)
    return [outside_finding(step, group[0], also=len(group) - 1) for group in grouped.values()]


def check_steps(
    registry: HandlerRegistry,
    steps: Iterable[Step],
    *,
    read_text: Callable[[Step], str],
    files_root: Path,
) -> list[Finding]:
    """What the handlers of *steps* that have a ``check_files(step, text, *, files_root)``
    find about the files those steps would read, write or delete: paths that lead outside
    *files_root*. A step whose file cannot be read or whose handler is unknown is left to
    the checks that say why."""
    found: list[Finding] = []
    hooks: dict[str, Any] = {}
    for step in steps:
        if step.file_type not in hooks:
            handler = registry.lookup(step.file_type) if step.file_type in registry else None
            hooks[step.file_type] = getattr(handler, "check_files", None)
        check = hooks[step.file_type]
        if check is None:
            continue
        try:
            found += check(step, read_text(step), files_root=files_root)
        except (LupoMigrateError, OSError, UnicodeDecodeError):
            continue  # the step cannot be read: discovery or the step itself says why
    return found
