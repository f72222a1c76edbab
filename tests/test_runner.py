"""The Orchestrator shell on in-memory backends, a fake target and a small SQL-ish handler."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from lupo_migrate.backends.memory import (
    InMemoryFreeze,
    InMemoryLock,
    InMemoryLockTable,
    InMemoryStorage,
    ManualClock,
)
from lupo_migrate.core.model import Classification, Outcome, Phase, Run, Step
from lupo_migrate.errors import LockHeldError, MigrationFileError, StepError, TargetBlockedError
from lupo_migrate.files.discover import load_steps
from lupo_migrate.handlers.registry import HandlerRegistry
from lupo_migrate.run.orchestrator import Orchestrator
from lupo_migrate.typing import StepContext


@attrs.define
class FakeTarget:
    """Records statements; a statement containing FAIL is refused."""

    dialect: str = "mysql"
    names: Mapping[str, str] = attrs.field(factory=dict)
    renames: Mapping[str, str] = attrs.field(factory=dict)
    transactional_ddl: bool = False
    core_tables: int = 3
    executed: list[str] = attrs.field(factory=list)
    on_execute: Any = None

    @contextlib.contextmanager
    def step_session(self) -> Iterator[list[str]]:
        pending: list[str] = []
        yield pending
        self.executed.extend(pending)

    def execute(self, connection: list[str], statement: str) -> None:
        if self.on_execute is not None:
            self.on_execute(statement)
        if "FAIL" in statement:
            raise RuntimeError(f"refused: {statement}")
        if self.transactional_ddl:
            connection.append(statement)
        else:
            self.executed.append(statement)

    def facts(self) -> Mapping[str, Any]:
        return {"core_tables": self.core_tables}


class LineHandler:
    """One statement per non-empty line; undo runs 'UNDO <step>'; UNDO-FAIL files fail undo."""

    file_type = "doctrine"
    suffixes: Sequence[str] = (".sql",)

    def apply(self, step: Step, context: StepContext) -> None:
        lines = [ln for ln in context.read_text(step.path).splitlines() if ln and ln[0] != "-"]
        for index, line in enumerate(lines):
            context.execute(line, index=index, line=index + 1)

    def rollback(self, step: Step, context: StepContext) -> None:
        if "undo-fails" in step.path:
            context.execute("FAIL undo", index=1000)
        context.execute(f"UNDO {step.id}", index=1000)

    def can_rollback(self, step: Step) -> bool:
        return True


def write(root: Path, files: dict[str, str]) -> Sequence[Step]:
    for name, text in files.items():
        (root / name).write_text(text)
    return load_steps(root)


@pytest.fixture(name="parts")
def _parts(tmp_path: Path) -> dict[str, Any]:
    clock = ManualClock()
    registry = HandlerRegistry()
    registry.register(LineHandler())
    return {
        "storage": InMemoryStorage(),
        "table": InMemoryLockTable(),
        "clock": clock,
        "freeze": InMemoryFreeze(clock),
        "target": FakeTarget(),
        "registry": registry,
        "root": tmp_path,
    }


def orchestrator(parts: dict[str, Any], **kwargs: Any) -> Orchestrator:
    return Orchestrator(
        storage=parts["storage"],
        lock=InMemoryLock("t", parts["clock"], table=parts["table"]),
        freeze=parts["freeze"],
        clock=parts["clock"],
        registry=parts["registry"],
        target=parts["target"],
        root=parts["root"],
        **kwargs,
    )


THREE = {
    "V1__a.sql": "CREATE a\n",
    "V2__b.sql": "CREATE b\nINSERT b\n",
    "V3__c.sql": "CREATE c\n",
}


class TestApply:
    def test_every_step_is_applied_in_order_and_recorded(self, parts: dict[str, Any]) -> None:
        """Completed; statements in plan order; the ledger holds each file's checksum."""
        steps = write(parts["root"], THREE)
        result = orchestrator(parts).apply(steps)
        assert result.outcome is Outcome.COMPLETED
        assert parts["target"].executed == ["CREATE a", "CREATE b", "INSERT b", "CREATE c"]
        ledger = parts["storage"].applied("default")
        assert list(ledger) == ["V1__a", "V2__b", "V3__c"]
        assert ledger["V2__b"].checksum == steps[1].checksum
        journal = parts["storage"].journal(result.run.id)  # type: ignore[union-attr]
        assert [(e.step_id, e.index) for e in journal] == [
            ("V1__a", 0),
            ("V2__b", 0),
            ("V2__b", 1),
            ("V3__c", 0),
        ]
        assert all(e.done_at is not None for e in journal)

    def test_a_second_run_with_nothing_new_does_nothing(self, parts: dict[str, Any]) -> None:
        """No run is created and no statement runs."""
        steps = write(parts["root"], THREE)
        orchestrator(parts).apply(steps)
        before = list(parts["target"].executed)
        result = orchestrator(parts).apply(steps)
        assert result.nothing_to_do
        assert parts["target"].executed == before
        assert len(parts["storage"].list_runs()) == 1

    def test_every_transition_is_persisted_before_its_effects(self, parts: dict[str, Any]) -> None:
        """When the shell acts on a run, storage already holds that run's version."""
        seen: list[tuple[int, int | None]] = []

        def check(run: Run, _event: object) -> None:
            stored = parts["storage"].get_run(run.id)
            seen.append((run.version, stored.version if stored else None))

        steps = write(parts["root"], THREE)
        orchestrator(parts, on_event=check).apply(steps)
        assert seen
        assert all(v == s for v, s in seen)

    def test_writes_are_frozen_during_the_run_and_thawed_after(self, parts: dict[str, Any]) -> None:
        """The handler sees an active freeze; none is left afterwards."""
        frozen: list[bool] = []
        parts["target"].on_execute = lambda _s: frozen.append(parts["freeze"].status() is not None)
        orchestrator(parts).apply(write(parts["root"], THREE))
        assert frozen
        assert all(frozen)
        assert parts["freeze"].status() is None


