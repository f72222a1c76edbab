"""Hypothesis strategies shared by the test modules (import with ``from strategies import ...``).

Keep each strategy small and documented; add new ones in the section they belong to.
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from lupo_migrate.core.model import Step, StepId

__all__ = ["Dag", "st_dags", "st_step_ids", "st_steps", "st_versions"]

# --- steps -----------------------------------------------------------------------------------

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


def st_step_ids() -> st.SearchStrategy[StepId]:
    """Step ids: short words of letters, digits, ``_``, ``-`` and ``.``."""
    return st.text(_ID_ALPHABET, min_size=1, max_size=8)


def st_versions() -> st.SearchStrategy[str]:
    """Version texts as found in headers: empty, ``V12``, ``4.1.10``, ``2024_06_01``...

    Drawn from a small range so that equal versions (ties broken by id) are common.
    """
    number = st.integers(0, 12).map(str)
    return st.one_of(
        st.just(""),
        number.map(lambda n: f"V{n}"),
        st.lists(number, min_size=1, max_size=3).map(".".join),
        st.lists(number, min_size=3, max_size=3).map("_".join),
    )


def st_steps(
    ids: st.SearchStrategy[StepId] | None = None,
    depends_on: st.SearchStrategy[list[StepId]] | None = None,
) -> st.SearchStrategy[Step]:
    """One step; by default with no dependencies (pass *depends_on* to choose them)."""
    return st.builds(
        lambda sid, deps, version: Step(
            id=sid, path=f"migrations/{sid}.sql", depends_on=deps, version=version
        ),
        ids if ids is not None else st_step_ids(),
        depends_on if depends_on is not None else st.just([]),
        st_versions(),
    )


# --- dependency graphs -----------------------------------------------------------------------


@attrs.frozen
class Dag:
    """Steps forming a directed acyclic graph, with the graph's facts for assertions.

    Attributes:
        steps: the steps, in index order (every dependency has a lower index); shuffle them
            (``st.permutations``) to feed them in another order.
        edges: every dependency as ``(dependency, dependant)``.
    """

    steps: tuple[Step, ...]
    edges: frozenset[tuple[StepId, StepId]]

    @property
    def ids(self) -> tuple[StepId, ...]:
        """Step ids in index order."""
        return tuple(s.id for s in self.steps)

    def ancestors(self, step_id: StepId) -> frozenset[StepId]:
        """The steps *step_id* needs, directly or not (itself excluded)."""
        needs = {s.id: s.depends_on for s in self.steps}
        seen: set[StepId] = set()
        stack = list(needs[step_id])
        while stack:
            sid = stack.pop()
            if sid not in seen:
                seen.add(sid)
                stack.extend(needs[sid])
        return frozenset(seen)


@st.composite
def st_dags(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> Dag:
    """A DAG of steps: edges only from lower to higher index, names shuffled.

    Names are unique and permuted, so neither the names nor their sort order say anything
    about the graph; versions are drawn with many ties.
    """
    size = draw(st.integers(min_size, max_size))
    # Unique by construction (a drawn prefix and a number), which is much faster to draw
    # than unique free text; the permutation then unties names from graph positions.
    # Prefixes of letters only: a digit at the end of one would collide ("1" + 0 == "" + 10).
    letters = "".join(c for c in _ID_ALPHABET if not c.isdigit())
    prefixes = draw(st.lists(st.text(letters, max_size=2), min_size=size, max_size=size))
    names = draw(st.permutations([f"{prefix}{n}" for n, prefix in enumerate(prefixes)]))
    versions = draw(st.lists(st_versions(), min_size=size, max_size=size))
    # About two dependencies per step: index pairs, each turned to point lower -> higher.
    position = st.integers(0, max(size - 1, 0))
    pairs = draw(st.lists(st.tuples(position, position), max_size=2 * size))
    needs: list[set[StepId]] = [set() for _ in names]
    for i, j in pairs:
        if i != j:
            needs[max(i, j)].add(names[min(i, j)])
    steps = tuple(
        Step(id=name, path=f"migrations/{name}.sql", depends_on=sorted(deps), version=version)
        for name, deps, version in zip(names, needs, versions, strict=True)
    )
    edges = frozenset((dep, s.id) for s in steps for dep in s.depends_on)
    return Dag(steps=steps, edges=edges)
