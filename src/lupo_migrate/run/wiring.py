"""What the orchestrator is made of: its injected collaborators, its settings, the state of
the run being driven, and the queries that only read them (imperative shell).

Every part of :mod:`lupo_migrate.run` takes a :class:`Wiring`, the orchestrator's lower half;
:class:`~lupo_migrate.run.orchestrator.Orchestrator` adds the commands on top. So the parts
depend on what they are given, never on the commands that call them, and the imports run one
way: orchestrator -> commands -> drive -> step, checks, undo -> wiring.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lupo_migrate.core import chain
from lupo_migrate.core.clock import from_stamp
from lupo_migrate.core.decisions import DecisionRecord
from lupo_migrate.core.errors import InvalidArgumentError
from lupo_migrate.core.model import (
    Finding,
    LockInfo,
    Plan,
    Run,
    Stage,
    Step,
    StepId,
    ValidationContext,
)
from lupo_migrate.core.planner import plan as plan_steps
from lupo_migrate.core.ports import Clock, DecisionLog, Freeze, Lock, Storage, Target, Validator
from lupo_migrate.core.validation import (
    applied_files_present,
    checksums_unchanged,
    performance_probes,
)
from lupo_migrate.handlers.registry import HandlerRegistry
from lupo_migrate.observe.watch import Watch
from lupo_migrate.run.keepalive import KeepAlive
from lupo_migrate.run.shared import _Rollback
from lupo_migrate.sql.lint import risky_statements
from lupo_migrate.sql.online import check_executor, check_mode

if TYPE_CHECKING:
    from lupo_migrate.observe import Event
    from lupo_migrate.observe.alerts import AlertSink

__all__ = ["Wiring", "default_operator", "default_owner"]


def default_owner() -> str:
    """A lock owner naming this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def default_operator() -> str:
    """Who starts runs when nobody says: the OS user (``getpass.getuser``), or ``unknown``
    where the process has none (a container's numeric uid with no passwd entry)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def _at_least_0(_instance: object, attribute: Any, value: object) -> None:
    """``lock_retries`` and ``lock_retry_backoff``: a number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidArgumentError(f"{attribute.name} must be a number, 0 or more, not {value!r}")