class TestFailure:
    def test_a_failing_step_rolls_back_the_whole_run_as_class_a(
        self, parts: dict[str, Any]
    ) -> None:
        """Earlier steps undone newest first; the half-run step first; ledger empty."""
        steps = write(parts["root"], {**THREE, "V3__c.sql": "CREATE c\nFAIL c\n"})
        result = orchestrator(parts).apply(steps)
        run = result.run
        assert run is not None
        assert (run.outcome, run.classification) == (Outcome.ROLLED_BACK, Classification.A)
        assert parts["target"].executed[-3:] == ["UNDO V3__c", "UNDO V2__b", "UNDO V1__a"]
        assert parts["storage"].applied("default") == {}
        assert "statement 2 failed" in (run.failure.message if run.failure else "")
        assert "V3__c.sql:2" in (run.failure.message if run.failure else "")
        assert parts["freeze"].status() is None

    def test_on_transactional_ddl_a_failed_step_needs_no_undo(self, parts: dict[str, Any]) -> None:
        """PostgreSQL/SQLite: the failed step's transaction already undid it."""
        parts["target"].transactional_ddl = True
        steps = write(parts["root"], {"V1__a.sql": "CREATE a\n", "V2__b.sql": "X\nFAIL\n"})
        result = orchestrator(parts).apply(steps)
        assert result.outcome is Outcome.ROLLED_BACK
        assert parts["target"].executed == ["CREATE a", "UNDO V1__a"]

    def test_a_failed_rollback_blocks_the_target(self, parts: dict[str, Any]) -> None:
        """Outcome failed, target blocked; the next apply is refused until resolved."""
        steps = write(parts["root"], {"V1__undo-fails.sql": "CREATE a\n", "V2__b.sql": "FAIL\n"})
        result = orchestrator(parts).apply(steps)
        assert result.run is not None
        assert (result.outcome, result.run.blocked) == (Outcome.FAILED, True)
        with pytest.raises(TargetBlockedError, match="resolve"):
            orchestrator(parts).apply(steps)

    def test_over_the_table_budget_nothing_runs(self, parts: dict[str, Any]) -> None:
        """185 core tables against 77: rolled back before migrating, with the figures."""
        parts["target"].core_tables = 185
        result = orchestrator(parts, table_budget=77).apply(write(parts["root"], THREE))
        assert result.outcome is Outcome.ROLLED_BACK
        assert parts["target"].executed == []
        assert any("185 tables" in f.message for f in result.findings)
        parts["target"].core_tables = 185
        assert orchestrator(parts, table_budget=200).apply(load_steps(parts["root"])).outcome is (
            Outcome.COMPLETED
        )


