"""Tests of the planner: scenarios named by graph shape, then properties on random DAGs."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lupo_migrate.core.model import Plan, Step, StepId
from lupo_migrate.core.planner import _ranks, build_graph, descendants, plan, rollback_plan
from lupo_migrate.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    PlanError,
    UnknownDependencyError,
    UnknownTargetError,
)
from strategies import Dag, st_dags


def step(sid: StepId, *deps: StepId, version: str = "") -> Step:
    """A step with an id, its dependencies and a version."""
    return Step(id=sid, path=f"{sid}.sql", depends_on=deps, version=version)


def ids(result: Plan) -> list[StepId]:
    """The plan's ids as a list, for readable comparisons."""
    return list(result.ids)


def edges_of(cycle: tuple[StepId, ...]) -> set[tuple[StepId, StepId]]:
    """The consecutive pairs of a cycle given with its first id repeated at the end."""
    return set(itertools.pairwise(cycle))


# Shapes used below (an arrow points from a dependency to the step that needs it):
CHAIN = [step("a"), step("b", "a"), step("c", "b")]  # a -> b -> c
DIAMOND = [step("top"), step("left", "top"), step("right", "top"), step("bottom", "left", "right")]
TWO_ROOTS = [step("r1"), step("r2"), step("x", "r1"), step("y", "r2")]


class TestEmpty:
    """No steps give an empty plan and an empty graph."""

    def test_plan(self) -> None:
        assert plan([]) == Plan()

    def test_graph(self) -> None:
        assert build_graph([]).number_of_nodes() == 0


class TestChain:
    """A chain is planned in dependency order whatever order its steps come in."""

    def test_order(self) -> None:
        assert ids(plan(reversed(CHAIN))) == ["a", "b", "c"]

    def test_generations(self) -> None:
        assert plan(CHAIN).generations == (("a",), ("b",), ("c",))

    def test_graph_edges_point_from_dependency_to_dependant(self) -> None:
        graph = build_graph(CHAIN)
        assert list(graph.nodes) == ["a", "b", "c"]
        assert set(graph.edges) == {("a", "b"), ("b", "c")}

    def test_upto_the_middle(self) -> None:
        assert ids(plan(CHAIN, upto="b")) == ["a", "b"]

    def test_applied_prefix_is_left_out(self) -> None:
        assert ids(plan(CHAIN, applied=["a"])) == ["b", "c"]

    def test_everything_applied(self) -> None:
        assert plan(CHAIN, applied=["a", "b", "c"]) == Plan()

    def test_rollback_reverses_the_applied_prefix(self) -> None:
        assert rollback_plan(plan(CHAIN), ["a", "b"]) == ("b", "a")

    def test_partial_rollback_takes_the_dependants(self) -> None:
        assert rollback_plan(plan(CHAIN), ["a", "b", "c"], scope=["b"]) == ("c", "b")


class TestDiamond:
    """A diamond puts both sides between the top and the bottom, ties broken by id."""

    def test_order(self) -> None:
        assert ids(plan(DIAMOND)) == ["top", "left", "right", "bottom"]

    def test_generations(self) -> None:
        assert plan(DIAMOND).generations == (("top",), ("left", "right"), ("bottom",))

    def test_versions_break_ties_before_ids(self) -> None:
        shape = [
            step("top"),
            step("left", "top", version="V10"),
            step("right", "top", version="V2"),
            step("bottom", "left", "right"),
        ]
        result = plan(shape)
        assert ids(result) == ["top", "right", "left", "bottom"]
        assert result.generations[1] == ("right", "left")

    def test_upto_one_side(self) -> None:
        assert ids(plan(DIAMOND, upto="left")) == ["top", "left"]

    def test_descendants_of_one_side(self) -> None:
        assert descendants(DIAMOND, ["left"]) == {"left", "bottom"}

    def test_descendants_of_the_top_is_everything(self) -> None:
        assert descendants(build_graph(DIAMOND), ["top"]) == {"top", "left", "right", "bottom"}

    def test_partial_rollback_of_one_side(self) -> None:
        result = plan(DIAMOND)
        assert rollback_plan(result, result.ids, scope=["right"]) == ("bottom", "right")


class TestTwoRoots:
    """Two independent roots are interleaved by sort key, not kept apart."""

    def test_order(self) -> None:
        assert ids(plan(TWO_ROOTS)) == ["r1", "r2", "x", "y"]

    def test_order_follows_versions(self) -> None:
        shape = [
            step("r1", version="2"),
            step("r2", version="1"),
            step("x", "r1", version="3"),
            step("y", "r2", version="9"),
        ]
        assert ids(plan(shape)) == ["r2", "r1", "x", "y"]

    def test_generations(self) -> None:
        assert plan(TWO_ROOTS).generations == (("r1", "r2"), ("x", "y"))

    def test_upto_leaves_the_other_root_out(self) -> None:
        assert ids(plan(TWO_ROOTS, upto="y")) == ["r2", "y"]


