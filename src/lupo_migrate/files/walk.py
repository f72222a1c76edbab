"""The walk of a migrations root: which files are candidates (imperative shell: lists directories).

Apart from :mod:`lupo_migrate.files.discover`, which reads the files the walk found into steps.
Rules:

* entries are visited in sorted order; hidden files and directories (``.name``) and
  ``__pycache__`` are skipped, as are files whose ending has no file type;
* a symlink is followed only if it resolves inside the root; one pointing outside is reported
  (``discovery.symlink_escape``), one pointing to nothing too (``discovery.broken_symlink``),
  and a directory reached twice (a loop) is reported and skipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from lupo_migrate.core.model import Finding, Severity

__all__ = ["File", "error", "inside", "walk"]


@attrs.frozen
class File:
    """A candidate migration file: its path relative to the root and on disk, its ending and
    the file type the ending maps to."""

    relpath: str
    abspath: str
    suffix: str
    file_type: str


def error(code: str, message: str, hint: str, path: str | None, line: int | None = None) -> Finding:
    """An ERROR finding of the walk or of reading what it found."""
    return Finding(
        severity=Severity.ERROR, code=code, path=path, line=line, message=message, hint=hint
    )


def inside(path: str, root: str) -> bool:
    """Whether *path* is *root* or lies under it (both resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk(
    root: str, suffixes: Mapping[str, str], skip: set[str]
) -> tuple[list[File], list[Finding]]:
    """Every candidate file under *root* (a resolved path), sorted by relative path."""
    ordered = sorted(suffixes, key=len, reverse=True)
    files: list[File] = []
    findings: list[Finding] = []
    visited = {root}
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            findings.append(
                error(
                    "discovery.unreadable",
                    f"cannot list directory: {exc.strerror}",
                    "check its permissions",
                    prefix.rstrip("/") or ".",
                )
            )
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name == "__pycache__":
                continue
            rel = prefix + name
            real = entry.path
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not inside(real, root):
                    findings.append(
                        error(
                            "discovery.symlink_escape",
                            f"symlink points outside the migrations root, to {real}",
                            "replace the link by a copy, or move its target inside the root",
                            rel,
                        )
                    )
                    continue
                if not os.path.exists(real):
                    findings.append(
                        error(
                            "discovery.broken_symlink",
                            "symlink points to nothing",
                            "remove the link or restore its target",
                            rel,
                        )
                    )
                    continue
            if entry.is_dir():
                real_dir = os.path.realpath(entry.path)
                if real_dir in visited:
                    findings.append(
                        Finding(
                            severity=Severity.WARNING,
                            code="discovery.loop",
                            path=rel,
                            message="directory already visited (a symlink loop); skipped",
                            hint="remove the symlink if it is not needed",
                        )
                    )
                    continue
                visited.add(real_dir)
                subdirs.append((entry.path, rel + "/"))
                continue
            if os.path.normcase(real) in skip or os.path.normcase(entry.path) in skip:
                continue
            lowered = name.lower()
            suffix = next((s for s in ordered if lowered.endswith(s) and len(name) > len(s)), None)
            if suffix is not None:
                files.append(File(rel, entry.path, suffix, suffixes[suffix]))
        stack.extend(reversed(subdirs))
    files.sort(key=lambda f: f.relpath)
    return files, findings
