"""Decisions after a run: scopes, windows on an injected clock, rollback RUN, accept, purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.decisions import (
    ACCEPTED,
    AVAILABLE,
    FINAL,
    PENDING,
    PURGED,
    ROLLED_BACK,
    DecisionRecord,
    is_open,
    scope_steps,
    status_at,
    time_left,
)
from lupo_migrate.core.model import (
    Classification,
    FailureKind,
    Finding,
    Outcome,
    Severity,
    Stage,
    Step,
    ValidationContext,
)
from lupo_migrate.errors import DecisionError, TargetBlockedError
from test_apply import cli as _cli
from test_runner import THREE, orchestrator, write
from test_runner import _parts as _parts  # the parts fixture

B, C, D = Classification.B, Classification.C, Classification.D


def _steps(edges: dict[str, tuple[str, ...]], types: dict[str, str] | None = None) -> list[Step]:
    types = types or {}
    return [
        Step(id=i, path=f"{i}.sql", depends_on=deps, file_type=types.get(i, "doctrine"))
        for i, deps in edges.items()
    ]


class TestScopes:
    CHAIN = _steps(
        {"a": (), "b": ("a",), "c": ("b",), "doc": (), "d": ("a",), "e": ()},
        {"doc": "documentation"},
    )

    def test_b_is_the_affected_steps_and_their_descendants_in_applied_order(self) -> None:
        assert scope_steps(B, ["b"], self.CHAIN) == ("b", "c")
        assert scope_steps(B, ["a"], self.CHAIN) == ("a", "b", "c", "d")

    def test_c_starts_from_doctrine_steps_only(self) -> None:
        assert scope_steps(C, ["doc", "d"], self.CHAIN) == ("d",)

    def test_d_is_the_documentation_steps_alone(self) -> None:
        assert scope_steps(D, ["doc", "a"], self.CHAIN) == ("doc",)
        assert scope_steps(D, [], self.CHAIN) == ("doc",)

    def test_findings_naming_no_step_concern_every_step_of_the_type(self) -> None:
        assert scope_steps(B, [], self.CHAIN) == tuple(s.id for s in self.CHAIN)
        assert scope_steps(None, ["a"], self.CHAIN) == tuple(s.id for s in self.CHAIN)

    @given(st.data())
    def test_a_b_scope_holds_every_dependant_of_its_steps(self, data: st.DataObject) -> None:
        """Property: nothing outside the scope depends on a step inside it."""
        n = data.draw(st.integers(1, 12))
        ids = [f"s{i}" for i in range(n)]
        edges = {
            sid: tuple(data.draw(st.sets(st.sampled_from(ids[:i]) if i else st.nothing())))
            for i, sid in enumerate(ids)
        }
        steps = _steps(edges)
        affected = data.draw(st.sets(st.sampled_from(ids), min_size=1))
        scope = set(scope_steps(B, affected, steps))
        assert affected <= scope
        for step in steps:
            if set(step.depends_on) & scope:
                assert step.id in scope
        # Minimal: each step in the scope is affected or depends on one in the scope.
        assert all(s.id in affected or set(s.depends_on) & scope for s in steps if s.id in scope)


class TestWindows:
    RECORD = DecisionRecord(
        run_id="r", classification=B, scope=("a",), recorded_at=20260101000000,
        deadline=20260102000000,
    )  # fmt: skip

    def test_open_until_the_deadline_then_final(self) -> None:
        assert status_at(self.RECORD, 20260101235959) == PENDING
        assert is_open(self.RECORD, 20260102000000)
        assert status_at(self.RECORD, 20260102000001) == FINAL
        assert not is_open(self.RECORD, 20260102000001)

    def test_a_decided_record_stays_as_decided(self) -> None:
        decided = DecisionRecord(
            run_id="r", classification=None, scope=(), recorded_at=1, status=ACCEPTED
        )
        assert status_at(decided, 0) == ACCEPTED
        assert not is_open(decided, 0)

    def test_time_left_never_goes_negative(self) -> None:
        from lupo_migrate.core.clock import from_stamp

        start = from_stamp(20260101000000)
        assert time_left(self.RECORD, start) == timedelta(hours=24)
        assert time_left(self.RECORD, start + timedelta(days=3)) == timedelta(0)


# ------------------------------------------------------------------ the orchestrator


def _slow_second_step(steps: Sequence[Step]) -> Any:
    """A post-validator that finds the second step made a probe slower: class B."""

    def check(context: ValidationContext) -> list[Finding]:
        if context.stage is not Stage.POST:
            return []
        return [
            Finding(
                severity=Severity.ERROR,
                message="probe 'SELECT b' 3.1x slower than before",
                kind=FailureKind.PERFORMANCE_DEGRADATION,
                step_id=steps[1].id,
                code="performance",
            )
        ]

    return check


@pytest.fixture(name="decided")
def _decided(parts: dict[str, Any]) -> tuple[Any, Sequence[Step], Any]:
    """Three steps applied; a class B decision pending on the second one."""
    steps = write(parts["root"], THREE)
    orch = orchestrator(parts, validators=[_slow_second_step(steps)])
    result = orch.apply(steps)
    assert result.outcome is Outcome.COMPLETED
    return orch, steps, result.run


class TestDecisionWindows:
    def test_a_b_decision_is_recorded_with_its_24h_deadline(
        self, parts: dict[str, Any], decided: tuple[Any, Sequence[Step], Any]
    ) -> None:
        orch, steps, run = decided
        now = parts["clock"].now()
        decision, material = orch.decisions(run.id)
        assert (material.classification, material.status) == (None, AVAILABLE)
        assert (decision.classification, decision.status) == (B, PENDING)
        assert decision.scope == (steps[1].id, steps[2].id)  # V3 follows V2: a dependant
        assert decision.deadline == to_stamp(now + timedelta(hours=24))
        assert material.deadline == decision.deadline
        assert "3.1x slower" in (decision.detail or "")

    def test_b_is_rollable_at_23h59m(
        self, parts: dict[str, Any], decided: tuple[Any, Sequence[Step], Any]
    ) -> None:
        orch, steps, run = decided
        parts["clock"].advance(timedelta(hours=23, minutes=59))
        result = orch.rollback(run.id[:8], steps, scope=B, operator="ops")
        assert result.outcome is Outcome.ROLLED_BACK
        assert result.run.classification is B
        assert parts["target"].executed[-1] == f"UNDO {steps[1].id}"
        ledger = parts["storage"].applied("default")
        assert list(ledger) == [steps[0].id]  # V3 depends on V2: undone with it
        statuses = {r.label: (r.status, r.decided_by) for r in orch.decisions(run.id)}
        assert statuses == {"run": (AVAILABLE, None), "B": (ROLLED_BACK, "ops")}
        with pytest.raises(
            DecisionError,
            match="was rolled back already by ops on 2024-01-01 23:59:00 UTC; there is nothing",
        ):
            orch.rollback(run.id, steps, scope=B)

    def test_b_is_final_at_24h01m_and_purge_records_it(
        self, parts: dict[str, Any], decided: tuple[Any, Sequence[Step], Any]
    ) -> None:
        orch, steps, run = decided
        parts["clock"].advance(timedelta(hours=24, minutes=1))
        executed = list(parts["target"].executed)
        for scope in (B, None):
            with pytest.raises(
                DecisionError,
                match=r"the window to roll back (the run|its class B scope) closed on 2024-01-02",
            ):
                orch.rollback(run.id, steps, scope=scope)
        assert parts["target"].executed == executed  # nothing ran
        assert len(parts["storage"].applied("default")) == 3
        assert orch.purge() == [(run.id, ())]
        assert [(r.status, r.decided_by) for r in orch.decisions(run.id)] == [
            (FINAL, "window"),
            (PURGED, "purge"),
        ]
        assert orch.purge() == []  # once

    def test_the_whole_run_is_rolled_back_newest_first(
        self, parts: dict[str, Any], decided: tuple[Any, Sequence[Step], Any]
    ) -> None:
        orch, steps, run = decided
        result = orch.rollback(run.id, steps, operator="ops")
        assert result.outcome is Outcome.ROLLED_BACK
        assert result.run.classification is Classification.A
        undo = [s for s in parts["target"].executed if s.startswith("UNDO")]
        assert undo == [f"UNDO {s.id}" for s in reversed(steps)]
        assert parts["storage"].applied("default") == {}
        assert {r.status for r in orch.decisions(run.id)} == {ROLLED_BACK}
        history = orch.history()
        assert [r.outcome for r in history] == [Outcome.COMPLETED, Outcome.ROLLED_BACK]
        assert history[1].failure is not None
        assert f"ops rolls back the whole run of run {run.id}" in history[1].failure.message
        # the files are pending again: the next apply applies them again
        assert orch.apply(steps).outcome is Outcome.COMPLETED

    @pytest.mark.parametrize("scope", [None, B])
    def test_a_rollback_whose_process_died_is_finished_by_recover_and_decided(
        self,
        parts: dict[str, Any],
        decided: tuple[Any, Sequence[Step], Any],
        scope: Classification | None,
    ) -> None:
        """An operator's rollback dies before an undo statement (the whole run's second, the
        B scope's first): ``recover`` finishes it, and the decisions it answered read
        rolled back, naming both runs; the run cannot be accepted or rolled back again."""
        orch, steps, run = decided
        survives = 0 if scope is B else 1  # undo statements that run before the death

        class Died(BaseException):
            """The process went away."""

        def die(statement: str) -> None:
            undone = [s for s in parts["target"].executed if s.startswith("UNDO")]
            if statement.startswith("UNDO") and len(undone) == survives:
                raise Died

        parts["target"].on_execute = die
        with pytest.raises(Died):
            orch.rollback(run.id, steps, scope=scope, operator="ops")
        parts["target"].on_execute = None
        dead = orch.crashed()
        assert dead is not None
        assert dead.id != run.id
        result = orch.recover(steps, operator="night shift")
        assert result.outcome is Outcome.ROLLED_BACK
        undone = [s for s in parts["target"].executed if s.startswith("UNDO")]
        wanted = [steps[2], steps[1]] if scope is B else list(reversed(steps))
        assert undone == [f"UNDO {s.id}" for s in wanted]
        records = {r.label: r for r in orch.decisions(run.id)}
        answered = ["B"] if scope is B else ["run", "B"]
        for label in answered:
            assert records[label].status == ROLLED_BACK
            assert records[label].decided_by == "night shift"
            assert f"by run {dead.id}" in (records[label].detail or "")
            assert "finished by recover" in (records[label].detail or "")
        if scope is B:
            assert records["run"].status == AVAILABLE
        else:
            with pytest.raises(DecisionError, match="no open decision"):
                orch.accept(run.id)

    def test_an_accepted_run_cannot_be_rolled_back(
        self, parts: dict[str, Any], decided: tuple[Any, Sequence[Step], Any]
    ) -> None:
        orch, steps, run = decided
        accepted = orch.accept(run.id, operator="ops")
        assert [r.status for r in accepted] == [ACCEPTED, ACCEPTED]
        with pytest.raises(
            DecisionError,
            match=r"the run was kept by ops on .* \(accepted\), so it cannot be rolled back",
        ):
            orch.rollback(run.id, steps)
        with pytest.raises(DecisionError, match="no open decision"):
            orch.accept(run.id)
        assert [r for _, r in orch.purge()] == [()]

    def test_a_later_run_must_be_rolled_back_first(self, parts: dict[str, Any]) -> None:
        steps = write(parts["root"], THREE)
        orch = orchestrator(parts)
        first = orch.apply(steps[:2]).run
        second = orch.apply(steps).run
        with pytest.raises(DecisionError, match=f"run {second.id} applied steps after"):
            orch.rollback(first.id, steps)
        assert orch.rollback(second.id, steps).outcome is Outcome.ROLLED_BACK
        assert orch.rollback(first.id, steps).outcome is Outcome.ROLLED_BACK
        assert parts["storage"].applied("default") == {}

    def test_only_completed_runs_and_known_ids(self, parts: dict[str, Any]) -> None:
        steps = write(parts["root"], {**THREE, "V4__d.sql": "FAIL here\n"})
        orch = orchestrator(parts)
        failed = orch.apply(steps).run
        with pytest.raises(DecisionError, match="is rolled_back: only a completed run"):
            orch.rollback(failed.id, steps)
        with pytest.raises(DecisionError, match="no run 'nope'"):
            orch.rollback("nope", steps)

    def test_resolve_clears_a_blocked_target(self, parts: dict[str, Any]) -> None:
        steps = write(parts["root"], {"V1__undo-fails.sql": "CREATE x\n", "V2__b.sql": "FAIL\n"})
        orch = orchestrator(parts)
        assert orch.apply(steps).outcome is Outcome.FAILED
        with pytest.raises(TargetBlockedError):
            orch.apply(steps)
        run = orch.resolve(operator="ops", note="dropped x by hand")
        assert not run.blocked
        assert parts["storage"].findings(run.id)[-1].message == "resolved by ops: dropped x by hand"
        with pytest.raises(DecisionError, match="not blocked"):
            orch.resolve(operator="ops")


def test_a_storage_without_a_rollback_log_says_so(parts: dict[str, Any], tmp_path: Path) -> None:
    class Bare:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            if name in ("record_decision", "decide", "decisions"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    parts["storage"] = Bare(parts["storage"])
    steps = write(parts["root"], THREE)
    orch = orchestrator(parts)
    run = orch.apply(steps).run
    with pytest.raises(DecisionError, match="keeps no rollback log"):
        orch.rollback(run.id, steps)


def test_accept_then_purge_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """accept makes the run final at once; purge then drops its kept material; rollback is
    refused afterwards with exit 13."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    code, out, _ = _cli(capsys, "apply", str(migrations), "--db", url)
    run_id = out.split()[1].rstrip(":")
    db = ["--db", url]
    # still open (purge also deletes the expired ephemeral rows: its last line)
    assert _cli(capsys, "purge", str(migrations), *db)[1].splitlines()[0] == "0 run(s) purged"
    code, out, _ = _cli(capsys, "accept", run_id[:8], str(migrations), *db, "--operator", "ops")
    assert (code, out) == (
        0,
        f"accepted: the run's changes of run {run_id} stay (by ops), and can no longer be"
        " rolled back; `lupo-migrate purge` frees the space its backups take\n",
    )
    code, out, _ = _cli(capsys, "purge", str(migrations), *db)
    purged = [f"purged {run_id}: 1 backup table(s) dropped", "1 run(s) purged"]
    assert out.splitlines()[:2] == purged
    code, out, _ = _cli(capsys, "decisions", str(migrations), *db, "--all")
    assert f"{run_id}  run  purged" in out
    code, _, err = _cli(capsys, "rollback", run_id, str(migrations), *db)
    assert code == 13
    assert "its rollback material was purged on " in err


def test_a_failed_rollback_blocks_until_resolve_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A down section that fails, on a step whose effects the pre-images cannot cover."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text(
        "CREATE TABLE t (id INTEGER);\nPRAGMA user_version = 7;\n"
        "-- lupo:down\nDROP TABLE no_such_table;\n"
    )
    (migrations / "V2__fails.sql").write_text("SELECT no_such_function();\n")
    db = ["--db", url]
    code, out, err = _cli(capsys, "apply", str(migrations), *db)
    assert code == 15  # RollbackIncompleteError: failed, and the rollback did not finish
    assert "failed, 1 of 2" in out
    code, _, err = _cli(capsys, "apply", str(migrations), *db)
    assert code == TargetBlockedError.exit_code
    assert "lupo-migrate resolve" in err
    code, out, _ = _cli(capsys, "resolve", str(migrations), *db, "--note", "dropped t by hand")
    assert code == 0
    assert out.endswith("resolved; the target accepts runs again\n")
    code, out, _ = _cli(capsys, "status", str(migrations), *db)
    assert "BLOCKED" not in out
    code, _, err = _cli(capsys, "resolve", str(migrations), *db)
    assert code == 13
    assert "not blocked" in err
