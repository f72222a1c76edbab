"""From settings to a wired ``Orchestrator``: the configuration file and its precedence,
opening engines and backends for a database URL, the nothing-to-do fast path, and the
directory-level API (``plan_directory``, ``check_directory``) the command line calls.

May import: every layer below it (:mod:`lupo_migrate.run`, :mod:`lupo_migrate.backends` ...).
"""
