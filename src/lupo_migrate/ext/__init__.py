"""Optional integrations of lupo_migrate with other libraries.

Each subpackage imports its library; importing :mod:`lupo_migrate` or this package imports
none of them. :mod:`lupo_migrate.ext.sqlalchemy` holds the SQLAlchemy storage and run lock.
"""

from __future__ import annotations

__all__: list[str] = []
