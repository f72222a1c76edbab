"""Sphinx configuration: the API reference (from docstrings), the architecture and layer pages,
the generated state diagram and the existing guides (Markdown, through MyST).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``.ci/run`` does,
warnings as errors).
"""

from __future__ import annotations

project = "lupo_migrate"
author = "lupo_migrate developers"
copyright = "2026, lupo_migrate developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Google-style Args/Returns/Raises sections of our docstrings
    "myst_parser",  # the guides are Markdown
    "sphinxcontrib.mermaid",  # the generated state diagram
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_fence_as_directive = ["mermaid"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "alabaster"
html_title = "lupo_migrate"


# --------------------------------------------------------------------------- layer pages
# One page per layer, written at each build from the package itself, so that a module added
# or moved is on its page at once: the layer's docstring (what lives there, what it may
# import), then each module's docstring.
from pathlib import Path  # noqa: E402

_HERE = Path(__file__).parent
_PACKAGE = _HERE.parent / "src" / "lupo_migrate"
LAYERS = (
    "core",
    "sql",
    "files",
    "handlers",
    "observe",
    "backends",
    "run",
    "session",
    "dashboard",
    "cli",
)


def _modules(layer: str) -> list[str]:
    found = []
    for path in sorted((_PACKAGE / layer).rglob("*.py")):
        parts = path.relative_to(_PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join(parts))
    return [m for m in found if m != f"lupo_migrate.{layer}"]


def _write_layer_pages() -> None:
    out = _HERE / "layers"
    out.mkdir(exist_ok=True)
    for layer in LAYERS:
        lines = [
            f"# Layer `{layer}/`",
            "",
            "Generated from the package at build time (`docs/conf.py`).",
            "",
            "```{eval-rst}",
            f".. automodule:: lupo_migrate.{layer}",
            "   :no-index:",
            "```",
            "",
            "## Its modules",
            "",
        ]
        for module in _modules(layer):
            lines += [
                f"### `{module}`",
                "",
                "```{eval-rst}",
                f".. automodule:: {module}",
                "   :no-index:",
                "```",
                "",
            ]
        page = out / f"{layer}.md"
        text = "\n".join(lines)
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            page.write_text(text, encoding="utf-8")


_write_layer_pages()
