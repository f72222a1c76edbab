"""Plain functions the command line (and host applications) call: read, plan, check.

Shell: reads migration directories through ``files.discover`` and hands values to the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from lupo_migrate.core.errors import MigrationFileError, PlanError
from lupo_migrate.core.model import Finding, Plan, Severity, StepId
from lupo_migrate.core.names import decode
from lupo_migrate.core.planner import plan as plan_steps
from lupo_migrate.files.discover import Discovery, discover
from lupo_migrate.handlers.registry import HandlerRegistry

__all__ = ["CheckReport", "PlanReport", "check_directory", "plan_directory"]


@attrs.frozen(kw_only=True)
class PlanReport:
    """A plan computed from a directory, with the non-fatal findings met on the way.

    Attributes:
        root: the migrations directory.
        plan: the ordered steps and their generations.
        findings: warnings and notes from reading the files (errors would have raised).
    """

    root: Path
    plan: Plan
    findings: tuple[Finding, ...] = ()


@attrs.frozen(kw_only=True)
class CheckReport:
    """Everything ``check`` found in a directory.

    Attributes:
        root: the migrations directory.
        files: how many migration files were read.
        findings: every finding, errors first, then by path and line.
        not_strict: paths whose header reads only with the lenient reader, with the line where
            strict YAML fails.
    """

    root: Path
    files: int
    findings: tuple[Finding, ...]
    not_strict: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that fail the check."""
        return tuple(f for f in self.findings if f.severity.fails)


def _suffixes(registry: HandlerRegistry | None) -> Mapping[str, str] | None:
    """The built-in suffix map with *registry*'s claims over it (plugins' types too)."""
    if registry is None or len(registry) == 0:
        return None
    from lupo_migrate.files.discover import DEFAULT_SUFFIXES

    return {**DEFAULT_SUFFIXES, **registry.suffix_map()}


def _read(
    root: str | Path, manifest: str | Path | None, registry: HandlerRegistry | None
) -> Discovery:
    return discover(
        Path(root),
        suffixes=_suffixes(registry),
        manifest=Path(manifest) if manifest is not None else None,
    )


def plan_directory(
    root: str | Path,
    *,
    manifest: str | Path | None = None,
    upto: StepId | None = None,
    registry: HandlerRegistry | None = None,
) -> PlanReport:
    """Read the migration files under *root* and plan them.

    Args:
        root: the migrations directory.
        manifest: a manifest giving order and dependencies of header-less files.
        upto: plan only this step and what it needs.
        registry: handlers whose suffixes decide the file types (default: the built-in map).

    Raises:
        MigrationFileError: files are unusable; every problem is listed.
        PlanError: a cycle, unknown dependencies, or an unknown *upto*.
    """
    found = _read(root, manifest, registry)
    errors = [f for f in found.findings if f.severity.fails]
    if errors:
        raise MigrationFileError(errors)
    return PlanReport(
        root=Path(root),
        plan=plan_steps(found.steps, upto=upto),
        findings=tuple(f for f in found.findings if not f.severity.fails),
    )


def _sql_findings(
    root: Path,
    found: Discovery,
    dialect: str | None,
    lint: tuple[Iterable[str], Iterable[str]] = ((), ()),
) -> list[Finding]:
    """What :func:`~lupo_migrate.sql.effects.check_sql` finds in the SQL files, and
    the lint rules over the up statements of the steps' own files (*lint*: the rules
    forbidden, the rules ignored)."""
    from lupo_migrate.sql.effects import check_sql
    from lupo_migrate.sql.lint import lint_sql
    from lupo_migrate.sql.split import SplitError, split_sections

    fam = {"mariadb": "mysql", None: "mysql"}.get(dialect, dialect)
    ids = {s.path: s.id for s in found.steps if s.file_type == "doctrine"}
    own = set(ids)
    paths = [*own, *found.down_files.values()]
    findings: list[Finding] = []
    for path in sorted(paths):
        try:
            text, problem = decode((root / path).read_bytes(), path=path)
        except OSError:
            continue  # read once already by discovery; gone since: nothing to check
        if text is None:  # a down twin (discovery decodes only the steps' own files)
            findings.extend([problem] if problem is not None else [])
            continue
        findings.extend(check_sql(text, path=path, dialect=dialect, step=path in own))
        if path in own and fam in ("mysql", "postgresql", "sqlite"):
            try:
                up = split_sections(text, dialect=fam).up
            except SplitError:
                continue  # check_sql reported it
            listed = [(ids[path], path, s.line, s.text) for s in up]
            findings.extend(lint_sql(listed, forbid=lint[0], ignore=lint[1], dialect=fam))
    return findings