class TestGuards:
    def test_an_edited_applied_file_is_refused(self, parts: dict[str, Any]) -> None:
        """verify names the file; apply raises before anything runs."""
        orchestrator(parts).apply(write(parts["root"], THREE))
        steps = write(parts["root"], {"V2__b.sql": "CREATE b\nINSERT b2\n"})
        (finding,) = orchestrator(parts).verify(steps)
        assert finding.path == "V2__b.sql"
        with pytest.raises(MigrationFileError, match="edited after it was applied"):
            orchestrator(parts).apply(steps)

    def test_a_held_lock_names_its_holder_and_nothing_is_written(
        self, parts: dict[str, Any]
    ) -> None:
        """Another owner holds the run lock: LockHeldError, no run recorded."""
        steps = write(parts["root"], THREE)
        other = InMemoryLock("t", parts["clock"], table=parts["table"])
        with other.acquire("host-b:42"), pytest.raises(LockHeldError) as info:
            orchestrator(parts).apply(steps)
        assert info.value.holder == "host-b:42"
        assert parts["storage"].list_runs() == []
        assert parts["target"].executed == []

    def test_status_and_history(self, parts: dict[str, Any]) -> None:
        """status is the latest run; history lists runs oldest first."""
        orch = orchestrator(parts)
        assert orch.status() is None
        orch.apply(write(parts["root"], {"V1__a.sql": "A\n"}))
        orch.apply(write(parts["root"], {"V2__b.sql": "B\n"}))
        assert [r.steps for r in orch.history()] == [("V1__a",), ("V2__b",)]
        status = orch.status()
        assert status is not None
        assert (status.phase, status.outcome) == (Phase.IDLE, Outcome.COMPLETED)


def test_a_working_run_beats_its_lock_and_stops_when_the_lock_is_gone(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats while it works; a lost lock raises before the next statement runs."""
    from lupo_migrate.errors import LockError
    from lupo_migrate.run import keepalive

    monkeypatch.setattr(keepalive, "HEARTBEAT", -1.0)  # beat between every two events
    steps = write(parts["root"], THREE)
    beats: list[int] = []
    lock = InMemoryLock("t", parts["clock"], table=parts["table"])

    def seen(run: Run, _event: object) -> None:
        parts["clock"].advance(timedelta(seconds=30))
        holder = lock.holder()
        if holder is not None:
            beats.append(holder.heartbeat)

    orch = orchestrator(parts, on_event=seen)
    orch.lock = lock
    assert orch.apply(steps).outcome is Outcome.COMPLETED
    assert len(set(beats)) > 3  # the heartbeat moved with the clock

    more = write(parts["root"], {"V4__d.sql": "CREATE d\n", "V5__e.sql": "CREATE e\n"})

    def lose(run: Run, event: object) -> None:
        if type(event).__name__ == "StepApplied":
            lock.break_lock()

    orch = orchestrator(parts, on_event=lose)
    orch.lock = lock
    with pytest.raises(LockError):
        orch.apply(more)
    assert "CREATE e" not in parts["target"].executed  # nothing ran after the loss
    assert orch.crashed() is not None  # reported, and recoverable


def test_a_held_lock_whose_heartbeat_is_stale_is_reported_hung(parts: dict[str, Any]) -> None:
    """Held with a heartbeat a minute old or newer: a working run; older: hung."""
    lock = InMemoryLock("t", parts["clock"], table=parts["table"])
    orch = orchestrator(parts)
    orch.lock = lock
    assert orch.hung() is None  # free
    with lock.acquire("other:1"):
        parts["clock"].advance(timedelta(seconds=59))
        assert orch.hung() is None
        parts["clock"].advance(timedelta(seconds=2))
        stuck = orch.hung()
        assert stuck is not None
        assert stuck.owner == "other:1"
        lock.heartbeat("other:1")
        assert orch.hung() is None  # it beat again
        assert orch.hung(after=timedelta(0)) is None
        parts["clock"].advance(timedelta(seconds=1))
        assert orch.hung(after=timedelta(0)) is not None


def test_a_file_read_again_is_read_anew_once_it_changed(tmp_path: Path) -> None:
    """A run reads its files more than once; a text read before is used again only while the
    file is the same (inode, size, modification time): an edit of the same size, a file
    replaced by another (an atomic write) and a longer text are all read anew."""
    from lupo_migrate.run.shared import _read_under

    step = Step(id="a", path="a.sql")
    path = tmp_path / "a.sql"
    path.write_bytes(b"\xef\xbb\xbfone\r\n")
    assert _read_under(tmp_path, "a.sql", step) == "one\n"
    path.write_text("two\n")
    os.utime(path, ns=(1, 1))  # same size as before: only the time tells
    assert _read_under(tmp_path, "a.sql", step) == "two\n"
    (tmp_path / "new.sql").write_text("six\n")
    os.utime(tmp_path / "new.sql", ns=(1, 1))  # same size and time, another inode
    os.replace(tmp_path / "new.sql", path)
    assert _read_under(tmp_path, "a.sql", step) == "six\n"
    path.write_text("seven\n")
    assert _read_under(tmp_path, "a.sql", step) == "seven\n"
    outside = tmp_path.parent / f"{tmp_path.name}-outside.sql"
    outside.write_text("secret\n")
    path.unlink()
    path.symlink_to(outside)  # the path now leads out of the root: refused, not served
    with pytest.raises(StepError, match="leaves the migrations root"):
        _read_under(tmp_path, "a.sql", step)
