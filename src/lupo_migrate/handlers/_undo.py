"""Undo records of handlers that change files (documentation, agent files): a file's bytes
before the step changed it, kept in the run's journal; atomic writes; putting files back.

A record is written (durably: such handlers are not transactional, so the storage commits it
at once) before the change it undoes, so whatever point a step died at, every file it may have
changed has its original in the journal. Rolling back goes through the records newest first:
the oldest original of a file is the one left.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import Step
from lupo_migrate.handlers._contain import HINT, escape

__all__ = ["UNDO_MARK", "FileUndo", "file_undos", "restore_files", "sha256", "write_atomically"]

#: The first line of a file undo record in the journal.
UNDO_MARK: Final = "-- lupo_migrate undo: file"


def sha256(data: bytes | None) -> str | None:
    """Hex SHA-256 of *data* (None for a file that did not exist)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Replace *path* by *data*: a temporary file beside it, synced, then renamed over it
    (the file's permission bits are kept; a new file's directories are made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".lupo-tmp", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself, durable (not on every platform)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@attrs.frozen(kw_only=True)
class FileUndo:
    """A file's bytes before a step changed it (None: it did not exist).

    Attributes:
        path: relative to the files directory, POSIX separators.
        before: the original bytes, or None.
        after_sha: the sha256 the step was about to write (None: it deletes the file).
    """

    path: str
    before: bytes | None
    after_sha: str | None

    def text(self) -> str:
        """The record as journal text."""
        body = {
            "path": self.path,
            "before": None if self.before is None else base64.b64encode(self.before).decode(),
            "before_sha256": sha256(self.before),
            "after_sha256": self.after_sha,
        }
        return f"{UNDO_MARK}\n{json.dumps(body, sort_keys=True)}"

    @classmethod
    def read(cls, text: str) -> FileUndo | None:
        """The record in journal *text*, or None when it is another kind of record."""
        if not text.startswith(UNDO_MARK):
            return None
        body = json.loads(text[len(UNDO_MARK) :])
        before = body["before"]
        return cls(
            path=body["path"],
            before=None if before is None else base64.b64decode(before),
            after_sha=body.get("after_sha256"),
        )


def file_undos(context: Any) -> list[FileUndo]:
    """The step's file undo records, oldest first."""
    out = []
    for _, text in context.records():
        undo = FileUndo.read(text)
        if undo is not None:
            out.append(undo)
    return out


def restore_files(step: Step, root: Path, undos: Iterable[FileUndo]) -> None:
    """Put every file back as its oldest record says, byte for byte (newest record first);
    directories the step created and left empty go too. Each path is resolved and written
    only inside *root*: one that leads outside now (a folder replaced by a symbolic link
    since the step ran) is not written, and named.

    Raises:
        StepError: files could not be written back (every other one was); each is named.
    """
    failed: list[str] = []
    made: set[Path] = set()
    base = Path(os.path.realpath(root))
    escaped = False
    for undo in reversed(list(undos)):
        outside = escape(root, undo.path)
        if outside is not None:  # a folder swapped for a link since: never write through it
            failed.append(f"{outside.message()}, not written there")
            escaped = True
            continue
        path = Path(os.path.realpath(root / undo.path))
        try:
            current = path.read_bytes() if path.exists() else None
            if current == undo.before:
                continue
            if undo.before is None:
                path.unlink()
                made.add(path.parent)
                continue
            write_atomically(path, undo.before)
            if sha256(path.read_bytes()) != sha256(undo.before):
                failed.append(f"{undo.path} (written back, but its sha256 differs)")
        except OSError as error:  # put back the others; report every one that failed
            failed.append(f"{undo.path} ({error.strerror or error})")
    for directory in sorted(made, key=lambda p: len(p.parts), reverse=True):
        while directory != base and directory.is_relative_to(base):
            try:
                directory.rmdir()  # only when empty
            except OSError:
                break
            directory = directory.parent
    if failed:
        raise StepError(
            step.id,
            step.path,
            f"{len(failed)} file(s) could not be written back: {'; '.join(failed)}; fix the"
            " cause and roll back again (the originals stay in the run's journal)"
            + (f"; {HINT}" if escaped else ""),
        )
