"""Built-in file-type handlers, one small module per type.

- :class:`~lupo_migrate.handlers.doctrine.DoctrineHandler`: ``.sql`` files (type ``doctrine``).
- :class:`~lupo_migrate.handlers.module.ModuleHandler`: ``.py`` migration modules with
  ``up(ctx)`` and ``down(ctx)`` (type ``module``).
- :class:`~lupo_migrate.handlers.agent.AgentHandler`: configuration records (YAML, JSON)
  upserted by key into a table or agent folders, restored exactly (type ``agent``).
- :class:`~lupo_migrate.handlers.documentation.DocumentationHandler`: header migrations of
  Markdown, PHP docblock and JSON files, byte-preserving (type ``documentation``).

Beside them: the registry of handlers by file type (:mod:`~lupo_migrate.handlers.registry`),
plugins found by entry point (:mod:`~lupo_migrate.handlers.plugins`), containment of the files
handlers change (``_contain``) and their undo records (``_undo``).

May import: :mod:`lupo_migrate.sql`, :mod:`lupo_migrate.files` and :mod:`lupo_migrate.core`. A
handler is given a step context (the ``StepContext`` protocol of :mod:`lupo_migrate.core.ports`),
never the orchestrator, a session or a backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lupo_migrate.handlers.agent import AgentHandler
    from lupo_migrate.handlers.doctrine import DoctrineHandler
    from lupo_migrate.handlers.documentation import DocumentationHandler
    from lupo_migrate.handlers.module import ModuleHandler

__all__ = ["AgentHandler", "DoctrineHandler", "DocumentationHandler", "ModuleHandler"]

#: Each handler's module, imported when the handler is first asked for: a run of ``.sql``
#: files (and the SQL readers of ``lupo_migrate.sql`` they use) does not load the YAML
#: and front-matter machinery of the others.
_MODULES = {
    "AgentHandler": "agent",
    "DoctrineHandler": "doctrine",
    "DocumentationHandler": "documentation",
    "ModuleHandler": "module",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value
