"""The functional core imports nothing from the shell and does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lupo_migrate

PACKAGE = Path(lupo_migrate.__file__).parent

#: The modules that decide: all of ``core/`` and ``sql/``, and the pure readers of ``files/``
#: and the handler registry (they parse text they are given). They may import only one another.
PURE_OUTSIDE_CORE = (
    "files.headers",
    "files.headers_yaml",
    "files.yaml",
    "files.header_schema",
    "files.manifest",
    "files.frontmatter.edit",
    "files.frontmatter.blocks",
    "files.frontmatter.text",
    "handlers.registry",
)
CORE = (
    tuple(sorted(f"core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__"))
    + PURE_OUTSIDE_CORE
)
ALLOWED_TOP = {
    "__future__",
    "attrs",
    "networkx",
    "jsonschema",
    "yaml",
    "typing_extensions",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",
    "itertools",
    "math",
    "operator",
    "re",
    "string",
    "typing",
    "types",
    "abc",
    "ast",
    "bisect",
    "heapq",
    "json",
    "textwrap",
    "unicodedata",
    "codecs",
    "importlib",
    "contextlib",
    "copy",
    "numbers",
    "fractions",
    "decimal",
    "keyword",
    "posixpath",
    "io",
    "statistics",
}
ALLOWED_OWN = {f"lupo_migrate.{name}" for name in CORE} | {"lupo_migrate.core"}
#: Names whose call means I/O, a clock, randomness or logging.
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}
FORBIDDEN_ATTRS = {
    "now",
    "utcnow",
    "today",
    "time",
    "monotonic",
    "perf_counter",
    "sleep",
    "random",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "getenv",
    "environ",
    "getLogger",
    "system",
    "popen",
    "listdir",
    "scandir",
    "walk",
}


def _reads_package_data(call: ast.Call) -> bool:
    """``importlib.resources.files(...)...read_text()``: the package's own data, deterministic."""
    node: ast.AST = call.func
    while isinstance(node, (ast.Attribute, ast.Call)):
        if isinstance(node, ast.Call):
            node = node.func
            continue
        if node.attr == "files" and ast.unparse(node.value) == "importlib.resources":
            return True
        node = node.value
    return False


def core_modules() -> list[Path]:
    return [PACKAGE / (name.replace(".", "/") + ".py") for name in CORE]


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (annotations: nothing runs)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            found.update(id(inner) for child in node.body for inner in ast.walk(child))
    return found


def imports_of(tree: ast.AST) -> list[str]:
    names: list[str] = []
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
class TestCoreIsPure:
    def test_core_module_imports_only_core_and_pure_libraries(self, path: Path) -> None:
        """No sqlalchemy, no driver, no os/pathlib/logging/time: only pure libraries and core."""
        bad = []
        for name in imports_of(ast.parse(path.read_text(encoding="utf-8"))):
            top = name.split(".")[0]
            if name.startswith("lupo_migrate"):
                if name not in ALLOWED_OWN and name != "lupo_migrate":
                    bad.append(name)
            elif top not in ALLOWED_TOP:
                bad.append(name)
        assert not bad, f"{path.name} imports shell modules: {bad}"

    def test_core_module_calls_nothing_that_does_io(self, path: Path) -> None:
        """No open(), print(), clock, randomness, environment or logging calls."""
        bad = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    bad.append(f"{func.id}() at line {node.lineno}")
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in FORBIDDEN_ATTRS
                    and not _reads_package_data(node)
                ):
                    bad.append(f".{func.attr}() at line {node.lineno}")
        assert not bad, f"{path.name} does I/O: {bad}"


def test_the_purity_check_catches_a_shell_import(tmp_path: Path) -> None:
    """The check is not vacuous: a module importing sqlalchemy and calling open() is caught."""
    tree = ast.parse("import sqlalchemy\nfrom os import path\nopen('x')\n")
    tops = {name.split(".")[0] for name in imports_of(tree)}
    assert tops - ALLOWED_TOP == {"sqlalchemy", "os"}


def test_package_data_reads_are_allowed_but_other_reads_are_not() -> None:
    """Reading shipped data via importlib.resources passes; Path(...).read_text() does not."""
    allowed = ast.parse("importlib.resources.files('p').joinpath('s.json').read_text()")
    forbidden = ast.parse("Path('s.json').read_text()")
    assert _reads_package_data(allowed.body[0].value)  # type: ignore[attr-defined]
    assert not _reads_package_data(forbidden.body[0].value)  # type: ignore[attr-defined]


def test_every_core_module_is_checked() -> None:
    """Every module of ``core/`` is parsed here, and every module named exists."""
    checked = {p.relative_to(PACKAGE).as_posix() for p in core_modules()}
    assert {"core/model.py", "core/state.py", "core/classifier.py"} <= checked
    assert all((PACKAGE / path).is_file() for path in checked)