class TestNaturalVersionOrder:
    """Versions compare their numbers as numbers: V2 < V10 and 4.1.2 < 4.1.10."""

    @pytest.mark.parametrize(
        ("smaller", "larger"),
        [
            ("V2", "V10"),
            ("4.1.2", "4.1.10"),
            ("4.1", "4.1.0"),
            ("", "1"),
            ("1.9", "1.10"),
            ("2024_06_01", "2024_06_10"),
            ("V9", "W1"),
        ],
    )
    def test_pair(self, smaller: str, larger: str) -> None:
        shape = [step("z", version=smaller), step("a", version=larger)]
        assert ids(plan(shape)) == ["z", "a"]

    def test_equal_versions_fall_back_to_ids(self) -> None:
        assert ids(plan([step("b", version="V1"), step("a", version="V1")])) == ["a", "b"]


class TestCycle:
    """A cycle raises DependencyCycleError with the whole cycle, in dependency order."""

    SHAPE = (step("a", "c"), step("b", "a"), step("c", "b"), step("d", "c"), step("e"))

    def test_cycle_is_reported_whole(self) -> None:
        with pytest.raises(DependencyCycleError) as info:
            plan(self.SHAPE)
        assert info.value.cycle == ("a", "b", "c", "a")
        assert "a -> b -> c -> a" in str(info.value)

    def test_same_cycle_whatever_the_input_order(self) -> None:
        with pytest.raises(DependencyCycleError) as info:
            plan(reversed(self.SHAPE))
        assert info.value.cycle == ("a", "b", "c", "a")

    def test_is_a_plan_error(self) -> None:
        with pytest.raises(PlanError):
            plan(self.SHAPE)

    def test_two_cycles_report_one_with_the_smallest_step(self) -> None:
        shape = [step("x", "y"), step("y", "x"), step("b", "c"), step("c", "b")]
        with pytest.raises(DependencyCycleError) as info:
            plan(shape)
        assert info.value.cycle == ("b", "c", "b")

    def test_applied_step_does_not_hide_a_cycle_among_the_rest(self) -> None:
        with pytest.raises(DependencyCycleError):
            plan(self.SHAPE, applied=["e"])


class TestSelfLoop:
    """A step depending on itself is a cycle of one."""

    def test_cycle(self) -> None:
        with pytest.raises(DependencyCycleError) as info:
            plan([step("base"), step("loop", "base", "loop")])
        assert info.value.cycle == ("loop", "loop")


class TestUnknownDependencies:
    """Every unknown dependency is reported, each with all the steps that named it."""

    SHAPE = (step("a", "ghost", "phantom"), step("b", "ghost"), step("c", "a"))

    @pytest.mark.parametrize("call", [plan, build_graph])
    def test_all_listed_with_referrers(self, call: object) -> None:
        with pytest.raises(UnknownDependencyError) as info:
            call(self.SHAPE)  # type: ignore[operator]
        assert info.value.missing == {"ghost": ("a", "b"), "phantom": ("a",)}
        assert "'ghost' (named by a, b)" in str(info.value)

    def test_an_applied_dependency_is_satisfied(self) -> None:
        assert ids(plan(self.SHAPE, applied=["ghost", "phantom"])) == ["a", "b", "c"]


class TestDuplicateIds:
    """Two steps with one id raise InvalidArgumentError naming the id."""

    @pytest.mark.parametrize("call", [plan, build_graph])
    def test_named(self, call: object) -> None:
        shape = [step("a"), Step(id="a", path="other/a.sql"), step("b")]
        with pytest.raises(InvalidArgumentError, match=r"'a' \(a\.sql, other/a\.sql\)"):
            call(shape)  # type: ignore[operator]


class TestUpto:
    """Planning up to a step keeps only it and its ancestors."""

    def test_unknown_target(self) -> None:
        with pytest.raises(UnknownTargetError, match="'nope'") as info:
            plan(CHAIN, upto="nope")
        assert info.value.target == "nope"

    def test_with_applied(self) -> None:
        assert ids(plan(DIAMOND, upto="bottom", applied=["top", "left"])) == ["right", "bottom"]

    def test_target_applied_gives_an_empty_plan(self) -> None:
        assert plan(CHAIN, upto="b", applied=["a", "b"]) == Plan()

    def test_order_is_that_of_the_smaller_graph(self) -> None:
        # In the whole graph "x" (5) comes before "mid" (1), which waits for "late" (9);
        # planned without "late", "mid" goes first.
        shape = [
            step("late", version="9"),
            step("mid", "late", version="1"),
            step("x", version="5"),
        ]
        assert ids(plan(shape)) == ["x", "late", "mid"]
        assert ids(plan(shape, upto="mid")) == ["late", "mid"]
        assert ids(plan(shape, applied=["late"])) == ["mid", "x"]


