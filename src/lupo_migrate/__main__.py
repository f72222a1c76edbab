"""``python -m lupo_migrate``: the same as the ``lupo-migrate`` command."""

from __future__ import annotations

from lupo_migrate.cli.entry import run

run()
