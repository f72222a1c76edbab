"""Built-in file-type handlers, one small module per type.

- :class:`~lupo_migrate.handlers.doctrine.DoctrineHandler`: ``.sql`` files (type ``doctrine``).
- :class:`~lupo_migrate.handlers.module.ModuleHandler`: ``.py`` migration modules with
  ``up(ctx)`` and ``down(ctx)`` (type ``module``).
- :class:`~lupo_migrate.handlers.agent.AgentHandler`: configuration records (YAML, JSON)
  upserted by key into a table or agent folders, restored exactly (type ``agent``).
- :class:`~lupo_migrate.handlers.documentation.DocumentationHandler`: header migrations of
  Markdown, PHP docblock and JSON files, byte-preserving (type ``documentation``).
"""

from __future__ import annotations

from lupo_migrate.handlers.agent import AgentHandler
from lupo_migrate.handlers.doctrine import DoctrineHandler
from lupo_migrate.handlers.documentation import DocumentationHandler
from lupo_migrate.handlers.module import ModuleHandler

__all__ = ["AgentHandler", "DoctrineHandler", "DocumentationHandler", "ModuleHandler"]
