"""Finding migration files on disk and turning them into steps (imperative shell: does I/O).

:func:`discover` walks a migrations root in sorted order, reads each file once, and leaves the
deciding to the functional core (:mod:`lupo_migrate.files.headers`, :mod:`lupo_migrate.core.names`,
:mod:`lupo_migrate.files.manifest`): headers, names, versions, checksums and manifests are all read
there from text. Every problem becomes a :class:`~lupo_migrate.core.model.Finding`, so one
call reports all bad files at once; :func:`load_steps` raises them together.

The walk itself (which entries are candidates, symlinks, loops) is :mod:`lupo_migrate.files.walk`.
Then:

* ``x.down.sql`` (or Flyway ``U1__x.sql``) is not a step: it attaches to its up twin as
  ``step.meta['down_path']``;
* a file whose name carries a version (``V2__x.sql``, ``2_x.up.sql``, ``4.1.2_x.sql``) and
  whose header and manifest entry say nothing of its dependencies depends on the file before
  it in version order; ``R__x.sql`` (repeatable) comes after them all; two ``V`` names with one
  version are refused (see :mod:`lupo_migrate.core.chain`);
* a manifest (``lupo-manifest.yaml``/``.yml``/``.json`` or ``manifest.yaml``/``.yml``/``.json``
  at the root, or the ``manifest=`` argument, which may live anywhere) gives order and
  dependencies; its file paths are relative to the root (format:
  :func:`~lupo_migrate.files.manifest.
  parse_manifest`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import attrs

from lupo_migrate.core import chain
from lupo_migrate.core import names as _names
from lupo_migrate.core.errors import (
    DiscoveryError,
    HeaderError,
    InvalidArgumentError,
    MigrationFileError,
)
from lupo_migrate.core.model import Finding, Severity, Step, StepId
from lupo_migrate.core.tables import PATH_LENGTH, STEP_ID_LENGTH
from lupo_migrate.files import headers as _headers
from lupo_migrate.files import manifest as _manifest
from lupo_migrate.files import walk as _walking

__all__ = [
    "DEFAULT_SUFFIXES",
    "MANIFEST_NAMES",
    "Discovery",
    "RootNotUsableError",
    "discover",
    "load_steps",
]

#: File endings and the file type each maps to, unless ``discover(suffixes=...)`` says otherwise.
DEFAULT_SUFFIXES: Final[Mapping[str, str]] = {
    ".sql": "doctrine",
    ".py": "module",
    ".yaml": "agent",
    ".yml": "agent",
    ".json": "agent",
    ".md": "documentation",
}
#: Manifest names looked for at the root, first found wins.
MANIFEST_NAMES: Final = (
    "lupo-manifest.yaml",
    "lupo-manifest.yml",
    "lupo-manifest.json",
    "manifest.yaml",
    "manifest.yml",
    "manifest.json",
)


class RootNotUsableError(DiscoveryError):
    """The migrations root (or the manifest named) is missing or not what it should be.

    Attributes:
        path: the path given.
    """

    def __init__(self, path: str, message: str, hint: str) -> None:
        self.path = path
        finding = Finding(
            severity=Severity.ERROR, code="discovery.root", path=path, message=message, hint=hint
        )
        super().__init__([finding])
        self.args = (str(finding),)  # one line, unlike the multi-file summary


@attrs.frozen(kw_only=True)
class Discovery:
    """What :func:`discover` found.

    Attributes:
        steps: the steps, sorted by path.
        findings: every problem (ERROR) and note (WARNING, e.g. "not strict YAML"), by path.
        down_files: step id -> path of its down twin, relative to the root.
    """

    steps: tuple[Step, ...] = ()
    findings: tuple[Finding, ...] = ()
    down_files: Mapping[StepId, str] = attrs.field(factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that make the files unusable (ERROR and worse)."""
        return tuple(f for f in self.findings if f.severity.fails)


def _check_suffixes(suffixes: Mapping[str, str] | None) -> dict[str, str]:
    if suffixes is None:
        return dict(DEFAULT_SUFFIXES)
    if not isinstance(suffixes, Mapping) or not all(
        isinstance(k, str) and k.startswith(".") and isinstance(v, str) and v
        for k, v in suffixes.items()
    ):
        raise InvalidArgumentError(
            f"suffixes must map file endings starting with '.' to file types, got {suffixes!r};"
            " e.g. {'.sql': 'doctrine'}"
        )
    return {k.lower(): v for k, v in suffixes.items()}


def _find_manifest(root: Path, manifest: str | os.PathLike[str] | None) -> Path | None:
    if manifest is not None:
        path = Path(manifest)
        if not path.is_file():
            raise RootNotUsableError(
                str(manifest),
                "manifest file not found",
                "pass the path of an existing manifest, or leave manifest out",
            )
        return path
    return next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)


