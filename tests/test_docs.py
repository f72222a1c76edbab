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


def test_the_architecture_page_names_modules_and_functions_that_exist() -> None:
    """Every module path docs/architecture.md names is in the package, and the places a
    newcomer looks for hold what the page says they hold."""
    import re

    package = ROOT / "src" / "lupo_migrate"
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)", page))
    assert len(named) > 20
    missing = [p for p in sorted(named) if not (package / p).is_file() and not (ROOT / p).is_file()]
    assert not missing, f"docs/architecture.md names modules that are not there: {missing}"
    for path, text in [
        ("core/state.py", "\nTABLE: Final"),
        ("core/state.py", "\ndef transition("),
        ("run/context.py", "    def execute(self, statement: str"),
        ("run/context.py", "journal_intent"),
        ("backends/sqlalchemy/_restore.py", "\ndef put_back("),
        ("backends/sqlalchemy/_restore.py", "\ndef refill("),
        ("backends/sqlalchemy/_preimage.py", "    def restore(self"),
        ("backends/sqlalchemy/lock.py", "GET_LOCK"),
        ("backends/sqlalchemy/lock.py", "    def acquire(self, owner: str"),
    ]:
        assert path in named, f"docs/architecture.md should name {path}"
        assert text in (package / path).read_text(encoding="utf-8"), (path, text)
