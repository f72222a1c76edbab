"""Documentation generated from code stays in step with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_state_diagram_is_generated_from_the_current_table() -> None:
    """docs/state-diagram.md equals what make_state_diagram.py renders from TABLE now."""
    spec = importlib.util.spec_from_file_location(
        "make_state_diagram", ROOT / "docs" / "make_state_diagram.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "state-diagram.md").read_text(encoding="utf-8")
    assert committed == module.render(), "run: python docs/make_state_diagram.py"
    assert "migrating --> rolling_back: StepFailed, RollbackRequested" in committed
