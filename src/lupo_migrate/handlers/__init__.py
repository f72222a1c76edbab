"""Built-in file-type handlers, one small module per type.

- :class:`~lupo_migrate.handlers.doctrine.DoctrineHandler`: ``.sql`` files (type ``doctrine``).
"""

from __future__ import annotations

from lupo_migrate.handlers.doctrine import DoctrineHandler

__all__ = ["DoctrineHandler"]
