"""The functional core: what lupo_migrate decides, as values and pure functions.

The run state machine (:mod:`~lupo_migrate.core.state`, the transition table), the planner,
the rollback classifier, decision windows, the queue's policy, the checklist, fingerprints and
their difference, the validators, where the logical schemas live, timestamps, the history
analytics; the exceptions (:mod:`~lupo_migrate.core.errors`) and the protocols the shell
implements (:mod:`~lupo_migrate.core.ports`).

May import: nothing else of lupo_migrate, and no database driver, SQLAlchemy, network or
file I/O module (``tests/test_core_purity.py`` and the import-linter contracts check it).
"""
