"""Read schema fingerprints and table data checksums with a handful of bulk queries.

``read_fingerprint`` describes a whole schema in a fixed number of queries: on MySQL/MariaDB,
ten ``information_schema`` queries (tables, columns, index parts, foreign key parts, checks,
views, triggers, routines, parameters, events); on PostgreSQL, eight catalog queries; on SQLite,
``sqlite_master`` joined with the table-valued pragmas. Never table-by-table reflection: a
1,000-table schema costs what the bare catalog queries cost, plus the assembling
(``benchmarks/fingerprint.py``).

``table_data`` summarises tables' rows as a count and an order-independent checksum (the sum of
a 60-bit hash of each row, computed by the server on MySQL and PostgreSQL).
"""

from __future__ import annotations

from lupo_migrate.backends.sqlalchemy.fingerprint._data import table_data
from lupo_migrate.backends.sqlalchemy.fingerprint._read import read_fingerprint

__all__ = ["read_fingerprint", "table_data"]
