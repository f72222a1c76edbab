"""The ``documentation`` handler: header migrations of text files, byte-preserving elsewhere.

A documentation migration is a Markdown file (its front matter is the migration) or a YAML or
JSON file with ``type: documentation`` in its ``migration`` header::

    ---
    id: docs_4_1_0
    depends_on: [V7__channels]
    files: ["docs/*.md", "docs/**/*.php"]     # globs under the files directory
    set: {file.last_modified_system_version: 4.1.0}   # where the field exists
    add: {file.reviewed_by: ops}              # set, or added where missing
    rename: {file.title: name}                # field -> new key, same place
    remove: [legacy_tag]
    atoms: {GLOBAL_CURRENT_LUPOPEDIA_VERSION: 4.1.0}  # optional: check header atoms resolve
    stamps: [file.last_modified_system_version]       # optional: fields that must not go back
    ---
    Why the headers change (prose, not read).

The files are found under the orchestrator's ``files_root`` (setting ``files``; default the
migrations directory's parent) and edited by :mod:`lupo_migrate.files.frontmatter.edit`: only the
values
named change, every other byte stays (a header the edit would make read differently is refused,
the step fails and the batch is rolled back). Writes are atomic: a temporary file beside the
original, flushed to disk, then renamed over it. Every file is resolved (symbolic links
followed) and must lie inside the files directory (:mod:`._contain`): a pattern with ``..``
or an absolute one, or a match that leads outside through a link, is named by ``check`` and
pre-validation (:meth:`DocumentationHandler.check_files`) and refused again by the step and
its rollback.

Before a file is changed, its original bytes are recorded in the run's journal (an undo record,
committed at once, outside the step's transaction: files are not transactional), so a rollback,
also after a crash and also of a completed run within its decision window, writes every file
back byte for byte (sha256 checked).

After the run (post-validation) every documentation step is checked; its findings are class D
(``documentation_mismatch``: the run completes and a decision with a 30-day window is recorded):

- ``documentation.header``: a changed file's header no longer reads as the step left it;
- ``documentation.mixed_epochs``: files of the batch end at different values of a field the
  batch set (every file of the batch must end at the same version);
- ``documentation.stamp_regression``: a modification stamp or version went back (fields named
  in ``stamps``, else those whose name says ``last_modified``, ``updated``, ``timestamp``...);
- ``documentation.atoms``: with ``atoms`` given, a header atom (``header_atoms`` entries and
  ``GLOBAL_*`` values) that has no value there.
"""

from __future__ import annotations

import glob
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import FailureKind, Finding, Severity, Step
from lupo_migrate.files.frontmatter.edit import (
    Change,
    HeaderEditError,
    Operations,
    edit_header,
    header_mapping,
    is_stamp,
    read_header_value,
    regressed,
)
from lupo_migrate.files.headers import read_front_matter
from lupo_migrate.files.yaml import load_yaml
from lupo_migrate.handlers._contain import (
    contained,
    escape,
    outside_findings,
    unsafe,
    unsafe_finding,
)
from lupo_migrate.handlers._undo import (
    FileUndo,
    file_undos,
    restore_files,
    sha256,
    write_atomically,
)

__all__ = ["DocumentationHandler", "DocumentationSpec", "parse_spec", "select", "write_atomically"]

_ATOM: Final = re.compile(r"^GLOBAL_[A-Z0-9_]+$")
#: Where a ``files`` key may be (YAML block or flow, JSON); prose may match too.
_FILES_KEY: Final = re.compile(r"""\bfiles['"]?\s*:""")
_SPEC_KEYS: Final = frozenset(
    {"files", "set", "add", "rename", "remove", "atoms", "stamps", "format"}
)


@attrs.frozen(kw_only=True)
class DocumentationSpec:
    """What a documentation step does (see the module docstring).

    Attributes:
        files: glob patterns relative to the files directory.
        operations: the header edits.
        atoms: atom name -> value, when atoms are to be checked (None: not checked).
        stamps: fields that must not go back (None: told by their names).
        format: ``markdown``, ``php`` or ``json`` for every file (None: by each file's name).
    """

    files: tuple[str, ...]
    operations: Operations
    atoms: Mapping[str, Any] | None = None
    stamps: tuple[str, ...] | None = None
    format: str | None = None


