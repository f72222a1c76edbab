"""Embedding lupo_migrate: an ``Orchestrator`` built from its parts, in application code.

It applies the quickstart migrations as one run, lists what can still be rolled back (the
decisions and their windows), rolls the run back, and shows that the schema is as before.

Run::

    python examples/embed.py                      # a SQLite file in a temporary directory
    python examples/embed.py mysql+pymysql://root@127.0.0.1/test

Every collaborator is injected: swap the storage, the lock, the freeze or the clock for your
own (any object with the methods of ``lupo_migrate.typing``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

from lupo_migrate import HandlerRegistry, Orchestrator, load_steps
from lupo_migrate.backends.memory import InMemoryFreeze, SystemClock
from lupo_migrate.backends.sqlalchemy import (
    SqlAlchemyLock,
    SqlAlchemyStorage,
    SqlAlchemyTarget,
    attach_backups,
    make_engine,
)
from lupo_migrate.handlers import DoctrineHandler

MIGRATIONS = Path(__file__).resolve().parent / "quickstart" / "migrations"


def apart(engine: sa.Engine) -> tuple[sa.Engine, str | None]:
    """Where lupo_migrate's own tables go, never among the application's: a SQLite file beside
    the database, else a database (MySQL/MariaDB) or schema (PostgreSQL) of their own."""
    if engine.dialect.name == "sqlite":
        return make_engine(f"sqlite:///{engine.url.database}.lupo.db"), None
    if engine.dialect.name in ("mysql", "mariadb"):
        schema, ddl = f"{engine.url.database}_lupo_orchestration", "DATABASE"
    else:
        schema, ddl = "lupo_orchestration", "SCHEMA"
    quoted = engine.dialect.identifier_preparer.quote(schema)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE {ddl} IF NOT EXISTS {quoted}")
    return engine, schema


def build(engine: sa.Engine) -> Orchestrator:
    """An orchestrator whose own tables live apart from the application's."""
    store, schema = apart(engine)
    storage = SqlAlchemyStorage(store, schema=schema)
    storage.ensure_schema()  # the 8 orchestration tables, created once
    clock = SystemClock()
    registry = HandlerRegistry()
    registry.register(DoctrineHandler(root=MIGRATIONS))
    return Orchestrator(
        storage=storage,
        lock=SqlAlchemyLock(store, "lupo_migrate:embed", clock=clock, schema=schema),
        freeze=InMemoryFreeze(clock),
        clock=clock,
        registry=registry,
        # Backups of what a run changes go beside the orchestration tables (SQLite: into a
        # file of their own, attached to the target's connections).
        target=SqlAlchemyTarget(
            engine, orchestration_apart=True, backup_schema=attach_backups(engine) or schema
        ),
        root=MIGRATIONS,
        target_name="embed",
    )


def tables(engine: sa.Engine) -> list[str]:
    """The application's tables: all the tables of its database."""
    return sorted(sa.inspect(engine).get_table_names())


def main(url: str) -> int:
    engine = make_engine(url)
    try:
        orchestrator = build(engine)
        steps = load_steps(MIGRATIONS)
        print("before:", tables(engine))

        result = orchestrator.apply(steps)
        run = result.run
        if run is None:
            print("nothing to do")
            return 0
        print(f"applied: {', '.join(result.applied)} ({run.outcome.value if run.outcome else ''})")
        print("after:", tables(engine))

        for record in orchestrator.decisions(run.id):
            print(f"can roll back: {record.label} {record.status} until {record.deadline}")

        undone = orchestrator.rollback(run.id, steps, operator="embed-example")
        print(f"rollback: {undone.outcome.value if undone.outcome else '?'}")
        for finding in undone.findings:
            print(f"  {finding.severity.value}: {finding.message}")
        print("after rollback:", tables(engine))
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(f"sqlite:///{tmp}/embed.db"))
