"""Versioned files form a chain; repeatable files come after it (functional core: no I/O).

Flyway's reading of a directory, which users of versioned names expect:

* A file whose name carries a version (``V3__x.sql``, ``3_x.up.sql``, ``4.1.2_x.sql``...)
  depends on the file before it in version order (equal versions: by id), unless its header
  or its manifest entry says what it depends on (``depends_on: []`` included). So ``V1``,
  ``V2``, ``V3`` are one chain: three generations, ``--upto V2`` takes ``V1`` too, and the
  dependants of ``V1`` are ``V2`` and ``V3``. Module migrations (``billing/0001_init.py``)
  chain within their module.
* Two Flyway names (``V30__a.sql``, ``V30__b.sql``) may not share a version: the version is
  the file's identity there. The legacy forms (``4_1_1_a.sql``, ``4_1_1_b.sql``) may.
* A repeatable file (``R__views.sql``) has no version: it depends on the last versioned file
  (of its module) and the planner puts it after every other step; it is pending again
  whenever its checksum differs from the applied one (see :func:`settled`), and is then run
  and recorded anew, never refused as "edited".
* A pending versioned file whose version is lower than the highest applied one would run
  out of order: :func:`check_order` refuses it unless the operator allows it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from lupo_migrate.core.errors import OutOfOrderError
from lupo_migrate.core.model import AppliedStep, Finding, Severity, Step, StepId
from lupo_migrate.core.names import NameInfo, parse_name, version_key

__all__ = ["check_order", "link", "settled", "versioned"]


def _scope(step: Step) -> str:
    """The chain a step belongs to: its module's for module migrations, else the one chain."""
    return (step.module or "") if step.file_type == "module" else ""


def versioned(step: Step) -> NameInfo | None:
    """What *step*'s file name says, when the name carries a version (else None)."""
    name = parse_name(step.path)
    return name if name.version and not name.repeatable else None


def _order(step: Step) -> tuple[tuple[tuple[int, int, str], ...], StepId]:
    return version_key(step.version), step.id


def link(steps: Sequence[Step], fixed: Collection[str] = ()) -> tuple[list[Step], list[Finding]]:
    """Chain the versioned steps and put the repeatable ones after them.

    Args:
        steps: the steps found, in any order.
        fixed: paths of the steps whose header or manifest entry gives their dependencies:
            left as they are (they still precede the next file of the chain).

    Returns:
        ``(steps, findings)``: the steps in the same order, each versioned or repeatable one
        not in *fixed* depending on its predecessor; an ERROR finding for every Flyway name
        whose version another Flyway name of the same chain has already.
    """
    chains: dict[str, list[Step]] = {}
    repeatables: list[Step] = []
    flyway: set[str] = set()
    for step in steps:
        name = parse_name(step.path)
        if name.repeatable:
            repeatables.append(step)
        elif name.version:
            chains.setdefault(_scope(step), []).append(step)
            if name.flyway:
                flyway.add(step.path)
    changed: dict[str, Step] = {}
    findings: list[Finding] = []
    tails: dict[str, StepId] = {}
    for scope, members in chains.items():
        members.sort(key=_order)
        previous: Step | None = None
        for step in members:
            if previous is not None and step.path not in fixed and not step.depends_on:
                changed[step.path] = attrs.evolve(step, depends_on=(previous.id,))
            previous = step
        tails[scope] = members[-1].id
        findings.extend(_duplicates([s for s in members if s.path in flyway]))
    for step in repeatables:
        tail = tails.get(_scope(step))
        if tail is not None and step.path not in fixed and not step.depends_on:
            changed[step.path] = attrs.evolve(step, depends_on=(tail,))
    return [changed.get(step.path, step) for step in steps], findings


def _duplicates(members: Iterable[Step]) -> list[Finding]:
    first: dict[tuple[tuple[int, int, str], ...], Step] = {}
    findings = []
    for step in sorted(members, key=lambda s: s.path):
        version = parse_name(step.path).version
        other = first.setdefault(version_key(version), step)
        if other is not step:
            findings.append(
                Finding(
                    severity=Severity.ERROR,
                    code="discovery.duplicate_version",
                    path=step.path,
                    message=f"version {version} is used by both {other.path} and {step.path}",
                    hint="give one of them the next free version (rename it), or merge them",
                )
            )
    return findings


def settled(steps: Iterable[Step], ledger: Mapping[StepId, AppliedStep]) -> frozenset[StepId]:
    """The ids that count as applied: the ledger's, but a repeatable step whose file changed
    since it was applied is pending again."""
    changed = {
        s.id
        for s in steps
        if s.repeatable and s.id in ledger and s.checksum and ledger[s.id].checksum != s.checksum
    }
    return frozenset(sid for sid in ledger if sid not in changed)


def check_order(
    pending: Sequence[Step], steps: Sequence[Step], ledger: Mapping[StepId, AppliedStep]
) -> None:
    """Refuse pending versioned steps whose version is lower than the highest applied one.

    Args:
        pending: the plan's steps, in order.
        steps: every step found (for the versions of the applied ones).
        ledger: the target's applied steps; a file gone since counts by its recorded path.

    Raises:
        OutOfOrderError: naming the first such step and the highest applied version (with
            the other late files).
    """
    by_id = {s.id: s for s in steps}
    highest: dict[str, tuple[tuple[tuple[int, int, str], ...], str, str]] = {}
    for sid, entry in ledger.items():
        step = by_id.get(sid)
        if step is None:
            if not entry.path:
                continue
            step = Step(
                id=sid,
                path=entry.path,
                file_type=entry.file_type,
                version=parse_name(entry.path).version,
                module=entry.path.rpartition("/")[0].replace("/", ".") or None,
            )
        if step.repeatable or versioned(step) is None:
            continue
        key = version_key(step.version)
        scope = _scope(step)
        if scope not in highest or key > highest[scope][0]:
            highest[scope] = (key, step.path, step.version)
    late: list[tuple[str, str]] = []
    above: tuple[str, str] | None = None
    for step in pending:
        top = highest.get(_scope(step))
        if top is None or step.repeatable or versioned(step) is None:
            continue
        if version_key(step.version) < top[0]:
            late.append((step.path, step.version))
            above = above or (top[1], top[2])
    if late and above is not None:
        raise OutOfOrderError(late, above)
