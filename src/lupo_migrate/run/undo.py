"""Undoing a run's steps (imperative shell): pre-images, each step's undo, the verified
rollback. Functions of a :class:`~lupo_migrate.run.wiring.Wiring`:
:mod:`lupo_migrate.run.drive` carries out the state machine's ``RecordPreImages``,
``UndoStep`` and ``VerifyRollback`` effects with them.

Where the target keeps pre-images (MySQL/MariaDB and SQLite: see
``backends.sqlalchemy._preimage``), a run snapshots what its statements touch for the first time;
a rollback undoes each step (its down section, twin or derived inverse), then compares what
the run touched with the pre-images and puts back what differs.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from lupo_migrate.core import state as sm
from lupo_migrate.core.errors import ConnectionLostError, LupoMigrateError
from lupo_migrate.core.fact_keys import APART
from lupo_migrate.core.model import (
    UNDO_BASE,
    Failure,
    FailureKind,
    Finding,
    Run,
    Severity,
    Step,
)
from lupo_migrate.core.retry import lock_retry_pause
from lupo_migrate.run import step as _stepping
from lupo_migrate.run.shared import (
    _Rollback,
    _rollback_failure,
    _transactional,
)
from lupo_migrate.sql.online import table_of

if TYPE_CHECKING:
    from lupo_migrate.run.wiring import Wiring

__all__ = [
    "close_pre_images",
    "load_pre_images",
    "pre_images_cover",
    "rollback_pre_images",
    "start_pre_images",
    "undo_step",
    "verify_rollback",
]

logger = logging.getLogger("lupo_migrate")


def start_pre_images(orch: Wiring, run: Run) -> sm.Event:
    """Read the fingerprint pre-images are taken from (where the target keeps them)."""
    if orch._rolling is not None:
        return load_pre_images(orch, run, orch._rolling)
    if orch._recovering is not None:  # died before it started: nothing ran
        return sm.RollbackRequested(
            Failure(kind=FailureKind.CRASH, message=f"run {run.id} died before it started")
        )
    make = getattr(orch.target, "pre_images", None)
    orch._pre = make(run.id) if make is not None else None
    orch._planned = False
    if orch._pre is not None:
        try:
            orch._pre.start()
        except LupoMigrateError as error:
            orch._pre = None
            failure = Failure(kind=FailureKind.STORAGE_UNREACHABLE, message=str(error))
            return sm.PreparationFailed(failure)
    return sm.Prepared()


def load_pre_images(orch: Wiring, run: Run, rolling: _Rollback) -> sm.Event:
    """An operator's rollback: the completed run's kept pre-images, restricted to what
    only the steps in scope touched (read once, before the rollback started). A downgrade
    has none: its steps' downs undo them."""
    if rolling.downgrade is not None:
        orch._pre = None
        failure = Failure(
            kind=FailureKind.OPERATOR_ABORT,
            message=f"{rolling.operator} downgrades to {rolling.downgrade}, undoing"
            f" {', '.join(reversed(run.applied))}",
        )
        return sm.RollbackRequested(failure)
    if rolling.pre is not None or rolling.findings:
        orch._pre, findings = rolling.pre, rolling.findings
    else:
        orch._pre, findings = rollback_pre_images(orch, run, rolling)
    if findings:
        orch.storage.record_findings(run.id, findings)
    label = "the whole run" if rolling.scope is None else f"class {rolling.scope.value} scope"
    failure = Failure(
        kind=FailureKind.OPERATOR_ABORT,
        message=f"{rolling.operator} rolls back {label} of run {rolling.of.id}:"
        f" {', '.join(run.applied)}",
    )
    return sm.RollbackRequested(failure, classification=rolling.scope)


def rollback_pre_images(orch: Wiring, run: Run, rolling: _Rollback) -> tuple[Any, list[Finding]]:
    """The pre-images *rolling.of* kept, for rolling back *run*'s steps (sets
    ``rolling.only``), and the warnings to record; None when it kept none."""
    make = getattr(orch.target, "pre_images", None)
    pre = make(rolling.of.id) if make is not None else None
    findings: list[Finding] = []
    if pre is not None and not pre.load():
        pre = None
        findings.append(
            Finding(
                severity=Severity.WARNING,
                message=f"run {rolling.of.id} kept no pre-images; its steps are undone by"
                " their down sections and derived inverses only, not verified",
                code="rollback-unverifiable",
            )
        )
    if pre is not None and rolling.others:
        mine, theirs = pre.keys_of(run.applied), pre.keys_of(rolling.others)
        rolling.only = mine - theirs
        if mine & theirs:
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    message="objects steps outside the scope changed too are undone by"
                    " down sections and inverses only, not compared with their"
                    f" pre-images: {', '.join(sorted(mine & theirs))}",
                    code="rollback-unverifiable",
                )
            )
    return pre, findings