def discover(
    root: str | os.PathLike[str],
    *,
    suffixes: Mapping[str, str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> Discovery:
    """Find the migration files under *root* and read them into steps.

    Args:
        root: the migrations directory.
        suffixes: file ending -> file type; default :data:`DEFAULT_SUFFIXES`. The longest
            matching ending wins (so ``.up.sql`` may be mapped apart from ``.sql``).
        manifest: a manifest file, anywhere; default: one of :data:`MANIFEST_NAMES` at the root.

    Returns:
        The :class:`Discovery`: steps, findings (all of them, never raised) and down twins.

    Raises:
        RootNotUsableError: *root* is not a directory, or *manifest* does not exist.
        InvalidArgumentError: *suffixes* is not a mapping of ``.ending`` to type names.
    """
    table = _check_suffixes(suffixes)
    root_path = Path(root)
    if not root_path.is_dir():
        what = "does not exist" if not root_path.exists() else "is not a directory"
        raise RootNotUsableError(
            str(root),
            f"migrations root {what}",
            "pass the directory holding the migration files (the command line's DIRECTORY,"
            " `migrations` in lupo.toml or [tool.lupo_migrate], or LUPO_MIGRATE_DIR)",
        )
    real_root = os.path.realpath(root_path)
    manifest_path = _find_manifest(root_path, manifest)
    skip = set()
    if manifest_path is not None:
        skip.add(os.path.normcase(os.path.realpath(manifest_path)))
    files, findings = _walking.walk(real_root, table, skip)

    entries: dict[str, _manifest.ManifestEntry] = {}
    manifest_obj = _manifest.Manifest()
    manifest_name: str | None = None
    if manifest_path is not None:
        manifest_name = _display(manifest_path, real_root)
        manifest_obj, problems = _read_manifest(manifest_path, manifest_name)
        findings.extend(problems)
        for entry in manifest_obj.entries:
            if entry.file in entries:
                findings.append(
                    _walking.error(
                        "manifest.duplicate",
                        f"manifest lists {entry.file!r} twice",
                        "keep one entry per file",
                        manifest_name,
                        entry.line,
                    )
                )
            entries.setdefault(entry.file, entry)

    steps: dict[str, Step] = {}  # by relative path
    by_name: dict[str, str] = {}  # id derived from the file name -> relative path
    downs: dict[str, str] = {}
    for file in files:
        step, read_problems = _read_file(file, entries.get(file.relpath), downs)
        findings.extend(read_problems)
        if step is not None:
            steps[file.relpath] = step
            by_name[_names.parse_name(file.relpath, file.suffix).id] = file.relpath

    if manifest_path is not None:
        findings.extend(_apply_manifest(manifest_obj, steps, manifest_name))
    # Versioned files without a word on their dependencies follow the one before them.
    fixed = {rel for rel, s in steps.items() if "depends_on" in s.meta or rel in entries}
    linked, chained = chain.link(list(steps.values()), fixed)
    steps = {s.path: s for s in linked}
    findings.extend(chained)
    findings.extend(_duplicate_ids(steps.values()))
    findings.extend(_long_names(steps.values()))
    by_id = {s.id: s for s in steps.values()}
    down_files: dict[StepId, str] = {}
    for name_id, rel in sorted(downs.items()):
        # A down twin pairs with the up file of the same name, whatever id its header gives.
        up = steps[by_name[name_id]] if name_id in by_name else by_id.get(name_id)
        if up is None:
            findings.append(
                _walking.error(
                    "discovery.orphan_down",
                    f"down file has no up migration {name_id!r}",
                    "add the up file, or rename the down file after it",
                    rel,
                )
            )
            continue
        down_files[up.id] = rel
        meta = {**up.meta, "down_path": rel}
        steps[up.path] = attrs.evolve(up, meta=meta)
    findings.sort(key=lambda f: (f.path or "", f.line or 0))
    return Discovery(
        steps=tuple(steps[k] for k in sorted(steps)),
        findings=tuple(findings),
        down_files=down_files,
    )


def _display(path: Path, real_root: str) -> str:
    real = os.path.realpath(path)
    if _walking.inside(real, real_root):
        return Path(os.path.relpath(real, real_root)).as_posix()
    return str(path)


def _read_manifest(path: Path, name: str) -> tuple[_manifest.Manifest, tuple[Finding, ...]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _manifest.Manifest(), (
            _walking.error(
                "manifest.unreadable",
                f"cannot read manifest: {exc.strerror}",
                "check its permissions",
                name,
            ),
        )
    text, problem = _names.decode(data, path=name)
    if text is None:
        return _manifest.Manifest(), (problem,) if problem else ()
    return _manifest.parse_manifest(text, path=name)


def _read_file(
    file: _walking.File, entry: _manifest.ManifestEntry | None, downs: dict[str, str]
) -> tuple[Step | None, list[Finding]]:
    try:
        with open(file.abspath, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return None, [
            _walking.error(
                "discovery.unreadable",
                f"cannot read file: {exc.strerror}",
                "check its permissions",
                file.relpath,
            )
        ]
    name = _names.parse_name(file.relpath, file.suffix)
    if name.kind == "down":
        if name.id in downs:
            return None, [
                _walking.error(
                    "discovery.duplicate_down",
                    f"two down files for {name.id!r}: {downs[name.id]} and {file.relpath}",
                    "keep one down file per migration",
                    file.relpath,
                )
            ]
        downs[name.id] = file.relpath
        return None, []
    text, problem = _names.decode(data, path=file.relpath)
    if text is None:
        return None, [problem] if problem else []
    header = _headers.read_header(text, suffix=file.suffix, path=file.relpath)
    findings = list(header.findings)
    if header.strict_problem is not None:
        findings.append(header.strict_problem)
    if header.findings:
        return None, findings
    step = _headers.build_step(
        path=file.relpath,
        file_type=file.file_type,
        content_checksum=_names.checksum(data),
        header=header,
        name=name,
        extra=entry.fields if entry is not None else None,
    )
    return step, findings


def _apply_manifest(
    manifest: _manifest.Manifest, steps: dict[str, Step], name: str | None
) -> list[Finding]:
    """Add the manifest's dependencies to the steps it names (in place); report the rest."""
    findings: list[Finding] = []
    previous: Step | None = None
    for entry in manifest.entries:
        step = steps.get(entry.file)
        if step is None:
            findings.append(
                _walking.error(
                    "manifest.missing",
                    f"manifest names {entry.file!r}, which is not a migration file under the root",
                    "correct the path (relative to the migrations root) or remove the entry",
                    name,
                    entry.line,
                )
            )
            continue
        if entry.depends_on is not None:
            wanted = [steps[d].id if d in steps else d for d in entry.depends_on]
        elif manifest.chain and previous is not None:
            wanted = [previous.id]
        else:
            wanted = []
        merged = tuple(dict.fromkeys([*step.depends_on, *wanted]))
        if merged != step.depends_on:
            steps[entry.file] = step = attrs.evolve(step, depends_on=merged)
        previous = step
    return findings


def _duplicate_ids(steps: Iterable[Step]) -> list[Finding]:
    first: dict[str, Step] = {}
    findings = []
    for step in sorted(steps, key=lambda s: s.path):
        other = first.setdefault(step.id, step)
        if other is not step:
            findings.append(
                _walking.error(
                    "discovery.duplicate_id",
                    f"step id {step.id!r} is used by both {other.path} and {step.path}",
                    "give one of them another id (header 'id') or rename the file",
                    step.path,
                )
            )
    return findings


def _long_names(steps: Iterable[Step]) -> list[Finding]:
    """Ids and paths longer than the orchestration tables keep: refused before any run, on
    every engine alike (MySQL and PostgreSQL would refuse the first journal row; SQLite would
    keep them, and the same files would then fail elsewhere)."""
    findings = []
    for step in sorted(steps, key=lambda s: s.path):
        if len(step.id) > STEP_ID_LENGTH:
            findings.append(
                _walking.error(
                    "discovery.long_id",
                    f"step id of {len(step.id)} characters ({step.id[:60]!r}...); the"
                    f" orchestration tables keep ids of at most {STEP_ID_LENGTH}",
                    "shorten the file's name or its directory path, or give it a shorter id in"
                    " its header",
                    step.path,
                )
            )
        if len(step.path) > PATH_LENGTH:
            findings.append(
                _walking.error(
                    "discovery.long_path",
                    f"path of {len(step.path)} characters; the orchestration tables keep"
                    f" paths of at most {PATH_LENGTH}",
                    "move the file to a shorter directory path under the migrations root",
                    step.path,
                )
            )
    return findings


def load_steps(
    root: str | os.PathLike[str],
    *,
    suffixes: Mapping[str, str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> tuple[Step, ...]:
    """The steps under *root*, or an error carrying every problem found.

    Args:
        root: the migrations directory.
        suffixes: as for :func:`discover`.
        manifest: as for :func:`discover`.

    Returns:
        The steps, sorted by path; WARNING findings are dropped (use :func:`discover` for them).

    Raises:
        DiscoveryError: only walking problems (missing root, symlink escapes, bad manifest...).
        HeaderError: only header problems (YAML, schema, encoding...).
        MigrationFileError: problems of both kinds, all in ``problems``.
    """
    found = discover(root, suffixes=suffixes, manifest=manifest)
    errors = found.errors
    if not errors:
        return found.steps
    if all(f.code.startswith("header.") for f in errors):
        raise HeaderError(errors)
    if all(f.code.startswith(("discovery.", "manifest.")) for f in errors):
        raise DiscoveryError(errors)
    raise MigrationFileError(errors)