class TestDescendants:
    """Descendants are the given steps and every step depending on them."""

    def test_unknown_ids_are_named(self) -> None:
        with pytest.raises(InvalidArgumentError, match="'nope'"):
            descendants(CHAIN, ["a", "nope"])

    def test_no_ids(self) -> None:
        assert descendants(CHAIN, []) == frozenset()


class TestRollbackPlan:
    """A rollback undoes applied steps last first, optionally only a scope and its dependants."""

    def test_nothing_applied(self) -> None:
        assert rollback_plan(plan(DIAMOND), []) == ()

    def test_scope_not_applied_yet(self) -> None:
        assert rollback_plan(plan(CHAIN), ["a"], scope=["c"]) == ()

    def test_unknown_ids_are_named(self) -> None:
        with pytest.raises(InvalidArgumentError, match="'zz'"):
            rollback_plan(plan(CHAIN), ["a", "zz"])
        with pytest.raises(InvalidArgumentError, match="'yy'"):
            rollback_plan(plan(CHAIN), ["a"], scope=["yy"])

    def test_plan_with_applied_steps_left_out(self) -> None:
        # "b" depends on the already applied "a", which is not in the plan.
        assert rollback_plan(plan(CHAIN, applied=["a"]), ["b", "c"], scope=["b"]) == ("c", "b")


# --- properties on random DAGs ---------------------------------------------------------------


def natural(version: str) -> tuple[str | int, ...]:
    """An independent natural key: text and number runs alternating, text first and last."""
    runs = [""]  # even positions hold text, odd positions digits
    for char in version:
        if (char in "0123456789") != (len(runs) % 2 == 0):
            runs.append("")
        runs[-1] += char
    if len(runs) % 2 == 0:
        runs.append("")
    return tuple(int(run) if i % 2 else run for i, run in enumerate(runs))


def sort_key(dag: Dag) -> Callable[[StepId], tuple[tuple[str | int, ...], StepId]]:
    """The planner's tie order for *dag*'s steps: natural version key, then id."""
    versions = {s.id: s.version for s in dag.steps}
    return lambda sid: (natural(versions[sid]), sid)


def smallest_order(dag: Dag) -> list[StepId]:
    """The smallest topological order by the sort key, by brute force: at every position,
    the smallest step whose dependencies are all placed."""
    key = sort_key(dag)
    needs = {s.id: set(s.depends_on) for s in dag.steps}
    order: list[StepId] = []
    while needs:
        ready = [sid for sid, deps in needs.items() if deps <= set(order)]
        order.append(min(ready, key=key))
        del needs[order[-1]]
    return order


