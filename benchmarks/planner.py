"""Benchmark the planner against bare networkx doing the same work.

Usage::

    python benchmarks/planner.py [--steps N] [--repeat R] [--seed S] [--target RATIO]

Generates a random DAG of N steps (seeded; about two dependencies each, only on earlier steps;
names and input order shuffled), then times, best of R runs:

(a) lupo_migrate ``plan(steps)``: the graph built as ``build_graph`` builds it (duplicate and
    unknown-dependency checks included), the order, and the generations;
(b) bare networkx on the same edge list: build the ``DiGraph``, ``lexicographical_topological_sort``
    with an equivalent key (natural version key, then id), ``topological_generations``;
(a') for information, ``build_graph(steps)`` followed by ``plan(steps)`` (two graph builds).

Prints the times and the ratio (a)/(b); exits 1 if it is above the target (1.5 by default).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable

import networkx as nx

from lupo_migrate.core.model import Step
from lupo_migrate.core.planner import build_graph, plan

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[str | int, ...]:
    """The same natural version key as the planner's, written independently."""
    parts: list[str | int] = list(_DIGITS.split(text))
    parts[1::2] = [int(p) for p in parts[1::2]]
    return tuple(parts)


def make_steps(count: int, seed: int) -> list[Step]:
    """*count* steps, each depending on about two earlier ones, in shuffled order."""
    rng = random.Random(seed)
    names = [f"m{i:07d}_{rng.randrange(16**6):06x}" for i in range(count)]
    rng.shuffle(names)  # names say nothing about the order
    steps = []
    for index, name in enumerate(names):
        deps = {names[rng.randrange(index)] for _ in range(min(index, rng.choice((1, 2, 3))))}
        version = f"{rng.randrange(1, 5)}.{rng.randrange(30)}.{rng.randrange(300)}"
        steps.append(Step(id=name, path=f"{name}.sql", depends_on=sorted(deps), version=version))
    rng.shuffle(steps)
    return steps


def run_plan(steps: list[Step]) -> tuple[int, int]:
    """(a): ``plan(steps)``: builds the graph as ``build_graph`` does, orders, and groups."""
    result = plan(steps)
    return len(result.steps), len(result.generations)


def run_build_and_plan(steps: list[Step]) -> tuple[int, int]:
    """(a'): ``build_graph(steps)`` then ``plan(steps)``: the graph is built twice."""
    build_graph(steps)
    return run_plan(steps)


def run_bare(steps: list[Step]) -> tuple[int, int]:
    """(b): bare networkx on the same edge list, with an equivalent key."""
    edges = [(dep, step.id) for step in steps for dep in step.depends_on]
    version = {step.id: step.version for step in steps}
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(version)
    graph.add_edges_from(edges)
    order = list(
        nx.lexicographical_topological_sort(graph, key=lambda n: (natural_key(version[n]), n))
    )
    generations = list(nx.topological_generations(graph))
    return len(order), len(generations)


def best_of(repeat: int, func: Callable[[list[Step]], tuple[int, int]], steps: list[Step]) -> float:
    """The shortest wall-clock time of *repeat* calls of ``func(steps)``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func(steps)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 within target, 1 above)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="number of steps (100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, best kept (3)")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed")
    parser.add_argument("--target", type=float, default=1.5, help="maximum ratio (1.5)")
    args = parser.parse_args(argv)

    steps = make_steps(args.steps, args.seed)
    edges = sum(len(step.depends_on) for step in steps)
    checks = {run_plan(steps), run_bare(steps)}  # warm up, and compare
    if len(checks) != 1:
        print(f"MISMATCH between lupo_migrate and networkx: {checks}", file=sys.stderr)
        return 2

    # Interleave the sides so that machine noise hits all of them alike.
    sides = {"plan": run_plan, "build+plan": run_build_and_plan, "bare": run_bare}
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(args.repeat):
        for name, func in sides.items():
            best[name] = min(best[name], best_of(1, func, steps))
    ratio = best["plan"] / best["bare"]
    verdict = "OK" if ratio <= args.target else "TOO SLOW"
    print(f"planner benchmark: {len(steps):,} steps, {edges:,} dependencies, best of {args.repeat}")
    print(f"  (b) bare networkx: build + lexicographical sort + generations  {best['bare']:7.3f} s")
    print(f"  (a) lupo_migrate plan(): build + order + generations           {best['plan']:7.3f} s")
    print(f"      ratio (a)/(b): {ratio:.2f}  (target <= {args.target:.2f})  {verdict}")
    extra = best["build+plan"] / best["bare"]
    twice = best["build+plan"]
    print(f"  (a') build_graph() then plan(), graph built twice:             {twice:7.3f} s")
    print(f"      ratio (a')/(b): {extra:.2f}  (for information; not checked)")
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
