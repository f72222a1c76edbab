"""Tests for lupo_migrate.handlers.plugins: entry point discovery of handlers."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
import pytest

from lupo_migrate.core.model import Step
from lupo_migrate.errors import DuplicateHandlerError, HandlerProtocolError, RegistryError
from lupo_migrate.handlers import plugins as _plugins
from lupo_migrate.handlers.plugins import load_entry_points
from lupo_migrate.handlers.registry import HandlerRegistry


@attrs.define
class XmlHandler:
    """A plugin handler for ``.xml`` files."""

    file_type: str = "xml"
    suffixes: Sequence[str] = (".xml",)

    def apply(self, step: Step, context: Any) -> None:
        pass

    def rollback(self, step: Step, context: Any) -> None:
        pass

    def can_rollback(self, step: Step) -> bool:
        return True


def make_ini_handler() -> XmlHandler:
    """A zero-argument factory returning a handler."""
    return XmlHandler(file_type="ini", suffixes=(".ini",))


#: A ready-made handler instance.
TOML_HANDLER = XmlHandler(file_type="toml", suffixes=(".toml",))


def broken_factory() -> XmlHandler:
    """A factory that fails."""
    raise RuntimeError("no config")


def _ep(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=_plugins.GROUP)


@pytest.fixture(name="registry")
def _registry() -> HandlerRegistry:
    return HandlerRegistry()


@pytest.fixture(name="fake_entry_points")
def _fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[metadata.EntryPoint]:
    """Entry points the plugin module will see, by group; starts empty."""
    points: list[metadata.EntryPoint] = []
    groups: list[str] = []

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        groups.append(group)
        return [ep for ep in points if ep.group == group]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.setattr(_plugins, "_declared_anywhere", lambda group: True)
    monkeypatch.delenv(_plugins.DISABLE_ENV, raising=False)
    return points


class TestLoadEntryPoints:
    def test_class_function_and_instance_are_registered(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """A class, a factory function and an instance all end up registered, in name order."""
        fake_entry_points += [
            _ep("xml", f"{__name__}:XmlHandler"),
            _ep("ini", f"{__name__}:make_ini_handler"),
            _ep("toml", f"{__name__}:TOML_HANDLER"),
        ]
        assert load_entry_points(registry) == ["ini", "toml", "xml"]
        assert registry.file_types() == ("ini", "toml", "xml")
        assert registry.lookup("toml") is TOML_HANDLER
        assert registry.for_path("a/b.xml").file_type == "xml"

    def test_nothing_installed(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """With no plugins nothing is loaded."""
        assert load_entry_points(registry) == []
        assert len(registry) == 0

    def test_other_group(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """The group can be chosen."""
        fake_entry_points.append(
            metadata.EntryPoint(name="xml", value=f"{__name__}:XmlHandler", group="mine")
        )
        assert load_entry_points(registry) == []
        assert load_entry_points(registry, group="mine") == ["xml"]

    @pytest.mark.parametrize("value", ["1", "true", "yes", "on"])
    def test_environment_variable_turns_it_off(
        self,
        registry: HandlerRegistry,
        fake_entry_points: list[metadata.EntryPoint],
        monkeypatch: pytest.MonkeyPatch,
        value: str,
    ) -> None:
        """LUPO_MIGRATE_NO_PLUGINS set to a true value skips discovery."""
        fake_entry_points.append(_ep("xml", f"{__name__}:XmlHandler"))
        monkeypatch.setenv("LUPO_MIGRATE_NO_PLUGINS", value)
        assert load_entry_points(registry) == []
        assert len(registry) == 0

    @pytest.mark.parametrize("value", ["", "0", "false", "No"])
    def test_false_environment_values_keep_it_on(
        self,
        registry: HandlerRegistry,
        fake_entry_points: list[metadata.EntryPoint],
        monkeypatch: pytest.MonkeyPatch,
        value: str,
    ) -> None:
        """LUPO_MIGRATE_NO_PLUGINS set to a false value leaves discovery on."""
        fake_entry_points.append(_ep("xml", f"{__name__}:XmlHandler"))
        monkeypatch.setenv("LUPO_MIGRATE_NO_PLUGINS", value)
        assert load_entry_points(registry) == ["xml"]

    def test_import_failure_names_entry_point(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """A plugin that cannot be imported raises RegistryError naming it, cause chained."""
        fake_entry_points.append(_ep("gone", "no_such_module_xyz:Handler"))
        with pytest.raises(RegistryError) as info:
            load_entry_points(registry)
        assert isinstance(info.value.__cause__, ImportError)
        message = str(info.value)
        assert "plugin 'gone' = 'no_such_module_xyz:Handler'" in message
        assert "an unknown distribution" in message
        assert "LUPO_MIGRATE_NO_PLUGINS=1" in message

    def test_factory_failure_is_chained(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """A factory that raises is reported like an import failure."""
        fake_entry_points.append(_ep("bad", f"{__name__}:broken_factory"))
        with pytest.raises(RegistryError, match="RuntimeError: no config") as info:
            load_entry_points(registry)
        assert isinstance(info.value.__cause__, RuntimeError)

    def test_not_a_handler(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """An object that is not a handler is refused by the registry's own check."""
        fake_entry_points.append(_ep("path", "os:sep"))
        with pytest.raises(HandlerProtocolError):
            load_entry_points(registry)

    def test_duplicate_with_builtin(
        self, registry: HandlerRegistry, fake_entry_points: list[metadata.EntryPoint]
    ) -> None:
        """A plugin clashing with a handler already registered is refused."""
        registry.register(XmlHandler())
        fake_entry_points.append(_ep("xml", f"{__name__}:XmlHandler"))
        with pytest.raises(DuplicateHandlerError):
            load_entry_points(registry)


