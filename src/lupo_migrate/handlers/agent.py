"""The ``agent`` handler: declarative configuration records, upserted by key, restored exactly.

An agent migration is a YAML or JSON file. Records go into a table::

    migration: {id: agents_love, depends_on: [V4__agents_table]}
    table: lupo_agents             # core; or ${core}.lupo_agents, other_schema.t
    key: agent_key                 # or [tenant, agent_key]
    records:
      - {agent_key: CAPTAIN, name: Captain, status: active}
    delete:
      - {agent_key: OLD_AGENT}

or into agent folders (like Lupopedia's ``agents/0001/metadata.json``) under the files
directory (setting ``files``)::

    migration: {id: agents_files}
    directory: agents
    key: id                        # the folder is named by this field (default: id)
    file: metadata.json            # the record's file in its folder (default)
    records:
      - {id: "0006", code: WOLFIE, status: active, version: 1.0.0}
    delete: [{id: "0005"}]

Every file and folder an agent-folder step reads, writes or deletes is resolved (symbolic
links followed) and must lie inside the files directory (:mod:`._contain`): ``check`` and
pre-validation name one that leads outside (:meth:`AgentHandler.check_files`), the step and
its rollback refuse it again, and a folder to delete that is itself a link is refused.

Upsert by key: a record whose key is absent is inserted (a new folder with its JSON file); one
that exists gets the fields given (the others keep their values; in a JSON file only those
values' characters change); ``delete`` removes records (folders) by key. Nothing changes for a
record that already has those values.

Before each change the previous record is kept as an undo record in the run's journal (the
whole row, deleted ones included; a file's bytes), committed at once, so a rollback, after a
failure, a crash or an operator's decision, restores the previous records exactly: updated
rows get every column back, inserted ones are deleted, deleted ones come back, and files get
their original bytes. Statements go through the journal like doctrine statements (visible in
``history``; skipped on resume when done).

This module holds the handler and the agent folders; the spec is read and checked in
:mod:`._agent_spec`, records in a table (and their values' encoding) are in :mod:`._agent_rows`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import FailureKind, Finding, Severity, Step
from lupo_migrate.files.frontmatter.edit import HeaderEditError, Operations, edit_header
from lupo_migrate.files.yaml import load_yaml
from lupo_migrate.handlers._agent_rows import ROLLBACK_OFFSET as ROLLBACK_OFFSET
from lupo_migrate.handlers._agent_rows import ROW_MARK as ROW_MARK
from lupo_migrate.handlers._agent_rows import _Rows
from lupo_migrate.handlers._agent_spec import AgentSpec as AgentSpec
from lupo_migrate.handlers._agent_spec import parse_spec as parse_spec
from lupo_migrate.handlers._agent_spec import spec_error
from lupo_migrate.handlers._contain import (
    HINT,
    Outside,
    contained,
    escape,
    outside_findings,
    unsafe,
    unsafe_finding,
)
from lupo_migrate.handlers._undo import FileUndo, file_undos, restore_files, sha256
from lupo_migrate.handlers._undo import write_atomically as _write

__all__ = ["ROLLBACK_OFFSET", "AgentHandler", "AgentSpec", "parse_spec"]


@final
@attrs.frozen
class AgentHandler:
    """Upserts configuration records by key and restores them exactly (type ``agent``)."""

    file_type: str = "agent"
    suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")
    #: Undo records are committed before the change they undo (records may be files).
    transactional: bool = False

    def apply(self, step: Step, context: Any) -> None:
        """Upsert and delete the step's records, keeping the previous ones first.

        Raises:
            StepError: the spec is malformed, the table or a column does not exist, or a
                record file is not a JSON object (names the file and what to do).
            StatementError: the database refused a statement.
        """
        spec = parse_spec(step, context.read_text(step.path), context.names)
        if spec.table is not None:
            _Rows(step, spec, context).apply()
        else:
            _Folders(step, spec, context).apply()

    def rollback(self, step: Step, context: Any) -> None:
        """Put the previous records back (newest change first)."""
        spec = parse_spec(step, context.read_text(step.path), context.names)
        if spec.table is not None:
            _Rows(step, spec, context).rollback()
        else:
            restore_files(step, _root(step, context), file_undos(context))

    def check_files(self, step: Step, text: str, *, files_root: Path) -> list[Finding]:
        """Before the run (``check``, pre-validation): the files and folders an agent-folder
        step would read, write or delete that lead outside *files_root* (``..``, an absolute
        ``directory``, a symbolic link on the way), and folders to delete that are links.
        A spec that does not parse otherwise is left to the step, which says why."""
        value, _ = load_yaml(text, path=step.path)
        if not isinstance(value, dict) or value.get("table") is not None:
            return []
        directory = value.get("directory")
        why = unsafe(directory) if isinstance(directory, str) else None
        if why is not None:
            return [unsafe_finding(step, "directory", str(directory), why)]
        try:
            spec = parse_spec(step, text, {})
        except StepError:
            return []
        return _check_folders(step, spec, files_root)

    def can_rollback(self, step: Step) -> bool:
        """True: every previous record is kept before it changes."""
        del step
        return True

    def effects(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        names: Mapping[str, str],
        renames: Mapping[str, str],
    ) -> list[tuple[str, str, str, str | None]]:
        """What the step touches, for the run's validators: ``(kind, name, action, new)``."""
        del dialect, renames
        spec = parse_spec(step, text, names)
        if spec.table is None:
            return []
        schema, table = spec.table
        return [] if schema not in (None, names.get("core")) else [("table", table, "write", None)]


