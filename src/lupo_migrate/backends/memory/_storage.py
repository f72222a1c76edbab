"""The in-memory storage: runs, the ledger, findings, the journal, the rollback log, the queue."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import final

import attrs

from lupo_migrate.backends.clocks import SystemClock
from lupo_migrate.core.clock import to_stamp
from lupo_migrate.core.decisions import DecisionRecord
from lupo_migrate.core.errors import ConcurrentUpdateError, InvalidArgumentError, StorageError
from lupo_migrate.core.model import AppliedStep, Finding, JournalEntry, Run, RunId, StepId
from lupo_migrate.core.ports import Clock
from lupo_migrate.core.queue import ACTIVE, QueueEntry

# --------------------------------------------------------------------------- storage


@final
@attrs.define
class InMemoryStorage:
    """Runs, ledger, findings and journal in dictionaries, behind one ``threading.Lock``.

    The values stored are the frozen values given; reads return them (or new containers of
    them), so nothing a caller does to a returned list changes what is stored.
    """

    _mutex: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _runs: dict[RunId, Run] = attrs.field(factory=dict, init=False)
    _applied: dict[str, dict[StepId, AppliedStep]] = attrs.field(factory=dict, init=False)
    _findings: dict[RunId, list[Finding]] = attrs.field(factory=dict, init=False)
    _journal: dict[int, JournalEntry] = attrs.field(factory=dict, init=False)
    _next_entry: int = attrs.field(default=1, init=False)
    _decisions: list[DecisionRecord] = attrs.field(factory=list, init=False)
    _fingerprints: dict[str, str] = attrs.field(factory=dict, init=False)
    _queue: dict[int, QueueEntry] = attrs.field(factory=dict, init=False)
    #: Where ``run_times`` stamps come from (default: the real time).
    clock: Clock = attrs.field(factory=lambda: SystemClock(), kw_only=True)
    _times: dict[RunId, tuple[int, int]] = attrs.field(factory=dict, init=False)

    def run_times(self, target: str) -> dict[RunId, tuple[int, int | None]]:
        """When each run of *target* was created and last saved (``YYYYMMDDHHMMSS``)."""
        with self._mutex:
            return {
                run_id: (created, updated)
                for run_id, (created, updated) in self._times.items()
                if self._runs[run_id].target == target
            }

    def create_run(self, run: Run) -> None:
        """Store a new run; ``StorageError`` if its id exists."""
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"create_run() needs a Run, got {run!r}.")
        with self._mutex:
            if run.id in self._runs:
                raise StorageError(
                    f"migration_batches: run {run.id} already exists. Use a new run id, or"
                    " save_run() to update it."
                )
            self._runs[run.id] = run
            now = to_stamp(self.clock.now())
            self._times[run.id] = (now, now)

    def get_run(self, run_id: RunId) -> Run | None:
        """The run with this id, or None."""
        with self._mutex:
            return self._runs.get(run_id)

    def save_run(self, run: Run, *, expected_version: int) -> None:
        """Replace the stored run if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the run is missing).
        """
        if not isinstance(run, Run):
            raise InvalidArgumentError(f"save_run() needs a Run, got {run!r}.")
        with self._mutex:
            stored = self._runs.get(run.id)
            found = None if stored is None else stored.version
            if found != expected_version:
                raise ConcurrentUpdateError("migration_batches", run.id, expected_version, found)
            self._runs[run.id] = run  # same key: keeps its place in creation order
            created = self._times.get(run.id, (0, 0))[0]
            self._times[run.id] = (created, to_stamp(self.clock.now()))

    def list_runs(self, target: str | None = None) -> Sequence[Run]:
        """Runs (of *target*, or all), oldest first."""
        with self._mutex:
            return [r for r in self._runs.values() if target is None or r.target == target]

    def latest_run(self, target: str) -> Run | None:
        """The most recently created run of *target*, or None."""
        runs = self.list_runs(target)
        return runs[-1] if runs else None

    def record_applied(self, entry: AppliedStep) -> None:
        """Add (or replace, in place) the ledger row of ``entry.step_id`` on ``entry.target``."""
        if not isinstance(entry, AppliedStep):
            raise InvalidArgumentError(f"record_applied() needs an AppliedStep, got {entry!r}.")
        with self._mutex:
            self._applied.setdefault(entry.target, {})[entry.step_id] = entry

    def remove_applied(self, target: str, step_id: StepId) -> None:
        """Drop a ledger row (the step was rolled back); no error if absent."""
        with self._mutex:
            self._applied.get(target, {}).pop(step_id, None)

    def applied(self, target: str) -> Mapping[StepId, AppliedStep]:
        """The ledger of *target*, by step id, in the order rows were recorded."""
        with self._mutex:
            return dict(self._applied.get(target, {}))

    def record_findings(self, run_id: RunId, findings: Sequence[Finding]) -> None:
        """Append findings to a run's validation log."""
        findings = list(findings)
        for finding in findings:
            if not isinstance(finding, Finding):
                raise InvalidArgumentError(
                    f"record_findings() needs Finding values, got {finding!r}."
                )
        with self._mutex:
            self._findings.setdefault(run_id, []).extend(findings)

    def findings(self, run_id: RunId) -> Sequence[Finding]:
        """A run's findings, in the order recorded."""
        with self._mutex:
            return list(self._findings.get(run_id, ()))

    def journal_intent(
        self,
        run_id: RunId,
        step_id: StepId,
        index: int,
        statement: str,
        at: int,
        *,
        done_at: int | None = None,
    ) -> JournalEntry:
        """Write the intent to run a statement (finished at *done_at*, if given)."""
        with self._mutex:
            entry = JournalEntry(
                id=self._next_entry,
                run_id=run_id,
                step_id=step_id,
                index=index,
                statement=statement,
                started_at=at,
                done_at=done_at,
            )
            self._journal[entry.id] = entry
            self._next_entry += 1
            return entry

    def journal_done(self, entry_id: int, at: int) -> None:
        """Mark a journal entry finished; ``StorageError`` if there is no such entry."""
        with self._mutex:
            entry = self._journal.get(entry_id)
            if entry is None:
                raise StorageError(
                    f"migration_progress: no journal entry {entry_id}; only ids returned by"
                    " journal_intent() can be marked done."
                )
            self._journal[entry_id] = attrs.evolve(entry, done_at=at)

    def journal(self, run_id: RunId) -> Sequence[JournalEntry]:
        """A run's journal entries in order."""
        with self._mutex:
            return [e for e in self._journal.values() if e.run_id == run_id]

    def record_fingerprint(self, target: str, text: str, at: int) -> None:
        """Keep *target*'s schema fingerprint (JSON) as a run left it."""
        with self._mutex:
            self._fingerprints[target] = text

    def fingerprint(self, target: str) -> str | None:
        """The fingerprint kept for *target*, or None."""
        with self._mutex:
            return self._fingerprints.get(target)

    def record_decision(self, decision: DecisionRecord) -> DecisionRecord:
        """Add a rollback-log record; returns it with the id given to it."""
        with self._mutex:
            recorded = attrs.evolve(decision, id=len(self._decisions) + 1)
            self._decisions.append(recorded)
            return recorded

    def decide(
        self, decision_id: int, *, status: str, operator: str, at: int, detail: str | None = None
    ) -> None:
        """Record a decision on a rollback-log record; ``StorageError`` if there is none."""
        with self._mutex:
            if not 0 < decision_id <= len(self._decisions):
                raise StorageError(f"migration_rollback_log: no decision {decision_id}.")
            old = self._decisions[decision_id - 1]
            self._decisions[decision_id - 1] = attrs.evolve(
                old,
                status=status,
                decided_by=operator,
                decided_at=at,
                detail=old.detail if detail is None else detail,
            )

    def decisions(self, run_id: RunId | None = None) -> list[DecisionRecord]:
        """Rollback-log records (of *run_id*, or all), oldest first."""
        with self._mutex:
            return [d for d in self._decisions if run_id is None or d.run_id == run_id]

    def enqueue(self, entry: QueueEntry) -> QueueEntry:
        """Store a new queue entry; returns it with its id."""
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"enqueue() needs a QueueEntry, got {entry!r}.")
        with self._mutex:
            stored = attrs.evolve(entry, id=max(self._queue, default=0) + 1)
            self._queue[stored.id] = stored
            return stored

    def queue_entry(self, entry_id: int) -> QueueEntry | None:
        """The queue entry with this id, or None."""
        with self._mutex:
            return self._queue.get(entry_id)

    def queue_entries(
        self, target: str | None = None, *, active: bool = False
    ) -> Sequence[QueueEntry]:
        """Queue entries (of *target*, or all; only queued and running ones if *active*)."""
        with self._mutex:
            return [
                e
                for e in self._queue.values()
                if (target is None or e.target == target) and (not active or e.status in ACTIVE)
            ]

    def save_entry(self, entry: QueueEntry, *, expected_version: int) -> None:
        """Replace the stored entry if its version is *expected_version*.

        Raises:
            ConcurrentUpdateError: the stored version differs (or the entry is missing).
        """
        if not isinstance(entry, QueueEntry):
            raise InvalidArgumentError(f"save_entry() needs a QueueEntry, got {entry!r}.")
        with self._mutex:
            stored = self._queue.get(entry.id)
            found = None if stored is None else stored.version
            if found != expected_version:
                raise ConcurrentUpdateError(
                    "migration_batches", f"queue:{entry.id}", expected_version, found
                )
            self._queue[entry.id] = entry
