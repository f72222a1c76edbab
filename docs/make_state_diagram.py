"""Generate docs/state-diagram.md (a Mermaid diagram) from the transition table.

Run ``python docs/make_state_diagram.py`` after changing ``lupo_migrate.core.state.TABLE``;
``tests/test_docs.py`` fails while the committed diagram differs from the table.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from lupo_migrate.core.state import TABLE, Phase

OUT = Path(__file__).with_name("state-diagram.md")


def render() -> str:
    """The Markdown page with the diagram, one arrow per (phase, target) with its events."""
    edges: dict[tuple[Phase, Phase], list[str]] = defaultdict(list)
    for (phase, event), row in TABLE.items():
        for target in sorted(row.targets, key=lambda p: p.value):
            edges[(phase, target)].append(event.__name__)
    order = list(Phase)
    lines = [
        "# Run state diagram",
        "",
        "Generated from `lupo_migrate.core.state.TABLE` by `docs/make_state_diagram.py`;"
        " do not edit by hand.",
        "A run starts in `idle` with no outcome and ends in `idle` with one"
        " (completed, rolled_back or failed).",
        "",
        "```mermaid",
        "stateDiagram-v2",
        "    [*] --> idle",
    ]
    for (source, target), events in sorted(
        edges.items(), key=lambda kv: (order.index(kv[0][0]), order.index(kv[0][1]))
    ):
        lines.append(f"    {source.value} --> {target.value}: {', '.join(events)}")
    lines += ["    idle --> [*]", "```", ""]
    return "\n".join(lines)


def main() -> int:
    """Write the diagram; with ``--check``, exit 1 if the file is out of date instead."""
    text = render()
    if "--check" in sys.argv[1:]:
        return 0 if OUT.exists() and OUT.read_text(encoding="utf-8") == text else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