class TestProperties:
    """Plans of random DAGs respect every edge, and do not depend on the input order."""

    @given(st_dags())
    def test_every_edge_respected(self, dag: Dag) -> None:
        position = {sid: i for i, sid in enumerate(plan(dag.steps).ids)}
        assert set(position) == set(dag.ids)
        for dependency, dependant in dag.edges:
            assert position[dependency] < position[dependant]

    @given(st_dags())
    def test_order_is_the_smallest_by_version_then_id(self, dag: Dag) -> None:
        assert ids(plan(dag.steps)) == smallest_order(dag)

    @given(st_dags(), st.data())
    def test_order_and_generations_are_networkx_s(self, dag: Dag, data: st.DataObject) -> None:
        """The planner sorts without networkx (a heap, as networkx does): the same order
        and generations as networkx's lexicographical topological sort, for any DAG and any
        applied subset."""
        import networkx as nx

        applied = set(data.draw(st.sets(st.sampled_from(dag.ids))) if dag.ids else set())
        pending = [s for s in dag.steps if s.id not in applied]
        ranks = _ranks(pending)
        graph = build_graph(dag.steps).subgraph([s.id for s in pending])
        order = list(nx.lexicographical_topological_sort(graph, key=ranks.__getitem__))
        generations = [
            tuple(sorted(g, key=ranks.__getitem__)) for g in nx.topological_generations(graph)
        ]
        got = plan(data.draw(st.permutations(dag.steps)), applied=applied)
        assert list(got.ids) == order
        assert [tuple(g) for g in got.generations] == generations

    @given(st_dags(), st.data())
    def test_same_plan_for_any_input_order(self, dag: Dag, data: st.DataObject) -> None:
        assert plan(data.draw(st.permutations(dag.steps))) == plan(dag.steps)

    @given(st_dags(), st.data())
    def test_without_dependencies_one_generation_in_sort_order(
        self, dag: Dag, data: st.DataObject
    ) -> None:
        # The planner's path without a graph must give what the graph would.
        free = [Step(id=s.id, path=s.path, version=s.version) for s in dag.steps]
        result = plan(data.draw(st.permutations(free)))
        expected = sorted(dag.ids, key=sort_key(dag))
        assert ids(result) == expected
        assert result.generations == ((tuple(expected),) if expected else ())

    @given(st_dags(), st.data())
    def test_generations_follow_dependencies(self, dag: Dag, data: st.DataObject) -> None:
        result = plan(data.draw(st.permutations(dag.steps)))
        generation_of = {sid: n for n, gen in enumerate(result.generations) for sid in gen}
        assert sorted(generation_of) == sorted(dag.ids)
        for s in dag.steps:
            assert all(generation_of[d] < generation_of[s.id] for d in s.depends_on)
            # ... and each step sits in the first generation its dependencies allow.
            expected = max((generation_of[d] + 1 for d in s.depends_on), default=0)
            assert generation_of[s.id] == expected
        for gen in result.generations:
            assert list(gen) == sorted(gen, key=sort_key(dag))

    @given(st_dags(min_size=2), st.data())
    def test_one_back_edge_gives_a_cycle_containing_it(self, dag: Dag, data: st.DataObject) -> None:
        with_ancestors = [s for s in dag.steps if dag.ancestors(s.id)]
        assume(with_ancestors)  # some edge to turn back
        node = data.draw(st.sampled_from(with_ancestors))
        ancestor = data.draw(st.sampled_from(sorted(dag.ancestors(node.id))))
        # The ancestor now also needs the node: edge node -> ancestor closes a circle.
        steps = [
            Step(id=s.id, path=s.path, depends_on=(*s.depends_on, node.id), version=s.version)
            if s.id == ancestor
            else s
            for s in dag.steps
        ]
        with pytest.raises(DependencyCycleError) as info:
            plan(data.draw(st.permutations(steps)))
        cycle = info.value.cycle
        assert cycle[0] == cycle[-1]
        assert len(set(cycle)) == len(cycle) - 1
        assert (node.id, ancestor) in edges_of(cycle)
        assert edges_of(cycle) <= dag.edges | {(node.id, ancestor)}

    @given(st_dags(), st.data())
    def test_descendants_is_the_closure(self, dag: Dag, data: st.DataObject) -> None:
        start = data.draw(st.sets(st.sampled_from(dag.ids))) if dag.ids else set()
        closure = descendants(dag.steps, start)
        assert set(start) <= closure
        # Closed: whatever depends on a member is a member ...
        assert all(b in closure for a, b in dag.edges if a in closure)
        # ... and minimal: every member is reached from the start.
        assert all(start & (dag.ancestors(sid) | {sid}) for sid in closure)

    @given(st_dags(min_size=1), st.data())
    def test_upto_plans_exactly_the_ancestors(self, dag: Dag, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(dag.ids))
        result = plan(dag.steps, upto=target)
        assert set(result.ids) == dag.ancestors(target) | {target}
        assert result.ids[-1] == target
        full = plan(dag.steps).ids
        kept = [sid for sid in full if sid in set(result.ids)]
        assert set(kept) == set(result.ids)

    @given(st_dags(), st.data())
    def test_applied_prefix_leaves_the_rest(self, dag: Dag, data: st.DataObject) -> None:
        full = plan(dag.steps)
        cut = data.draw(st.integers(0, len(full)))
        rest = plan(dag.steps, applied=full.ids[:cut])
        assert set(rest.ids) == set(full.ids[cut:])

    @given(st_dags(), st.data())
    def test_rollback_undoes_dependants_first(self, dag: Dag, data: st.DataObject) -> None:
        result = plan(dag.steps)
        applied = result.ids[: data.draw(st.integers(0, len(result)))]
        scope = data.draw(st.sets(st.sampled_from(result.ids))) if result.ids else None
        undo = rollback_plan(result, applied, scope=scope)
        expected = set(applied)
        if scope is not None:
            expected &= descendants(dag.steps, scope)
        assert set(undo) == expected
        position = {sid: i for i, sid in enumerate(undo)}
        for dependency, dependant in dag.edges:
            if dependency in position and dependant in position:
                assert position[dependant] < position[dependency]