def _root(step: Step, context: Any) -> Path:
    root = getattr(context, "files_root", None)
    if root is None:
        raise spec_error(
            step, "no files directory: set `files` (the directory agent folders are in)"
        )
    return Path(root)


def _record_path(spec: AgentSpec, record: Mapping[str, Any]) -> str:
    """A record's file, relative to the files directory."""
    return f"{spec.directory}/{record[spec.key[0]]}/{spec.file}"


def _folder_path(spec: AgentSpec, keyed: Mapping[str, Any]) -> str:
    """A record's folder, relative to the files directory."""
    return f"{spec.directory}/{keyed[spec.key[0]]}"


def _folder_link(root: Path, relpath: str) -> str | None:
    """Why the folder *relpath* cannot be deleted as a record's folder, or None: it is a
    symbolic link (deleting through it would empty another folder, and a link is no
    folder to remove)."""
    path = root / relpath
    if not path.is_symlink():
        return None
    return (
        f"{relpath} is a symbolic link to {os.path.realpath(path)}, not a record's folder:"
        " remove the link by hand, or delete the record it points to by its own key"
    )


def _doomed(root: Path, relpath: str) -> tuple[list[Outside], list[tuple[str, Path]]]:
    """The entries of the folder *relpath* (resolved) a delete removes, as (relative path,
    path) pairs, deepest last, and those that lead outside *root* (none is removed then)."""
    folder = Path(os.path.realpath(root / relpath))
    if not folder.is_dir():
        return [], []
    outside: list[Outside] = []
    entries: list[tuple[str, Path]] = []
    for path in sorted(folder.rglob("*")):
        rel = f"{relpath}/{path.relative_to(folder).as_posix()}"
        escaped = escape(root, rel)
        if escaped is not None:
            outside.append(escaped)
        entries.append((rel, path))
    return outside, entries


def _check_folders(step: Step, spec: AgentSpec, root: Path) -> list[Finding]:
    """Findings for the files and folders the agent-folder step would change that lead
    outside the files directory (or a folder to delete that is a link)."""
    assert spec.directory is not None
    outside = [escape(root, spec.directory)]
    outside += [escape(root, _record_path(spec, r)) for r in spec.records]
    found: list[Finding] = []
    for keyed in spec.delete:
        relpath = _folder_path(spec, keyed)
        escaped = escape(root, relpath)
        if escaped is not None:
            outside.append(escaped)
            continue
        link = _folder_link(root, relpath)
        if link is not None:
            found.append(
                Finding(
                    severity=Severity.ERROR,
                    message=f"step {step.id}: {link}",
                    path=step.path,
                    code="files.link",
                    kind=FailureKind.CRITICAL_VALIDATION,
                    step_id=step.id,
                )
            )
            continue
        outside += _doomed(root, relpath)[0]
    return outside_findings(step, [o for o in outside if o is not None]) + found


@attrs.define
class _Folders:
    """Agent folders under the files directory: one JSON record file per folder.

    Every file is resolved and checked to lie inside the files directory before anything
    changes (see :mod:`._contain`); the resolved path is the one read and written.
    """

    step: Step
    spec: AgentSpec
    context: Any

    def apply(self) -> None:
        assert self.spec.directory is not None
        root = _root(self.step, self.context)
        contained(self.step, root, self.spec.directory)
        writes = [
            (relpath, contained(self.step, root, relpath), record)
            for record in self.spec.records
            for relpath in (_record_path(self.spec, record),)
        ]
        deletes: list[tuple[Path, list[tuple[str, Path]]]] = []
        for keyed in self.spec.delete:
            relpath = _folder_path(self.spec, keyed)
            folder = contained(self.step, root, relpath)
            if not folder.is_dir():
                continue
            link = _folder_link(root, relpath)
            if link is not None:
                raise spec_error(self.step, link)
            outside, entries = _doomed(root, relpath)
            if outside:
                raise spec_error(self.step, f"{outside[0].message()}; refused ({HINT})")
            deletes.append((folder, entries))
        for relpath, path, record in writes:
            self._write(relpath, path, record)
        for folder, entries in deletes:
            for relpath, path in entries:
                if path.is_file():
                    self.context.record(
                        FileUndo(path=relpath, before=path.read_bytes(), after_sha=None).text()
                    )
                    path.unlink()
            for _, directory in reversed(entries):
                if directory.is_dir():
                    directory.rmdir()
            folder.rmdir()

    def _write(self, relpath: str, path: Path, record: Mapping[str, Any]) -> None:
        """Upsert *record* into its file *path* (resolved), keeping the previous bytes first."""
        if path.exists():
            data = path.read_bytes()
            try:
                new, changes = edit_header(
                    data.decode("utf-8"),
                    path=relpath,
                    operations=Operations(add=dict(record)),
                    fmt="json",
                )
            except (HeaderEditError, UnicodeDecodeError) as error:
                raise spec_error(
                    self.step, f"{relpath}: {error}; it must be a JSON object"
                ) from None
            if not changes:
                return
            encoded = new.encode("utf-8")
        else:
            data = None
            encoded = (json.dumps(record, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
        self.context.record(FileUndo(path=relpath, before=data, after_sha=sha256(encoded)).text())
        _write(path, encoded)
