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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, final

import attrs

from lupo_migrate._frontmatter import HeaderEditError, Operations, edit_header
from lupo_migrate._model import Step
from lupo_migrate.handlers._agent_rows import ROLLBACK_OFFSET as ROLLBACK_OFFSET
from lupo_migrate.handlers._agent_rows import ROW_MARK as ROW_MARK
from lupo_migrate.handlers._agent_rows import _Rows
from lupo_migrate.handlers._agent_spec import AgentSpec as AgentSpec
from lupo_migrate.handlers._agent_spec import parse_spec as parse_spec
from lupo_migrate.handlers._agent_spec import spec_error
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


@attrs.define
class _Folders:
    """Agent folders under the files directory: one JSON record file per folder."""

    step: Step
    spec: AgentSpec
    context: Any

    def apply(self) -> None:
        assert self.spec.directory is not None
        root = _root(self.step, self.context)
        base = root / self.spec.directory
        key = self.spec.key[0]
        for record in self.spec.records:
            relpath = f"{self.spec.directory}/{record[key]}/{self.spec.file}"
            path = root / relpath
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
                    continue
                encoded = new.encode("utf-8")
            else:
                data = None
                encoded = (json.dumps(record, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
            self.context.record(
                FileUndo(path=relpath, before=data, after_sha=sha256(encoded)).text()
            )
            _write(path, encoded)
        for keyed in self.spec.delete:
            folder = base / str(keyed[key])
            if not folder.is_dir():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                relpath = path.relative_to(root).as_posix()
                self.context.record(
                    FileUndo(path=relpath, before=path.read_bytes(), after_sha=None).text()
                )
                path.unlink()
            for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                directory.rmdir()
            folder.rmdir()