def close_pre_images(orch: Wiring) -> None:
    """Forget the run's pre-images; backups that are still there stay (an interrupted
    run's are what ``recover`` needs)."""
    pre, orch._pre = orch._pre, None
    if pre is not None and pre.backups:
        logger.warning("backup tables kept: %s", ", ".join(pre.backups))


def verify_rollback(orch: Wiring, run: Run) -> sm.Event:
    """Compare what the run touched with its pre-images; put back what differs; record."""
    pre, orch._pre = orch._pre, None
    if pre is None:
        return sm.RollbackVerified()
    orch._flush()
    only = None if orch._rolling is None else orch._rolling.only
    tries = 1
    while True:
        try:
            report = pre.restore(only)
            break
        except LupoMigrateError as error:
            return sm.RollbackFailed(_rollback_failure(f"restoring the pre-images failed: {error}"))
        except Exception as error:
            # A lock wait that ran out (a session holds a table to put back): nothing of
            # that restore stayed; tried again as a step is (lock_retries), then given up.
            suspects = getattr(orch.target, "lock_wait_suspects", None)
            held = suspects(error) if suspects is not None else None
            if held is None:
                raise
            # A stop asked of the run does not cut this short: the rollback is what it asked.
            if tries > orch.lock_retries:
                return sm.RollbackFailed(
                    _rollback_failure(
                        "restoring the pre-images gave up waiting for a lock"
                        f" ({tries} tries): {'; '.join(held) or 'no open transaction left'}."
                        " End that session, put back by hand what the findings say is left"
                        " (`lupo-migrate show`), then `lupo-migrate resolve`"
                    )
                )
            time.sleep(lock_retry_pause(tries, orch.lock_retry_backoff, random.random()))
            tries += 1
    summary = (
        f"rollback compared {report.checked} touched object(s) with their pre-images;"
        f" restored {len(report.restored)}, dropped {len(report.dropped)}"
    )
    rows = getattr(report, "rows", None) or {}
    if rows:
        summary += "; rows put back: " + ", ".join(f"{t} {n}" for t, n in sorted(rows.items()))
    findings = [Finding(severity=Severity.INFO, message=summary, code="rollback-verified")]
    if report.checked == 0 and not pre.unknown and report.verified:
        findings = []  # nothing was touched (refused before it ran): nothing to say
    for line in getattr(report, "reordered", ()):
        findings.append(
            Finding(
                severity=Severity.WARNING,
                message=f"rollback put every column back, but PostgreSQL adds a column at the"
                f" end of its table, so the order differs: {line}",
                code="rollback-column-order",
            )
        )
    if pre.unknown:
        findings.append(
            Finding(
                severity=Severity.WARNING,
                message="statements with effects not known from their text ran and were"
                f" not compared: {', '.join(sorted(set(pre.unknown)))}",
                code="rollback-unverifiable",
            )
        )
    if not report.verified:
        lines = list(getattr(report, "left", ()))
        lines += [str(d) for d in report.differences] + [
            f"table {name}: rows {a.rows} -> {b.rows}, checksum {a.checksum} -> {b.checksum}"
            for name, (a, b) in report.data.items()
        ]
        lines += [
            f"table {name}: {count} row(s) the run changed are not back as they were"
            for name, count in (getattr(report, "unreverted", None) or {}).items()
        ]
        findings[0] = Finding(
            severity=Severity.ERROR,
            message="rollback did not restore the pre-image: " + "; ".join(lines[:20]),
            code="rollback-mismatch",
            kind=FailureKind.DATA_INTEGRITY,
        )
        orch.storage.record_findings(run.id, findings)
        kept = ", ".join(pre.backups) or "none"
        message = f"{findings[0].message} (backup tables kept for a manual fix: {kept})"
        return sm.RollbackFailed(_rollback_failure(message))
    orch.storage.record_findings(run.id, findings)
    if only is None:  # a partial rollback leaves material the rest may still need
        pre.drop_backups()
    return sm.RollbackVerified()


def pre_images_cover(orch: Wiring, step: Step) -> str | None:
    """Why verifying the rollback would not put back everything *step* changed, or None
    when it would: its own statements' effects must be known (an unknown one elsewhere in
    the run makes only what it could touch unrecoverable: its own step), what it changed
    kept (a copy of the rows it changed), and the pre-images put objects back."""
    pre = orch._pre
    if pre is None or not pre.restores:
        return "no pre-images are kept on this target"
    uncovered = getattr(pre, "uncovered", None)
    if uncovered is not None:
        why = uncovered(step.id)
        if why is not None:
            return str(why)
    elif pre.unknown:
        return "statements whose effects cannot be told ran"
    only = None if orch._rolling is None else orch._rolling.only
    if only is not None and not pre.keys_of([step.id]) <= only:
        return "steps outside the rollback's scope changed the same objects"
    return None