def _above_0(_instance: object, attribute: Any, value: object) -> None:
    """``copy_chunk_time``: a number above 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(f"{attribute.name} must be a number above 0, not {value!r}")


def _online_mode(_instance: object, _attribute: Any, value: object) -> None:
    """``online``: one of :data:`lupo_migrate.sql.online.MODES`."""
    try:
        check_mode(value, "Orchestrator(online=...)")
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None


def _executor(_instance: object, _attribute: Any, value: object) -> None:
    """``copy_executor``: one of :data:`lupo_migrate.sql.online.EXECUTORS`."""
    try:
        check_executor(value, "Orchestrator(copy_executor=...)")
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None


@attrs.define
class Wiring:
    """The orchestrator's collaborators, settings and per-run state (see
    :class:`~lupo_migrate.run.orchestrator.Orchestrator` for each argument), with the queries
    that read them."""

    storage: Storage
    lock: Lock
    freeze: Freeze
    clock: Clock
    registry: HandlerRegistry
    target: Target
    root: Path
    target_name: str = "default"
    table_budget: int | None = None
    validators: Sequence[Validator] = ()
    freeze_ttl: timedelta = timedelta(hours=1)
    lock_timeout: float = 0.0
    owner: str = attrs.field(factory=default_owner)
    operator: str = attrs.field(factory=default_operator)
    on_event: Callable[[Run, object], None] | None = None
    keep_rollback: timedelta = timedelta(hours=24)
    drift: str = "error"
    forbid: Sequence[str] = ()
    lint_ignore: Sequence[str] = ()
    probes: Mapping[str, str] = attrs.field(factory=dict)
    probe_threshold: float = 2.0
    integrity_limit: int = 10_000
    long_transaction_wait: float | None = 30.0
    lock_retries: int = attrs.field(default=3, validator=_at_least_0)
    online: str = attrs.field(default="auto", validator=_online_mode)
    lock_retry_backoff: float = attrs.field(default=1.0, validator=_at_least_0)
    copy_chunk_time: float = attrs.field(default=0.1, validator=_above_0)
    copy_max_threads: int = attrs.field(default=25, validator=_at_least_0)
    copy_min_rows: int = attrs.field(default=10_000, validator=_at_least_0)
    copy_replicas: Sequence[str] = ()
    copy_max_lag: float = attrs.field(default=1.0, validator=_at_least_0)
    copy_executor: str = attrs.field(default="lupo", validator=_executor)
    copy_swap_back: bool = False
    statement_wait: float = 120.0
    files_root: Path | None = None
    observers: Sequence[Callable[[Event], None]] = ()
    alert_sinks: Sequence[AlertSink] = ()
    allow_irreversible: Sequence[StepId] = ()
    out_of_order: bool = False
    # The run being watched for observers and escalation (see run.observers).
    _watch: Watch | None = attrs.field(default=None, init=False, repr=False)
    # Statement indexes done, by (run, step): filled as statements finish; a resumed run
    # would load it from the journal once.
    _done: dict[tuple[str, StepId], set[int]] = attrs.field(factory=dict, init=False, repr=False)
    # The applied step's connection scope, kept open until its StepApplied is persisted.
    _open_step: ExitStack | None = attrs.field(default=None, init=False, repr=False)
    # The run's pre-images where the target keeps them (MySQL: see backends.sqlalchemy._preimage).
    _pre: Any = attrs.field(default=None, init=False, repr=False)
    # Whether the run's pre-images know what its statements need kept (see apply_step).
    _planned: bool = attrs.field(default=False, init=False, repr=False)
    # (run id, a bound on the core schema's tables) for the table budget (see run.step).
    _table_bound: tuple[str, int] | None = attrs.field(default=None, init=False, repr=False)
    # Set while an operator's rollback of a completed run is driven (see run.operations).
    _rolling: _Rollback | None = attrs.field(default=None, init=False, repr=False)
    # The heartbeat and freeze renewals of the run being driven (see run.drive.hold).
    _keeper: KeepAlive | None = attrs.field(default=None, init=False, repr=False)
    # Facts measured at PRE for POST, and the fingerprint POST read.
    _facts: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    _after: Any = attrs.field(default=None, init=False, repr=False)
    # Per-step indexes of the facts (see run.facts.by_step), with the rows they were built from.
    _indexes: dict[str, tuple[Any, dict[StepId, Sequence[Any]]]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    # The dead run being recovered (see recover()).
    _recovering: Run | None = attrs.field(default=None, init=False, repr=False)
    # Records of pending decisions written by the run being driven.
    _recorded: list[DecisionRecord] = attrs.field(factory=list, init=False, repr=False)
    # Why the run being driven should stop (see request_stop()); None: it goes on.
    _stop: str | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.drift not in ("error", "warn", "off"):
            raise InvalidArgumentError(f"drift must be error, warn or off, got {self.drift!r}")
        risky_statements(forbid=self.forbid, ignore=self.lint_ignore)  # names the unknown
        performance_probes(self.probe_threshold)
        adopt = getattr(self.target, "adopt_statement_lock", None)
        if adopt is not None:
            # Named after the run lock, so two targets never share one, and recover (which
            # waits for a dead run's statement still running) works for every embedding.
            adopt(str(getattr(self.lock, "server_name", None) or self.target_name))

    # ------------------------------------------------------------------ queries

    def pending(self, steps: Sequence[Step], *, upto: StepId | None = None) -> Plan:
        """The plan of the steps not applied yet (the ledger decides; a repeatable file
        changed since it was applied is pending again)."""
        ledger = self.storage.applied(self.target_name)
        return plan_steps(steps, upto=upto, applied=chain.settled(steps, ledger))

    def status(self) -> Run | None:
        """The target's latest run, or None."""
        return self.storage.latest_run(self.target_name)

    def crashed(self) -> Run | None:
        """The target's latest run if it died: it has not ended and nobody holds the run lock
        (a run that works holds it all along). None otherwise."""
        latest = self.status()
        if latest is None or latest.ended or self.lock.holder() is not None:
            return None
        return latest

    def hung(self, after: timedelta = timedelta(seconds=60)) -> LockInfo | None:
        """Who holds the run lock without having recorded a heartbeat for longer than *after*
        (a working run records one every ``HEARTBEAT`` seconds, long statements included):
        its process is stopped or cut off, yet its lock is not free. None otherwise."""
        held = self.lock.holder()
        if held is None or from_stamp(held.heartbeat) + after >= self.clock.now():
            return None
        return held

    def history(self) -> Sequence[Run]:
        """The target's runs, oldest first."""
        return self.storage.list_runs(self.target_name)

    def verify(self, steps: Sequence[Step]) -> tuple[Finding, ...]:
        """Findings for applied files whose checksum changed since they were applied."""
        context = ValidationContext(
            stage=Stage.PRE,
            plan=Plan(steps=steps),
            run=Run(id="verify", target=self.target_name),
            applied=self.storage.applied(self.target_name),
        )
        return tuple(checksums_unchanged()(context))

    def missing_files(self, steps: Sequence[Step]) -> tuple[Finding, ...]:
        """WARNING findings for applied steps whose file is not among *steps* (deleted or
        moved since it was applied, or the wrong directory)."""
        context = ValidationContext(
            stage=Stage.PRE,
            plan=Plan(steps=steps),
            run=Run(id="verify", target=self.target_name),
            applied=self.storage.applied(self.target_name),
        )
        return tuple(applied_files_present()(context))

    @property
    def _decision_log(self) -> DecisionLog | None:
        return self.storage if isinstance(self.storage, DecisionLog) else None

    def _flush(self) -> None:
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()
