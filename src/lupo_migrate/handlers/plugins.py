"""Discovery of third-party handlers through the ``lupo_migrate.handlers`` entry point group.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."lupo_migrate.handlers"]
    xml = "lupo_xml:XmlHandler"

The object named may be a handler, a class (called with no arguments), or a zero-argument
function returning a handler. This module's only action on the registry is
:meth:`HandlerRegistry.register`; setting ``LUPO_MIGRATE_NO_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from lupo_migrate.core.errors import RegistryError
from lupo_migrate.core.ports import Handler
from lupo_migrate.handlers.registry import HandlerRegistry

if TYPE_CHECKING:
    from importlib import metadata

__all__ = ["BUILTINS", "DISABLE_ENV", "GROUP", "default_registry", "load_entry_points"]

#: The entry point group plugins declare their handlers in.
GROUP = "lupo_migrate.handlers"
#: Environment variable that, set to anything but ``""``, ``0``, ``false`` or ``no``, turns
#: plugin discovery off.
DISABLE_ENV = "LUPO_MIGRATE_NO_PLUGINS"


def _disabled() -> bool:
    value = os.environ.get(DISABLE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no")


def _declared_anywhere(group: str) -> bool:
    """Whether an installed distribution may declare entry points in *group*: a look at the
    ``entry_points.txt`` files of the ``*.dist-info``/``*.egg-info`` directories on
    ``sys.path``, so that the usual case (no plugin) never imports ``importlib.metadata``
    (15 ms of a command's start). True whenever it cannot be sure (a zip on the path)."""
    header = f"[{group}]"
    for entry in sys.path:
        folder = Path(entry or ".")
        if not folder.is_dir():
            if folder.exists():
                return True  # a zip or egg file: let importlib.metadata look
            continue
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    text = (folder / name / "entry_points.txt").read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if header in text:
                    return True
    return False


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution {dist.name} {dist.version}"


def _as_handler(obj: Any) -> Any:
    """*obj* itself if it has the handler members, else what calling it returns."""
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "file_type")):
        return obj()
    return obj


def load_entry_points(registry: HandlerRegistry, *, group: str = GROUP) -> list[str]:
    """Register the handler of every entry point in *group*, in entry point name order.

    Args:
        registry: where the handlers go; only ``registry.register()`` is called.
        group: the entry point group to read.

    Returns:
        The names of the entry points loaded (empty when discovery is turned off through
        ``LUPO_MIGRATE_NO_PLUGINS``).

    Raises:
        RegistryError: an entry point failed to import or its factory failed; the message
            names the entry point and its distribution, and the cause is chained.
        HandlerProtocolError: a plugin's object is not a handler.
        DuplicateHandlerError: a plugin's file type or suffix is already registered.
    """
    if _disabled() or not _declared_anywhere(group):
        return []
    from importlib import metadata

    loaded: list[str] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            handler: Handler = _as_handler(ep.load())
        except Exception as exc:
            raise RegistryError(
                f"plugin {ep.name!r} = {ep.value!r} (group {group!r}, {_distribution(ep)})"
                f" failed to load: {type(exc).__name__}: {exc}. Fix or uninstall that"
                f" distribution, or set {DISABLE_ENV}=1 to skip plugins."
            ) from exc
        registry.register(handler)
        loaded.append(ep.name)
    return loaded


#: The built-in handlers: file type, suffixes, module and class (imported when first used).
BUILTINS: Final = (
    ("doctrine", (".sql",), "lupo_migrate.handlers.doctrine", "DoctrineHandler"),
    ("module", (".py",), "lupo_migrate.handlers.module", "ModuleHandler"),
    ("agent", (".yaml", ".yml", ".json"), "lupo_migrate.handlers.agent", "AgentHandler"),
    ("documentation", (".md",), "lupo_migrate.handlers.documentation", "DocumentationHandler"),
)


@final
class _Builtin:
    """A built-in handler that is imported when a step of its type is first handled.

    Discovery needs only the file types and suffixes; a command with nothing to do (the
    re-run of ``apply``) then never imports the statement splitter, the header editor and the
    rest. Every other member is the real handler's.
    """

    def __init__(self, file_type: str, suffixes: tuple[str, ...], module: str, name: str) -> None:
        self.file_type = file_type
        self.suffixes = suffixes
        self._where = (module, name)
        self._handler: Handler | None = None

    def _real(self) -> Handler:
        if self._handler is None:
            module, name = self._where
            self._handler = getattr(importlib.import_module(module), name)()
        return self._handler

    def apply(self, step: Any, context: Any) -> None:
        """The real handler's ``apply``."""
        self._real().apply(step, context)

    def rollback(self, step: Any, context: Any) -> None:
        """The real handler's ``rollback``."""
        self._real().rollback(step, context)

    def can_rollback(self, step: Any) -> bool:
        """The real handler's ``can_rollback``."""
        return self._real().can_rollback(step)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_where", "_handler"):
            raise AttributeError(name)
        return getattr(self._real(), name)  # statements, inspect, transactional...

    def __repr__(self) -> str:
        return f"{self._where[1]}()"


def default_registry(*, plugins: bool = True) -> HandlerRegistry:
    """The built-in handlers, plus those installed through the entry point."""
    registry = HandlerRegistry()
    for file_type, suffixes, module, name in BUILTINS:
        registry.register(_Builtin(file_type, suffixes, module, name))
    if plugins:
        load_entry_points(registry)
    return registry
