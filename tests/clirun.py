"""The command line run in-process, as the tests of what users read call it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lupo_migrate.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``lupo-migrate ARGS``: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err
