"""Order steps by their dependencies: the planner of the functional core.

Theory of operation: steps form a directed graph with an edge *dependency -> dependant*. A plan
is the unique lexicographical topological order of that graph, ties broken by a natural sort key
(repeatable steps last, then ``Step.version`` read with its numbers as numbers, then
``Step.id``), so equal inputs give equal
plans whatever order the steps arrive in. ``Plan.generations`` groups the same steps into layers
that depend only on earlier layers.

Errors are reported whole: every duplicate id, every unknown dependency with every step naming
it, and a dependency cycle from its first step back to itself. Nothing here does I/O.

Performance: planning 100,000 steps costs little more than the bare networkx calls (see
``benchmarks/planner.py``): the graph is built in bulk, sort keys are computed once, the graph
is never copied, and the cycle search runs only once ordering has failed. Steps without
dependencies among them need no graph: their order is the sort order, and networkx (a fifth
of a command's start-up) is not even imported.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from lupo_migrate.core.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    UnknownDependencyError,
    UnknownTargetError,
)
from lupo_migrate.core.model import Plan, Step, StepId

__all__ = ["build_graph", "descendants", "downgrade_plan", "plan", "rollback_plan"]

#: A step's sort key: repeatable or not, its natural version key, then its id.
_SortKey: TypeAlias = tuple[bool, tuple[str | int, ...], StepId]

_DIGITS = re.compile(r"(\d+)")

if TYPE_CHECKING:
    import networkx as nx  # type: ignore[import-untyped, unused-ignore]


def _natural_key(text: str) -> tuple[str | int, ...]:
    """Split *text* into text and number runs, numbers compared as numbers.

    ``re.split`` with a capturing group always alternates text (even positions, maybe empty)
    and digits (odd positions), so two keys only ever compare str with str and int with int:
    ``"V2" < "V10"`` and ``"4.1.2" < "4.1.10"``.
    """
    parts: list[str | int] = list(_DIGITS.split(text))
    parts[1::2] = [int(p) for p in parts[1::2]]
    return tuple(parts)


def _ranks(steps: Iterable[Step]) -> dict[StepId, int]:
    """Each step's rank in the order of its sort key (repeatable steps last, then natural
    version key, then id).

    Keys are computed once (once per distinct version) and sorted once; ordering then
    compares small ints instead of nested tuples, which makes the heap of the topological
    sort and the sorting of generations faster.
    """
    by_version: dict[str, tuple[str | int, ...]] = {}
    keys: dict[StepId, _SortKey] = {}
    for step in steps:
        version_key = by_version.get(step.version)
        if version_key is None:
            version_key = by_version[step.version] = _natural_key(step.version)
        keys[step.id] = (step.repeatable, version_key, step.id)
    return {sid: rank for rank, sid in enumerate(sorted(keys, key=keys.__getitem__))}


def _index(steps: Iterable[Step]) -> dict[StepId, Step]:
    """The steps by id; any id used twice raises ``InvalidArgumentError`` naming it."""
    listed = list(steps)
    by_id = {step.id: step for step in listed}
    if len(by_id) != len(listed):
        paths: dict[StepId, list[str]] = {}
        for step in listed:
            paths.setdefault(step.id, []).append(step.path)
        twice = {sid: where for sid, where in paths.items() if len(where) > 1}
        detail = "; ".join(f"{sid!r} ({', '.join(where)})" for sid, where in sorted(twice.items()))
        raise InvalidArgumentError(
            f"duplicate step id{'s' if len(twice) > 1 else ''}: {detail}."
            " Give each migration file its own id."
        )
    return by_id


def _check_dependencies(by_id: Mapping[StepId, Step], satisfied: Collection[StepId] = ()) -> None:
    """Raise ``UnknownDependencyError`` listing every dependency that is neither a step nor
    *satisfied*, each with all the steps that named it."""
    missing: dict[StepId, list[StepId]] = {}
    for step in by_id.values():
        for dep in step.depends_on:
            if dep not in by_id and dep not in satisfied:
                missing.setdefault(dep, []).append(step.id)
    if missing:
        raise UnknownDependencyError(missing)


def _graph(
    steps: Collection[Step], selected: Collection[StepId] | None = None
) -> nx.DiGraph[StepId]:
    """The graph of *steps* (edges dependency -> dependant), built in bulk.

    With *selected*, only dependencies among the selected ids become edges (the rest are
    satisfied elsewhere: applied already); without it every dependency must be a step.
    """
    import networkx as nx  # type: ignore[import-untyped, unused-ignore]

    ids = [step.id for step in steps] if selected is None else list(selected)
    graph: nx.DiGraph[StepId] = nx.DiGraph()
    graph.add_nodes_from(ids)
    graph.add_edges_from(_edges(steps, selected))
    return graph


def _edges(
    steps: Collection[Step], selected: Collection[StepId] | None
) -> list[tuple[StepId, StepId]]:
    """The edges dependency -> dependant (with *selected*, only those among the selected)."""
    if selected is None:
        return [(dep, step.id) for step in steps for dep in step.depends_on]
    return [(dep, step.id) for step in steps for dep in step.depends_on if dep in selected]


def build_graph(steps: Iterable[Step]) -> nx.DiGraph[StepId]:
    """Build the dependency graph of *steps*: one node per step id, edges dependency -> dependant.

    Args:
        steps: the steps, in any order.

    Returns:
        A new ``networkx.DiGraph`` whose nodes are the step ids, in input order.

    Raises:
        InvalidArgumentError: two steps share an id (every such id is named).
        UnknownDependencyError: steps name dependencies that are not steps (all of them are
            listed, each with the steps that named it).
    """
    by_id = _index(steps)
    _check_dependencies(by_id)
    return _graph(by_id.values())


def _cycle(graph: nx.DiGraph[StepId], keys: Mapping[StepId, int]) -> tuple[StepId, ...]:
    """A dependency cycle of *graph*, the same whatever order the steps were given in.

    Runs only once ordering has failed: searches the strongly connected component holding the
    smallest step that lies on a cycle, rebuilt with sorted adjacency, and starts the cycle at
    its smallest step. The first id is repeated at the end.
    """
    import networkx as nx  # type: ignore[import-untyped, unused-ignore]

    on_cycles = [
        component
        for component in nx.strongly_connected_components(graph)
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component)
    ]
    component = min(on_cycles, key=lambda c: min(keys[n] for n in c))
    nodes = sorted(component, key=keys.__getitem__)
    canonical: nx.DiGraph[StepId] = nx.DiGraph()
    canonical.add_nodes_from(nodes)
    canonical.add_edges_from(
        (u, v) for u in nodes for v in sorted(graph.succ[u], key=keys.__getitem__) if v in component
    )
    edges = nx.find_cycle(canonical, source=nodes[0])
    ids = [u for u, _ in edges]
    start = ids.index(min(ids, key=keys.__getitem__))
    ids = ids[start:] + ids[:start]
    return (*ids, ids[0])


def _ancestors(by_id: Mapping[StepId, Step], target: StepId) -> set[StepId]:
    """*target* and every step it needs, directly or not (dependencies outside *by_id* skipped)."""
    seen = {target}
    stack = [target]
    while stack:
        for dep in by_id[stack.pop()].depends_on:
            if dep not in seen and dep in by_id:
                seen.add(dep)
                stack.append(dep)
    return seen


def plan(
    steps: Iterable[Step],
    *,
    upto: StepId | None = None,
    applied: Collection[StepId] = (),
) -> Plan:
    """Put *steps* in the order to apply them.

    The order is the lexicographical topological order of the dependency graph, ties broken by
    repeatable steps last (``R__x.sql``), then by the natural order of ``Step.version``
    (``"V2" < "V10"``, ``"4.1.2" < "4.1.10"``) and then by ``Step.id``: the same steps give
    the same plan whatever order they come in.

    Args:
        steps: every known step, in any order.
        upto: plan only this step and the steps it needs, directly or not.
        applied: ids of steps already applied: left out of the plan, and dependencies on them
            are satisfied (even if they are not among *steps* any more). Unknown ids are ignored.

    Returns:
        The plan: its steps in order, and its generations (each sorted by the same key).

    Raises:
        InvalidArgumentError: two steps share an id.
        UnknownDependencyError: steps name dependencies that are neither steps nor applied.
        UnknownTargetError: *upto* is not a step id.
        DependencyCycleError: steps depend on each other in a circle (the cycle is given).
    """
    by_id = _index(steps)
    done = frozenset(applied)
    _check_dependencies(by_id, done)
    if upto is not None and upto not in by_id:
        raise UnknownTargetError(upto, list(by_id))

    selected: Collection[StepId] | None = None
    pending: Collection[Step] = by_id.values()
    if upto is not None or done:
        wanted = _ancestors(by_id, upto) if upto is not None else by_id.keys()
        selected = {sid: None for sid in by_id if sid in wanted and sid not in done}.keys()
        pending = [by_id[sid] for sid in selected]

    keys = _ranks(pending)
    key = keys.__getitem__
    edges = _edges(pending, selected)
    if not edges:
        # No dependency among them: one generation, in sort order (what networkx would give).
        order = sorted(keys, key=key)
        generations = [tuple(order)] if order else []
        return Plan(steps=[by_id[sid] for sid in order], generations=generations)
    sorted_ = _sort_acyclic(keys, edges)
    if sorted_ is not None:
        order, generations = sorted_
        return Plan(steps=[by_id[sid] for sid in order], generations=generations)
    import networkx as nx  # type: ignore[import-untyped, unused-ignore]

    graph = _graph(pending, selected)
    try:
        order = list(nx.lexicographical_topological_sort(graph, key=key))
    except nx.NetworkXUnfeasible:
        raise DependencyCycleError(_cycle(graph, keys)) from None
    generations = [tuple(sorted(g, key=key)) for g in nx.topological_generations(graph)]
    return Plan(steps=[by_id[sid] for sid in order], generations=generations)


def _sort_acyclic(
    ranks: Mapping[StepId, int], edges: Sequence[tuple[StepId, StepId]]
) -> tuple[list[StepId], list[tuple[StepId, ...]]] | None:
    """The order and generations networkx's ``lexicographical_topological_sort`` and
    ``topological_generations`` give for the graph of *edges* over the nodes of *ranks*
    (ties broken by rank), or None when the graph has a cycle (networkx then names it).

    The same algorithm (Kahn's, with a heap keyed by rank), without importing networkx: a
    chain of versioned files is the common plan, and importing networkx costs 90 ms of a
    command's start. ``tests/test_planner.py`` holds it to networkx's answers.
    """
    waiting = dict.fromkeys(ranks, 0)
    after: dict[StepId, list[StepId]] = {sid: [] for sid in ranks}
    for dep, sid in edges:
        waiting[sid] += 1
        after[dep].append(sid)
    left = dict(waiting)
    ready = [(rank, sid) for sid, rank in ranks.items() if not waiting[sid]]
    heapq.heapify(ready)
    order: list[StepId] = []
    while ready:
        _, sid = heapq.heappop(ready)
        order.append(sid)
        for child in after[sid]:
            left[child] -= 1
            if not left[child]:
                heapq.heappush(ready, (ranks[child], child))
    if len(order) != len(ranks):
        return None
    generations: list[tuple[StepId, ...]] = []
    level = [sid for sid in ranks if not waiting[sid]]
    while level:
        generations.append(tuple(sorted(level, key=ranks.__getitem__)))
        following = []
        for sid in level:
            for child in after[sid]:
                waiting[child] -= 1
                if not waiting[child]:
                    following.append(child)
        level = following
    return order, generations


def descendants(
    graph_or_steps: nx.DiGraph[StepId] | Iterable[Step], step_ids: Iterable[StepId]
) -> frozenset[StepId]:
    """The steps *step_ids* and every step depending on them, directly or not.

    This is what a partial rollback of *step_ids* must undo.

    Args:
        graph_or_steps: a graph from ``build_graph``, or the steps to build it from.
        step_ids: the steps to start from.

    Returns:
        The closure of *step_ids* under "is depended on by".

    Raises:
        InvalidArgumentError: some of *step_ids* are not in the graph (all are named).
    """
    import networkx as nx  # type: ignore[import-untyped, unused-ignore]

    graph = (
        graph_or_steps if isinstance(graph_or_steps, nx.DiGraph) else build_graph(graph_or_steps)
    )
    start = list(step_ids)
    unknown = sorted({sid for sid in start if sid not in graph})
    if unknown:
        raise InvalidArgumentError(
            f"unknown step id{'s' if len(unknown) > 1 else ''}: {', '.join(map(repr, unknown))}."
            " Use ids of the plan's steps."
        )
    succ = graph.succ
    seen = set(start)
    stack = list(seen)
    while stack:
        for child in succ[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return frozenset(seen)


def rollback_plan(
    plan: Plan,
    applied: Sequence[StepId],
    scope: Collection[StepId] | None = None,
) -> tuple[StepId, ...]:
    """The ids to undo, in order: the applied steps in reverse plan order.

    Args:
        plan: the run's plan.
        applied: ids of the plan's steps applied so far (normally a prefix of ``plan.ids``).
        scope: undo only these steps and the steps depending on them (a partial rollback);
            None undoes every applied step.

    Returns:
        The step ids to undo, last applied first; dependants always come before what they
        depend on.

    Raises:
        InvalidArgumentError: *applied* or *scope* name steps that are not in the plan.
    """
    position = {sid: index for index, sid in enumerate(plan.ids)}
    strangers = sorted({sid for sid in (*applied, *(scope or ())) if sid not in position})
    if strangers:
        raise InvalidArgumentError(
            f"not in the plan: {', '.join(map(repr, strangers))}."
            " Roll back with the plan the run applied."
        )
    undo = set(applied)
    if scope is not None:
        in_plan = set(position)
        graph = _graph(plan.steps, in_plan)
        undo &= descendants(graph, scope)
    return tuple(sorted(undo, key=position.__getitem__, reverse=True))


def downgrade_plan(
    steps: Sequence[Step], applied: Collection[StepId], to: StepId
) -> tuple[StepId, ...]:
    """The applied steps a downgrade to *to* undoes, in the order they were applied (plan
    order): every applied step but *to* and what it needs, directly or not. The database is
    then as after *to*, as Alembic's ``downgrade ID`` and Sqitch's ``revert --to`` leave it.

    Raises:
        InvalidArgumentError: *to* is not among *steps*.
        UnknownDependencyError: the steps name dependencies that are not steps.
    """
    by_id = _index(steps)
    if to not in by_id:
        raise InvalidArgumentError(f"no migration {to!r} among the files")
    keep = _ancestors(by_id, to) | {to}
    order = plan(steps).ids
    return tuple(sid for sid in order if sid in applied and sid not in keep)
