"""What the contract checks share: the expectation helpers and a sample run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from lupo_migrate.core.model import (
    Classification,
    Failure,
    FailureKind,
    Finding,
    Phase,
    Run,
    Severity,
)

_E = TypeVar("_E", bound=BaseException)


#: Where the contract's manual clocks start.
_EPOCH = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _raises(exc_type: type[_E], call: Callable[[], object], what: str) -> _E:
    try:
        call()
    except exc_type as exc:
        return exc
    except AssertionError:
        raise  # a nested check already said what broke
    except BaseException as exc:
        raise AssertionError(
            f"{what}: expected {exc_type.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing was raised")


def _sample_run(run_id: str, target: str = "main") -> Run:
    """A run with every field set to something other than its default."""
    finding = Finding(
        severity=Severity.WARNING,
        message="column lacks a comment",
        path="core/001_users.sql",
        line=3,
        hint="add COMMENT '...'",
        code="L001",
        kind=FailureKind.LINT,
        step_id="001_users",
    )
    return Run(
        id=run_id,
        target=target,
        phase=Phase.ROLLING_BACK,
        steps=("001_users", "002_posts", "003_tags"),
        applied=("001_users",),
        in_flight="002_posts",
        undo=("002_posts", "001_users"),
        outcome=None,
        blocked=False,
        classification=Classification.A,
        failure=Failure(
            kind=FailureKind.STEP_FAILED_PARTWAY,
            message="statement 2 failed: duplicate column 'x'",
            step_id="002_posts",
            critical=True,
        ),
        findings=(finding,),
        pending=(Classification.C, Classification.D),
        holder="host-1:4242",
        version=0,
        rolls_back="r-earlier",
        rolls_back_scope=Classification.B,
    )
