"""Reading SQL text (functional core: text in, values out; no I/O): splitting a file into
statements and sections (:mod:`~lupo_migrate.sql.split`), what a statement touches
(:mod:`~lupo_migrate.sql.touches`), what a rollback must keep before it runs
(:mod:`~lupo_migrate.sql.needs`), its derived inverse (:mod:`~lupo_migrate.sql.inverse`), the
lint rules (:mod:`~lupo_migrate.sql.lint`), whether it reads or writes
(:mod:`~lupo_migrate.sql.effects`), whether it must run outside a transaction block
(:mod:`~lupo_migrate.sql.apart`) and whether it leaves state in its session
(:mod:`~lupo_migrate.sql.session_state`).

The handlers, the orchestrator and the backends share these readings, so they live below all
three.

May import: :mod:`lupo_migrate.core`.
"""