def _bad(step: Step, message: str) -> StepError:
    return StepError(step.id, step.path, message)


def _mapping(step: Step, text: str) -> dict[str, Any]:
    """The fields of a documentation step's file (its front matter, or the YAML or JSON)."""
    if step.path.lower().endswith((".yaml", ".yml", ".json")):
        value, problems = load_yaml(text, path=step.path)
        if value is None:
            raise _bad(step, "; ".join(str(p) for p in problems) or "empty file")
        return value if isinstance(value, dict) else {}
    return dict(read_front_matter(text, path=step.path).mapping)


def _patterns(mapping: Mapping[str, Any]) -> list[Any] | None:
    """The ``files`` patterns as given (a string is one pattern), or None when there are none."""
    files = mapping.get("files")
    return [files] if isinstance(files, str) else files if isinstance(files, list) else None


def parse_spec(step: Step, text: str) -> DocumentationSpec:
    """The spec of a documentation step from its file's text.

    Raises:
        StepError: the spec is missing or malformed; the message names the key and value.
    """
    mapping = _mapping(step, text)
    files = _patterns(mapping)
    if not files or not all(isinstance(f, str) and f for f in files):
        raise _bad(step, "'files' must name the files to change, e.g. files: [\"docs/*.md\"]")
    for pattern in files:
        if unsafe(pattern):
            raise _bad(step, f"files: {pattern!r} must stay inside the files directory")

    def table(key: str) -> dict[str, Any]:
        value = mapping.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _bad(step, f"'{key}' must map field paths to values, got {value!r}")
        return {str(k): v for k, v in value.items()}

    remove = mapping.get("remove") or []
    if isinstance(remove, str):
        remove = [remove]
    if not isinstance(remove, list) or not all(isinstance(r, str) for r in remove):
        raise _bad(step, f"'remove' must list field paths, got {remove!r}")
    rename = table("rename")
    if not all(isinstance(v, str) and v for v in rename.values()):
        raise _bad(step, f"'rename' must map field paths to new keys, got {rename!r}")
    operations = Operations(set=table("set"), add=table("add"), rename=rename, remove=tuple(remove))
    if not operations.fields:
        raise _bad(step, "nothing to do: give set, add, rename or remove")
    atoms = mapping.get("atoms")
    if atoms is not None and not isinstance(atoms, dict):
        raise _bad(step, f"'atoms' must map atom names to values, got {atoms!r}")
    stamps = mapping.get("stamps")
    if isinstance(stamps, str):
        stamps = [stamps]
    if stamps is not None and not isinstance(stamps, list):
        raise _bad(step, f"'stamps' must list field paths, got {stamps!r}")
    fmt = mapping.get("format")
    if fmt is not None and fmt not in ("markdown", "php", "json"):
        raise _bad(step, f"'format' must be markdown, php or json, got {fmt!r}")
    return DocumentationSpec(
        files=tuple(files),
        operations=operations,
        atoms=None if atoms is None else {str(k): v for k, v in atoms.items()},
        stamps=None if stamps is None else tuple(str(s) for s in stamps),
        format=fmt,
    )


# ------------------------------------------------------------------------------------ files


def _root(context: Any) -> Path:
    root = getattr(context, "files_root", None)
    if root is None:
        raise StepError(
            context.step.id,
            context.step.path,
            "no files directory: set `files` (the directory documentation steps change)",
        )
    return Path(root)