def undo_step(orch: Wiring, run: Run, step: Step, *, partial: bool) -> sm.Event:
    handler = orch.registry.lookup(step.file_type)
    if partial:
        ran = orch._done.get((run.id, step.id))
        in_one = orch.target.transactional_ddl and step.id not in orch._facts.get(APART, ())
        if (in_one and _transactional(handler)) or not ran:
            # Rolled back with its transaction, or nothing of it ran: nothing to undo.
            return sm.StepRolledBack(step.id)
    if _swapped_back(orch, run, step):
        orch.storage.remove_applied(orch.target_name, step.id)
        return sm.StepRolledBack(step.id)
    ran_before = set(orch._done.get((run.id, step.id), ()))
    try:
        with (
            _stepping.session_for(orch, step) as connection,
            _stepping.bound(orch, connection, handler) as shared,
        ):
            handler.rollback(
                step,
                _stepping.context(orch, run, step, connection, shared=shared, undoing=True),
            )
    except ConnectionLostError:
        raise  # outcome unknown: see launch.guarded
    except (LupoMigrateError, OSError) as error:
        why = pre_images_cover(orch, step) if _transactional(handler) else "it changes files"
        if why is None:
            # No down section or inverse, but every object the step touched has a
            # pre-image: verifying the rollback puts them back (see verify_rollback).
            # (Pre-images are of the database: not of files.)
            logger.info("run %s: %s is undone from pre-images (%s)", run.id, step.id, error)
            orch.storage.remove_applied(orch.target_name, step.id)
            return sm.StepRolledBack(step.id)
        if orch._rolling is not None and orch._rolling.downgrade is not None:
            # A downgrade stops at the first down that fails. When nothing of that down
            # stayed (its transaction rolled back, or not one of its statements ran), the
            # step stands as it was applied: the downgrade applies again what it undid (see
            # downgrade.downgrade) rather than blocking the target.
            in_one = (
                orch.target.transactional_ddl
                and _transactional(handler)
                and step.id not in orch._facts.get(APART, ())
            )
            ran = set(orch._done.get((run.id, step.id), ())) - ran_before
            if in_one or not ran:
                return sm.RollbackFailed(
                    Failure(
                        kind=FailureKind.STEP_FAILED_PARTWAY,
                        message=f"undoing {step.id} failed: {error}; nothing of its down stayed",
                        step_id=step.id,
                    ),
                    intact=True,
                )
        return sm.RollbackFailed(
            Failure(
                kind=FailureKind.DATA_INTEGRITY,
                message=f"undoing {step.id} failed: {error}; its pre-images cannot stand in"
                f" for it: {why}. Nothing more was undone: fix it by hand, then"
                " `lupo-migrate resolve`"
                + (f" (rolling back because: {run.failure.message})" if run.failure else ""),
                step_id=step.id,
            )
        )
    orch.storage.remove_applied(orch.target_name, step.id)
    return sm.StepRolledBack(step.id)


#: What the target says when a copy kept no swap-back (nothing worth telling).
_NONE_KEPT = "no swap-back was kept"


def _swapped_back(orch: Wiring, run: Run, step: Step) -> bool:
    """Whether *step* was undone by swapping back the old table its online copy kept current
    (``copy_swap_back``: see ``sql.online_copy``). Only a step of one statement, run by a
    copy, is: its down section is then not run. Why a kept swap-back could not be made is
    recorded among the run's findings, and the step is undone as it would be otherwise."""
    swap = getattr(orch.target, "swap_back", None)
    kept = getattr(orch.target, "swap_backs_kept", None)
    if swap is None or kept is None or orch.target.dialect not in ("mysql", "mariadb"):
        return False  # (nothing is read for the others: a rollback of many steps stays lean)
    applied = orch.storage.applied(orch.target_name).get(step.id)
    run_id = applied.run_id if applied is not None else run.id
    if not kept(run_id):  # one catalog read: most runs kept none
        return False
    ran = [
        e.statement
        for e in orch.storage.journal(run_id)
        if e.step_id == step.id and e.index < UNDO_BASE and e.done_at is not None
    ]
    if len(ran) != 1 or table_of(ran[0]) is None:
        return False
    why = swap(run_id, ran[0])
    if why is not None and why.startswith(_NONE_KEPT):
        return False
    table = table_of(ran[0])
    message = (
        f"{step.id}: {table} swapped back to its old table, kept current since the cut-over"
        if why is None
        else f"{step.id}: {table} could not be swapped back ({why}); undone as written instead"
    )
    logger.info("run %s: %s", run.id, message)
    orch.storage.record_findings(
        run.id, [Finding(severity=Severity.INFO, message=message, code="swap-back")]
    )
    return why is None
