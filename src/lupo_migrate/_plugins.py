"""Discovery of third-party handlers through the ``lupo_migrate.handlers`` entry point group.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."lupo_migrate.handlers"]
    xml = "lupo_xml:XmlHandler"

The object named may be a handler, a class (called with no arguments), or a zero-argument
function returning a handler. This module's only action on the registry is
:meth:`HandlerRegistry.register`; setting ``LUPO_MIGRATE_NO_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

from lupo_migrate._registry import HandlerRegistry
from lupo_migrate.errors import RegistryError
from lupo_migrate.typing import Handler

__all__ = ["DISABLE_ENV", "GROUP", "default_registry", "load_entry_points"]

#: The entry point group plugins declare their handlers in.
GROUP = "lupo_migrate.handlers"
#: Environment variable that, set to anything but ``""``, ``0``, ``false`` or ``no``, turns
#: plugin discovery off.
DISABLE_ENV = "LUPO_MIGRATE_NO_PLUGINS"


def _disabled() -> bool:
    value = os.environ.get(DISABLE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no")


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
    if _disabled():
        return []
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


def default_registry(*, plugins: bool = True) -> HandlerRegistry:
    """The built-in handlers, plus those installed through the entry point."""
    from lupo_migrate.handlers.agent import AgentHandler
    from lupo_migrate.handlers.doctrine import DoctrineHandler
    from lupo_migrate.handlers.documentation import DocumentationHandler
    from lupo_migrate.handlers.module import ModuleHandler

    registry = HandlerRegistry()
    registry.register(DoctrineHandler())
    registry.register(ModuleHandler())
    registry.register(AgentHandler())
    registry.register(DocumentationHandler())
    if plugins:
        load_entry_points(registry)
    return registry