def select(root: Path, spec: DocumentationSpec) -> list[str]:
    """The files the spec names, relative to *root* (POSIX), sorted, each once.

    Matches are files as their links lead (a dangling link is none); one that leads outside
    *root* is listed too, for the step to refuse (:func:`._contain.contained`), never to
    be skipped unnoticed.
    """
    found: set[str] = set()
    for pattern in spec.files:
        for match in glob.glob(pattern, root_dir=root, recursive=True):
            relpath = Path(match)
            if ".lupo_migrate" not in relpath.parts and (root / relpath).is_file():
                found.add(relpath.as_posix())
    return sorted(found)


def _check_files(step: Step, spec: DocumentationSpec, root: Path) -> list[Finding]:
    """Findings for the selected files that lead outside *root*."""
    outside = [escape(root, relpath) for relpath in select(root, spec)]
    return outside_findings(step, [o for o in outside if o is not None])


def _decoded(step: Step, relpath: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise _bad(
            step, f"{relpath}:{line}: not UTF-8 (byte {error.start}); convert the file to UTF-8"
        ) from None


# ---------------------------------------------------------------------------------- handler


@final
@attrs.frozen
class DocumentationHandler:
    """Applies and undoes header migrations of text files (type ``documentation``)."""

    file_type: str = "documentation"
    suffixes: tuple[str, ...] = (".md",)
    #: Its work is on files, outside the step's database transaction: a step that failed
    #: part-way is always undone from its undo records.
    transactional: bool = False

    def apply(self, step: Step, context: Any) -> None:
        """Edit every selected file's header; each original is recorded before it changes.

        Raises:
            StepError: the spec is malformed, a file is not UTF-8, or a header cannot be
                edited without touching other bytes (names the file and line).
            OSError: a file cannot be written.
        """
        spec = parse_spec(step, context.read_text(step.path))
        root = _root(context)
        files = [(relpath, contained(step, root, relpath)) for relpath in select(root, spec)]
        for relpath, path in files:
            data = path.read_bytes()
            text = _decoded(step, relpath, data)
            try:
                new, changes = edit_header(
                    text, path=relpath, operations=spec.operations, fmt=spec.format
                )
            except HeaderEditError as error:
                where = f"{relpath}:{error.line}" if error.line else relpath
                raise _bad(step, f"{where}: {error}") from None
            if not changes:
                continue
            encoded = new.encode("utf-8")
            context.record(FileUndo(path=relpath, before=data, after_sha=sha256(encoded)).text())
            write_atomically(path, encoded)

    def rollback(self, step: Step, context: Any) -> None:
        """Write every file the step changed back, byte for byte (newest record first, so
        the oldest original wins).

        Raises:
            StepError: files could not be written back (every other one was); each is named.
        """
        restore_files(step, _root(context), file_undos(context))

    def check_files(self, step: Step, text: str, *, files_root: Path) -> list[Finding]:
        """Before the run (``check``, pre-validation): the files the step's patterns name
        that lie outside *files_root* (``..``, an absolute pattern, a symbolic link on the
        way). A file that is no documentation migration (no ``files``) or whose spec does
        not parse otherwise is left to the step, which says why."""
        if not _FILES_KEY.search(text):
            return []  # no `files` key: not read as YAML again (a header is slow to read)
        files = _patterns(_mapping(step, text))
        for pattern in files or ():
            why = unsafe(pattern) if isinstance(pattern, str) else None
            if why is not None:
                return [unsafe_finding(step, "files", pattern, why)]
        try:
            spec = parse_spec(step, text)
        except StepError:
            return []
        return _check_files(step, spec, files_root)

    def can_rollback(self, step: Step) -> bool:
        """True: every change is recorded before it is made."""
        del step
        return True

    def validate(self, steps: Sequence[Step], context_for: Callable[[Step], Any]) -> list[Finding]:
        """Post-validation of the run's documentation steps (see the module docstring)."""
        findings: list[Finding] = []
        finals: dict[str, dict[str, tuple[Any, Step]]] = defaultdict(dict)
        for step in steps:
            context = context_for(step)
            try:
                spec = parse_spec(step, context.read_text(step.path))
                root = _root(context)
                findings += _check_step(step, spec, root, file_undos(context))
                for field in (*spec.operations.set, *spec.operations.add):
                    for relpath in select(root, spec):
                        present, value = read_header_value(
                            contained(step, root, relpath).read_text(encoding="utf-8"),
                            relpath,
                            field,
                        )
                        if present:
                            finals[field][relpath] = (value, step)
            except (StepError, OSError, UnicodeDecodeError, HeaderEditError) as error:
                findings.append(_finding(step, "documentation.header", None, str(error)))
        for field, values in sorted(finals.items()):
            findings += _mixed(field, values)
        return findings


def _finding(
    step: Step,
    code: str,
    path: str | None,
    message: str,
    *,
    line: int | None = None,
    hint: str | None = None,
) -> Finding:
    return Finding(
        severity=Severity.ERROR,
        message=message,
        path=path,
        line=line,
        hint=hint,
        code=code,
        kind=FailureKind.DOCUMENTATION_MISMATCH,
        step_id=step.id,
    )


def _check_step(
    step: Step, spec: DocumentationSpec, root: Path, undos: Iterable[FileUndo]
) -> Iterator[Finding]:
    first: dict[str, FileUndo] = {}
    for undo in undos:
        first.setdefault(undo.path, undo)
    for relpath, undo in sorted(first.items()):
        path = contained(step, root, relpath)
        if undo.before is None or not path.exists():
            continue
        before = undo.before.decode("utf-8")
        current = path.read_bytes()
        try:
            expected, changes = edit_header(
                before, path=relpath, operations=spec.operations, fmt=spec.format
            )
        except HeaderEditError as error:
            yield _finding(step, "documentation.header", relpath, str(error), line=error.line)
            continue
        if current != expected.encode("utf-8"):
            yield _finding(
                step,
                "documentation.header",
                relpath,
                "the file no longer reads as the step left it (changed since, or only part"
                " of the step's edits are there)",
                hint="roll the step back (class D) and apply it again",
            )
            continue
        yield from _regressions(step, spec, relpath, changes)
        if spec.atoms is not None:
            yield from _atoms(step, spec.atoms, relpath, expected)


def _regressions(
    step: Step, spec: DocumentationSpec, relpath: str, changes: Iterable[Change]
) -> Iterator[Finding]:
    for change in changes:
        stamp = change.field in spec.stamps if spec.stamps is not None else is_stamp(change.field)
        if stamp and change.action in ("set", "add") and regressed(change.old, change.new):
            yield _finding(
                step,
                "documentation.stamp_regression",
                relpath,
                f"{change.field} went back from {change.old} to {change.new}",
                line=change.line,
                hint="a modification stamp must move forward: set a later value, or roll back",
            )


def _atoms(step: Step, atoms: Mapping[str, Any], relpath: str, text: str) -> Iterator[Finding]:
    present, listed = read_header_value(text, relpath, "header_atoms")
    names = {str(a) for a in listed} if present and isinstance(listed, list) else set()
    used = set(names)
    for value in _scalars(header_mapping(text, relpath)):
        if isinstance(value, str) and (_ATOM.match(value) or value in names):
            used.add(value)
    for name in sorted(used - set(atoms)):
        yield _finding(
            step,
            "documentation.atoms",
            relpath,
            f"header atom {name} has no value",
            hint="define it under 'atoms' in the migration, or drop it from the header",
        )


def _scalars(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    else:
        yield value


def _mixed(field: str, values: Mapping[str, tuple[Any, Step]]) -> Iterator[Finding]:
    counts = Counter(json.dumps(v, sort_keys=True, default=str) for v, _ in values.values())
    if len(counts) < 2:
        return
    common, most = counts.most_common(1)[0]
    for relpath, (value, step) in sorted(values.items()):
        if json.dumps(value, sort_keys=True, default=str) != common:
            yield _finding(
                step,
                "documentation.mixed_epochs",
                relpath,
                f"{field} is {value} here but {json.loads(common)} in {most} other file(s) of"
                " the batch",
                hint="every file of the batch must end at the same version: roll the batch"
                " back, or set this file too",
            )
