"""The storage contract: :func:`check_storage`."""

from __future__ import annotations

from collections.abc import Callable

from lupo_migrate.core.errors import ConcurrentUpdateError, StorageError
from lupo_migrate.core.model import AppliedStep, FailureKind, Finding, Outcome, Phase, Run, Severity
from lupo_migrate.core.ports import Storage
from lupo_migrate.testing._common import _equal, _expect, _raises, _sample_run

# --------------------------------------------------------------------------- storage


def check_storage(make_storage: Callable[[], Storage]) -> None:
    """Check every guarantee of :class:`lupo_migrate.core.ports.Storage` against an implementation.

    Args:
        make_storage: returns a new, empty storage each time it is called.

    Raises:
        AssertionError: a guarantee is broken; the message says which, with the values.
    """
    for check in (
        _storage_runs_round_trip,
        _storage_create_refuses_duplicates,
        _storage_save_is_compare_and_set,
        _storage_lists_in_creation_order,
        _storage_ledger,
        _storage_findings,
        _storage_journal,
    ):
        check(make_storage())


def _storage_runs_round_trip(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(storage.get_run("nope"), None, f"{name}.get_run() of an unknown id")
    plain = Run(id="r-plain")
    rich = _sample_run("r-rich")
    ended = Run(id="r-ended", outcome=Outcome.FAILED, blocked=True, version=7)
    for run in (plain, rich, ended):
        storage.create_run(run)
    for run in (plain, rich, ended):
        _equal(storage.get_run(run.id), run, f"{name}.get_run({run.id!r}) after create_run()")


def _storage_create_refuses_duplicates(storage: Storage) -> None:
    name = type(storage).__name__
    first = Run(id="dup", target="a")
    storage.create_run(first)
    _raises(
        StorageError,
        lambda: storage.create_run(Run(id="dup", target="b")),
        f"{name}.create_run() of an id that exists",
    )
    _equal(storage.get_run("dup"), first, f"{name}: the run after a refused create_run()")


def _storage_save_is_compare_and_set(storage: Storage) -> None:
    name = type(storage).__name__
    run = _sample_run("cas")
    storage.create_run(run)
    moved = Run(id="cas", target="main", phase=Phase.IDLE, outcome=Outcome.ROLLED_BACK, version=1)
    storage.save_run(moved, expected_version=0)
    _equal(storage.get_run("cas"), moved, f"{name}.get_run() after save_run()")

    stale = Run(id="cas", target="main", phase=Phase.PREPARING, version=1)
    err = _raises(
        ConcurrentUpdateError,
        lambda: storage.save_run(stale, expected_version=0),
        f"{name}.save_run() with a stale expected_version",
    )
    _equal(err.table, "migration_batches", "ConcurrentUpdateError.table")
    _equal(err.run_id, "cas", "ConcurrentUpdateError.run_id")
    _equal(err.expected, 0, "ConcurrentUpdateError.expected")
    _equal(err.found, 1, "ConcurrentUpdateError.found")
    _expect(isinstance(err, StorageError), "ConcurrentUpdateError must be a StorageError")
    _equal(storage.get_run("cas"), moved, f"{name}: the run after a refused save_run()")

    missing = Run(id="ghost", version=1)
    err = _raises(
        ConcurrentUpdateError,
        lambda: storage.save_run(missing, expected_version=0),
        f"{name}.save_run() of a run never created",
    )
    _equal(err.found, None, "ConcurrentUpdateError.found for a missing run")
    _equal(storage.get_run("ghost"), None, f"{name}: save_run() must not create runs")


def _storage_lists_in_creation_order(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(list(storage.list_runs()), [], f"{name}.list_runs() when empty")
    _equal(storage.latest_run("a"), None, f"{name}.latest_run() when empty")
    # Ids deliberately not in creation order, so sorting by id would be caught.
    r1, r2, r3 = Run(id="z1", target="a"), Run(id="m2", target="b"), Run(id="a3", target="a")
    for run in (r1, r2, r3):
        storage.create_run(run)
    _equal(list(storage.list_runs()), [r1, r2, r3], f"{name}.list_runs() (oldest first)")
    _equal(list(storage.list_runs("a")), [r1, r3], f"{name}.list_runs('a')")
    _equal(list(storage.list_runs("nobody")), [], f"{name}.list_runs() of an unknown target")
    r1_saved = Run(id="z1", target="a", phase=Phase.PREPARING, version=1)
    storage.save_run(r1_saved, expected_version=0)
    _equal(
        list(storage.list_runs()),
        [r1_saved, r2, r3],
        f"{name}.list_runs() after save_run() of the oldest (order is creation order)",
    )
    _equal(storage.latest_run("a"), r3, f"{name}.latest_run('a')")
    _equal(storage.latest_run("b"), r2, f"{name}.latest_run('b')")
    _equal(storage.latest_run("nobody"), None, f"{name}.latest_run() of an unknown target")
    listed = storage.list_runs()
    if isinstance(listed, list):
        listed.clear()
        _equal(len(storage.list_runs()), 3, f"{name}.list_runs() must return a copy")


def _storage_ledger(storage: Storage) -> None:
    name = type(storage).__name__
    _equal(dict(storage.applied("t")), {}, f"{name}.applied() of an empty ledger")

    def row(step_id: str, checksum: str, target: str = "t") -> AppliedStep:
        return AppliedStep(
            step_id=step_id,
            target=target,
            checksum=checksum,
            run_id="r1",
            applied_at=20240301120000,
            path=f"core/{step_id}.sql",
            file_type="doctrine",
        )

    b, a, c = row("b", "11"), row("a", "22"), row("c", "33")
    for entry in (b, a, c):
        storage.record_applied(entry)
    other = row("a", "99", target="u")
    storage.record_applied(other)
    ledger = storage.applied("t")
    _equal(list(ledger), ["b", "a", "c"], f"{name}.applied() keys (in recording order)")
    _equal(dict(ledger), {"b": b, "a": a, "c": c}, f"{name}.applied() values")
    _equal(dict(storage.applied("u")), {"a": other}, f"{name}.applied() of another target")

    a2 = row("a", "44")
    storage.record_applied(a2)
    ledger = storage.applied("t")
    _equal(dict(ledger), {"b": b, "a": a2, "c": c}, f"{name}.record_applied() of a recorded step")
    _expect(
        list(ledger) == ["b", "a", "c"],
        f"{name}.record_applied() of a recorded step must replace it in place;"
        f" order became {list(ledger)!r}",
    )

    storage.remove_applied("t", "a")
    _equal(dict(storage.applied("t")), {"b": b, "c": c}, f"{name}.remove_applied()")
    storage.remove_applied("t", "a")  # absent: no error
    storage.remove_applied("nobody", "a")
    _equal(dict(storage.applied("u")), {"a": other}, f"{name}.remove_applied() of another target")


def _storage_findings(storage: Storage) -> None:
    name = type(storage).__name__
    storage.create_run(Run(id="f1"))
    storage.create_run(Run(id="f2"))
    _equal(list(storage.findings("f1")), [], f"{name}.findings() before any")
    first = [
        Finding(severity=Severity.ERROR, message="drift in users", path="core/a.sql", line=1),
        Finding(severity=Severity.INFO, message="ok"),
    ]
    second = [
        Finding(
            severity=Severity.CRITICAL,
            message="row count changed",
            hint="restore from backup",
            code="V9",
            kind=FailureKind.DATA_INTEGRITY,
            step_id="s1",
        )
    ]
    storage.record_findings("f1", first)
    storage.record_findings("f2", [Finding(severity=Severity.WARNING, message="other run")])
    storage.record_findings("f1", second)
    storage.record_findings("f1", [])
    _equal(list(storage.findings("f1")), first + second, f"{name}.findings() (in recording order)")
    _equal(len(storage.findings("f2")), 1, f"{name}.findings() of another run")


def _storage_journal(storage: Storage) -> None:
    name = type(storage).__name__
    storage.create_run(Run(id="j1"))
    storage.create_run(Run(id="j2"))
    _equal(list(storage.journal("j1")), [], f"{name}.journal() before any")
    e1 = storage.journal_intent("j1", "s1", 0, "CREATE TABLE t (id INT)", 20240301120000)
    e2 = storage.journal_intent("j2", "s9", 0, "SELECT 1", 20240301120001)
    e3 = storage.journal_intent("j1", "s1", 1, "ALTER TABLE t ADD x INT", 20240301120002)
    ids = [e1.id, e2.id, e3.id]
    _expect(
        ids == sorted(ids) and len(set(ids)) == 3 and ids[0] >= 1,
        f"{name}.journal_intent() ids must be positive and increase; got {ids!r}",
    )
    _equal(
        (e1.run_id, e1.step_id, e1.index, e1.statement, e1.started_at, e1.done_at),
        ("j1", "s1", 0, "CREATE TABLE t (id INT)", 20240301120000, None),
        f"{name}.journal_intent() entry fields",
    )
    _equal(list(storage.journal("j1")), [e1, e3], f"{name}.journal('j1') (in order)")
    storage.journal_done(e1.id, 20240301120005)
    journal = list(storage.journal("j1"))
    _equal(
        journal[0].done_at if journal else None,
        20240301120005,
        f"{name}.journal() done_at after journal_done()",
    )
    _equal(journal[1:], [e3], f"{name}.journal_done() must not touch other entries")
    _equal(list(storage.journal("j2")), [e2], f"{name}.journal('j2')")
    e4 = storage.journal_intent(
        "j2", "s9", 1, "INSERT INTO t VALUES (1)", 20240301120006, done_at=20240301120007
    )
    _equal(
        [(e.index, e.started_at, e.done_at) for e in storage.journal("j2")][1:],
        [(1, 20240301120006, 20240301120007)],
        f"{name}.journal_intent(done_at=...) must write the entry finished",
    )
    _expect(e4.id > e3.id, f"{name}.journal_intent(done_at=...) id {e4.id} after {e3.id}")