class TestRealDistribution:
    def test_installed_dist_info_is_found(
        self, registry: HandlerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A real dist-info directory on sys.path is discovered through importlib.metadata."""
        (tmp_path / "lupo_fake_plugin.py").write_text(
            textwrap.dedent(
                """
                class CsvHandler:
                    file_type = "csv"
                    suffixes = (".csv",)
                    def apply(self, step, context): pass
                    def rollback(self, step, context): pass
                    def can_rollback(self, step): return True

                def broken():
                    raise ValueError("bad plugin")
                """
            )
        )
        dist = tmp_path / "lupo_fake_plugin-1.2.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: lupo-fake-plugin\nVersion: 1.2\n"
        )
        (dist / "entry_points.txt").write_text(
            "[lupo_migrate.handlers]\ncsv = lupo_fake_plugin:CsvHandler\n"
            "\n[lupo_migrate.broken]\nbad = lupo_fake_plugin:broken\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delenv("LUPO_MIGRATE_NO_PLUGINS", raising=False)
        monkeypatch.delitem(sys.modules, "lupo_fake_plugin", raising=False)
        assert load_entry_points(registry) == ["csv"]
        assert registry.for_path("data/x.csv").file_type == "csv"

        with pytest.raises(RegistryError, match=r"distribution lupo-fake-plugin 1\.2") as info:
            load_entry_points(registry, group="lupo_migrate.broken")
        assert "plugin 'bad'" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)


def test_built_in_handlers_are_imported_only_when_used() -> None:
    """The registry's built-ins claim the real handlers' types and suffixes, and discovery
    alone imports none of their modules (the nothing-to-do re-run stays fast)."""
    import importlib
    import subprocess
    import sys

    from lupo_migrate.handlers.plugins import BUILTINS

    for file_type, suffixes, module, name in BUILTINS:
        real = getattr(importlib.import_module(module), name)()
        assert (real.file_type, tuple(real.suffixes)) == (file_type, suffixes)
    script = (
        "import sys\n"
        "from lupo_migrate.handlers.plugins import default_registry\n"
        "registry = default_registry(plugins=False)\n"
        "assert registry.for_path('V1__x.sql').file_type == 'doctrine'\n"
        "own = {'lupo_migrate.handlers.registry', 'lupo_migrate.handlers.plugins'}\n"
        "print(sorted(m for m in sys.modules if m.startswith('lupo_migrate.handlers.')"
        " and m not in own))\n"
        "handler = registry.lookup('doctrine')\n"
        "assert handler.transactional if hasattr(handler, 'transactional') else True\n"
        "assert callable(handler.statements)\n"
        "print('lupo_migrate.handlers.doctrine' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.splitlines()
    assert before == "[]"
    assert after == "True"


def test_the_quick_look_finds_a_distribution_declaring_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any distribution declaring the group, importlib.metadata is not asked; one
    that declares it (a dist-info on sys.path) is found; a zip on the path means: ask."""
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    other = tmp_path / "other-1.0.dist-info"
    other.mkdir()
    (other / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n")
    assert not _plugins._declared_anywhere(_plugins.GROUP)
    plugin = tmp_path / "plug-1.0.dist-info"
    plugin.mkdir()
    (plugin / "entry_points.txt").write_text("[lupo_migrate.handlers]\nseed = p:H\n")
    assert _plugins._declared_anywhere(_plugins.GROUP)
    zipped = tmp_path / "eggs.zip"
    zipped.write_bytes(b"PK")
    monkeypatch.setattr(sys, "path", [str(zipped)])
    assert _plugins._declared_anywhere(_plugins.GROUP)
