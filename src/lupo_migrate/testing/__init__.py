"""The contract every backend must pass, and hypothesis strategies for plugin authors.

A storage, lock, freeze, run queue or ephemeral backend, ours or a third party's, is correct
when these checks pass against it (:func:`check_queue` and :func:`check_ephemeral` for the
optional protocols)::

    from lupo_migrate.testing import check_freeze, check_lock, check_storage

    def test_my_storage_meets_the_contract():
        check_storage(lambda: MyStorage(fresh_database()))

    def test_my_lock_meets_the_contract():
        def make_pair(clock):
            db = fresh_database()
            return MyLock("target", clock, db), MyLock("target", clock, db)
        check_lock(make_pair)

    def test_my_freeze_meets_the_contract():
        check_freeze(lambda clock: MyFreeze(fresh_database(), clock))

Each check calls its factory several times and needs a fresh, empty backend every time. A
broken guarantee raises ``AssertionError`` saying which one and with what values; the checks
never rely on ``assert`` statements, so they also work under ``python -O``.

The strategies (:func:`st_steps`, :func:`st_findings`, :func:`st_runs`) import hypothesis only
when called, so importing this module does not need it.
"""

from __future__ import annotations

from lupo_migrate.testing._ephemeral import check_ephemeral, check_queue
from lupo_migrate.testing._locks import check_freeze, check_lock
from lupo_migrate.testing._storage import check_storage
from lupo_migrate.testing._strategies import st_findings, st_runs, st_steps

__all__ = [
    "check_ephemeral",
    "check_freeze",
    "check_lock",
    "check_queue",
    "check_storage",
    "st_findings",
    "st_runs",
    "st_steps",
]
