"""``python -m lupo_migrate``: the same as the ``lupo-migrate`` command."""

from __future__ import annotations

import sys

from lupo_migrate._entry import main

sys.exit(main())
