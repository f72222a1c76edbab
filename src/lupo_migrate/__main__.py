"""``python -m lupo_migrate``: the same as the ``lupo-migrate`` command."""

from __future__ import annotations

from lupo_migrate._entry import run

run()
