"""The public API: every name in __all__ exists, is documented, and nothing private leaks."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

PUBLIC_MODULES = [
    "lupo_migrate",
    "lupo_migrate.errors",
    "lupo_migrate.typing",
    "lupo_migrate.state",
    "lupo_migrate.validators",
    "lupo_migrate.backends",
    "lupo_migrate.testing",
    "lupo_migrate.observe",
    "lupo_migrate.observe.alerts",
    "lupo_migrate.dashboard",
    "lupo_migrate.handlers",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
class TestExports:
    def test_all_names_exist_and_are_unique(self, name: str) -> None:
        """Every name in __all__ is an attribute of the module, listed once."""
        module = importlib.import_module(name)
        assert len(set(module.__all__)) == len(module.__all__)
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing

    def test_public_callables_and_classes_have_docstrings(self, name: str) -> None:
        """Each exported class or function says what it does."""
        module = importlib.import_module(name)
        bare = [
            n
            for n in module.__all__
            if (inspect.isclass(obj := getattr(module, n)) or inspect.isfunction(obj))
            and not inspect.getdoc(obj)
        ]
        assert not bare

    def test_no_private_names_are_exported(self, name: str) -> None:
        """__all__ lists no underscore names."""
        module = importlib.import_module(name)
        assert not [n for n in module.__all__ if n.startswith("_")]


def test_errors_are_all_rooted_at_lupo_migrate_error() -> None:
    """Every exported exception derives from LupoMigrateError."""
    from lupo_migrate import errors

    for n in errors.__all__:
        assert issubclass(getattr(errors, n), errors.LupoMigrateError)


def test_importing_the_package_does_not_import_sqlalchemy() -> None:
    """The embedded library starts light: no SQLAlchemy or driver on import."""
    heavy = "{'sqlalchemy', 'pymysql', 'psycopg2', 'hypothesis'}"
    code = (
        "import sys, lupo_migrate; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_is_what_it_says_after_every_module_is_imported() -> None:
    """A package's lazy name never comes back as a submodule of the same name (importing
    ``lupo_migrate.cli.X`` sets the package's attribute ``X`` to that module): with every
    module of the package imported first, in a fresh process, each package's ``__all__``
    names are still what the package documents."""
    code = (
        "import importlib, pkgutil, types, lupo_migrate\n"
        "for info in pkgutil.walk_packages(lupo_migrate.__path__, 'lupo_migrate.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = []\n"
        "for info in pkgutil.walk_packages(lupo_migrate.__path__, 'lupo_migrate.'):\n"
        "    if not info.ispkg:\n"
        "        continue\n"
        "    package = importlib.import_module(info.name)\n"
        "    for name in getattr(package, '__all__', ()):\n"
        "        value = getattr(package, name)\n"
        "        if isinstance(value, types.ModuleType):\n"
        "            bad.append(f'{info.name}.{name}')\n"
        "from lupo_migrate.cli import main\n"
        "assert callable(main) and not isinstance(main, types.ModuleType), main\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
