"""Built-in validators and the ``all_of`` combinator.

A validator is any callable ``(ValidationContext) -> Iterable[Finding]``
(:class:`lupo_migrate.core.ports.Validator`); a failed check is a finding, never an exception.
"""

from __future__ import annotations

from lupo_migrate.core.validation import (
    DEFAULT_TABLE_BUDGET,
    all_of,
    checksums_unchanged,
    dependencies_applied,
    run_validators,
    table_budget,
)

__all__ = [
    "DEFAULT_TABLE_BUDGET",
    "all_of",
    "checksums_unchanged",
    "dependencies_applied",
    "run_validators",
    "table_budget",
]