_ORDER = {Severity.CRITICAL: 0, Severity.ERROR: 1, Severity.WARNING: 2, Severity.INFO: 3}


def check_directory(
    root: str | Path,
    *,
    manifest: str | Path | None = None,
    registry: HandlerRegistry | None = None,
    files_root: str | Path | None = None,
    dialect: str | None = None,
    forbid: Iterable[str] = (),
    lint_ignore: Iterable[str] = (),
) -> CheckReport:
    """Validate every migration file under *root*, and that the set can be planned.

    Returns every finding rather than raising on the first, so a user sees all problems. SQL
    files (doctrine steps, their down twins) are also cut into statements: one whose first
    word is not a SQL statement (``SELEC x``) is an error, found here rather than when it runs.

    Args:
        root: the migrations directory.
        manifest: a manifest giving order and dependencies of header-less files.
        registry: the handlers (default: the built-in ones); those with a ``check_files``
            (agent folders, documentation) report the files their steps would read, write
            or delete outside *files_root*.
        files_root: the files directory agent-folder and documentation steps change
            (default: *root*'s parent, as for a run).
        dialect: the target's dialect, when known (its statements are the ones accepted);
            None: a SQL file passes when MySQL's, PostgreSQL's or SQLite's rules accept it.
        forbid: lint rules whose findings are errors (``forbid`` in the settings); the
            other rules' findings (``DROP TABLE``, ``UPDATE`` without ``WHERE``...) are
            warnings, each with its rule id, as ``apply`` reports them.
        lint_ignore: lint rules not reported.

    Raises:
        DiscoveryError: *root* cannot be read at all (missing, not a directory).
    """
    from lupo_migrate.handlers._contain import check_steps
    from lupo_migrate.run.shared import _files_root, _read_under

    found = _read(root, manifest, registry)
    findings = list(found.findings)
    if not found.steps and not any(f.severity.fails for f in findings):
        findings.append(
            Finding(
                severity=Severity.WARNING,
                code="files.none",
                path=str(root),
                message="no migration files here: apply would do nothing",
                hint="check the directory: SQL files, Python modules, agent .yaml/.json and"
                " documentation .md files are read",
            )
        )
    if registry is None:
        from lupo_migrate.handlers.plugins import default_registry

        registry = default_registry(plugins=False)
    base = Path(root)
    findings += check_steps(
        registry,
        found.steps,
        read_text=lambda step: _read_under(base, step.path, step),
        files_root=_files_root(base, None if files_root is None else Path(files_root)),
    )
    if not any(f.severity.fails for f in findings):
        try:
            plan_steps(found.steps)
        except PlanError as error:  # reported as a finding like the rest
            findings.append(
                Finding(severity=Severity.ERROR, message=str(error), code="plan", path=str(root))
            )
    findings.extend(_sql_findings(Path(root), found, dialect, (forbid, lint_ignore)))
    findings.sort(key=lambda f: (_ORDER[f.severity], f.path or "", f.line or 0))
    return CheckReport(
        root=Path(root),
        files=len(found.steps),
        findings=tuple(findings),
        not_strict=tuple(f for f in findings if f.code == "header.not_strict"),
    )
