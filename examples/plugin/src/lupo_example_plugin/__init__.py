"""An example lupo_migrate plugin: the ``seed`` file type (``.seed.csv``).

Installed, it registers :class:`SeedHandler` through the ``lupo_migrate.handlers`` entry point
(see this package's ``pyproject.toml``), so ``lupo-migrate plan`` and ``apply`` pick up seed
files beside the SQL ones. Copy this package to write your own file type:

- ``_reading.py``: the file format, read and checked into values (replace it with yours);
- ``_sql.py``: literals and quoted names per dialect (reusable as it is);
- ``_handler.py``: the handler lupo_migrate calls (keep its shape).
"""

from __future__ import annotations

from lupo_example_plugin._handler import DOWN_OFFSET, SeedHandler, SeedInfo, SeedStatement
from lupo_example_plugin._reading import MAX_ROWS, SUFFIX, SeedFile, SeedRow, parse_seed
from lupo_example_plugin._sql import quote_identifier, sql_literal

__all__ = [
    "DOWN_OFFSET",
    "MAX_ROWS",
    "SUFFIX",
    "SeedFile",
    "SeedHandler",
    "SeedInfo",
    "SeedRow",
    "SeedStatement",
    "parse_seed",
    "quote_identifier",
    "sql_literal",
]
