"""Hypothesis strategies for plugin authors: :func:`st_steps`, :func:`st_findings`,
:func:`st_runs` (hypothesis is imported only when they are called)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lupo_migrate.core.model import (
    Classification,
    Failure,
    FailureKind,
    Finding,
    Outcome,
    Phase,
    Run,
    Severity,
    Step,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy


# --------------------------------------------------------------------------- strategies


def _names() -> SearchStrategy[str]:
    from hypothesis import strategies as st

    return st.text(alphabet="abcdefghij0123456789_", min_size=1, max_size=8)


def st_steps() -> SearchStrategy[Step]:
    """Steps with small ids, paths and dependencies (``meta`` left empty)."""
    from hypothesis import strategies as st

    return st.builds(
        Step,
        id=_names(),
        path=_names().map(lambda n: f"core/{n}.sql"),
        file_type=st.sampled_from(["doctrine", "module", "agent", "documentation"]),
        checksum=st.text(alphabet="0123456789abcdef", max_size=8),
        depends_on=st.lists(_names(), max_size=3, unique=True),
        version=st.text(alphabet="0123456789.", max_size=5),
        module=st.none() | _names(),
    )


def st_findings() -> SearchStrategy[Finding]:
    """Findings of any severity, with small texts and optional location, hint and kind."""
    from hypothesis import strategies as st

    small = st.text(max_size=12)
    return st.builds(
        Finding,
        severity=st.sampled_from(Severity),
        message=small,
        path=st.none() | _names().map(lambda n: f"core/{n}.sql"),
        line=st.none() | st.integers(min_value=1, max_value=10_000),
        hint=st.none() | small,
        code=st.text(alphabet="ABCDEFGHIJ0123456789", max_size=5),
        kind=st.none() | st.sampled_from(FailureKind),
        step_id=st.none() | _names(),
    )


def st_runs() -> SearchStrategy[Run]:
    """Runs in any phase; ``applied`` is a prefix of ``steps`` as in real runs."""
    from hypothesis import strategies as st

    @st.composite
    def runs(draw: Any) -> Run:
        steps = draw(st.lists(_names(), max_size=5, unique=True))
        applied = steps[: draw(st.integers(min_value=0, max_value=len(steps)))]
        rolls_back = draw(st.none() | _names())
        return Run(
            id=draw(_names()),
            target=draw(st.sampled_from(["default", "main", "reports"])),
            phase=draw(st.sampled_from(Phase)),
            steps=steps,
            applied=applied,
            in_flight=draw(st.none() | st.sampled_from(steps)) if steps else None,
            undo=list(reversed(applied)) if draw(st.booleans()) else (),
            outcome=draw(st.none() | st.sampled_from(Outcome)),
            blocked=draw(st.booleans()),
            classification=draw(st.none() | st.sampled_from(Classification)),
            failure=draw(
                st.none()
                | st.builds(
                    Failure,
                    kind=st.sampled_from(FailureKind),
                    message=st.text(max_size=12),
                    step_id=st.none() | _names(),
                    critical=st.booleans(),
                )
            ),
            findings=draw(st.lists(st_findings(), max_size=3)),
            pending=draw(st.lists(st.sampled_from(Classification), max_size=3)),
            holder=draw(st.none() | _names()),
            version=draw(st.integers(min_value=0, max_value=1_000)),
            rolls_back=rolls_back,
            rolls_back_scope=None
            if rolls_back is None
            else draw(st.none() | st.sampled_from(Classification)),
            started_by=draw(st.none() | _names()),
        )

    strategy: SearchStrategy[Run] = runs()
    return strategy
