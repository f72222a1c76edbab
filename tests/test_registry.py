"""Tests for lupo_migrate.handlers.registry.HandlerRegistry."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from lupo_migrate.core.model import Step
from lupo_migrate.errors import (
    DuplicateHandlerError,
    HandlerProtocolError,
    InvalidArgumentError,
    NoHandlerError,
    RegistryError,
)
from lupo_migrate.handlers.registry import DuplicateSuffixError, HandlerRegistry
from lupo_migrate.typing import Handler


@attrs.define
class FakeHandler:
    """A handler that records nothing: enough for the registry."""

    file_type: str
    suffixes: Sequence[str] = ()

    def apply(self, step: Step, context: Any) -> None:
        pass

    def rollback(self, step: Step, context: Any) -> None:
        pass

    def can_rollback(self, step: Step) -> bool:
        return True


@pytest.fixture(name="registry")
def _registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register(FakeHandler("doctrine", (".sql",)))
    registry.register(FakeHandler("down", (".down.sql",)))
    registry.register(FakeHandler("documentation", (".md", ".json")))
    return registry


class TestRegister:
    def test_fake_handler_is_a_handler(self) -> None:
        """The test double satisfies the runtime-checkable protocol."""
        assert isinstance(FakeHandler("x"), Handler)

    def test_registered_handler_is_found(self, registry: HandlerRegistry) -> None:
        """A registered handler is looked up by its file type."""
        handler = FakeHandler("agent", (".yaml",))
        registry.register(handler)
        assert registry.lookup("agent") is handler
        assert "agent" in registry
        assert handler in registry
        assert len(registry) == 4

    def test_missing_members_are_all_named(self) -> None:
        """A handler lacking members is refused, naming every missing one."""

        class Half:
            file_type = "half"

            def apply(self, step: Step, context: Any) -> None:
                pass

        with pytest.raises(HandlerProtocolError) as info:
            HandlerRegistry().register(Half())  # type: ignore[arg-type]
        assert info.value.missing == ("suffixes", "rollback()", "can_rollback()")
        assert isinstance(info.value, TypeError)
        assert "missing suffixes, rollback(), can_rollback()" in str(info.value)

    @pytest.mark.parametrize(
        ("field", "value", "fragment"),
        [
            ("file_type", 3, "file_type (must be a non-empty str, got 3)"),
            ("file_type", "", "file_type (must be a non-empty str"),
            ("suffixes", ".sql", "suffixes (must be a sequence of non-empty str"),
            ("suffixes", [".sql", 1], "suffixes (must be a sequence"),
            ("suffixes", {".sql"}, "suffixes (must be a sequence"),
        ],
    )
    def test_ill_typed_attributes_are_refused(
        self, field: str, value: object, fragment: str
    ) -> None:
        """Attributes of the wrong type are named with the value found."""
        handler = FakeHandler("x", (".x",))
        object.__setattr__(handler, field, value)
        with pytest.raises(HandlerProtocolError) as info:
            HandlerRegistry().register(handler)
        assert fragment in info.value.missing[0]

    def test_non_callable_method_is_refused(self) -> None:
        """A method member that is not callable is named."""

        class NotCallable:
            file_type = "x"
            suffixes = (".x",)
            apply = "nope"
            rollback = can_rollback = FakeHandler.can_rollback

        with pytest.raises(HandlerProtocolError, match=r"apply\(\) \(not callable: 'nope'\)"):
            HandlerRegistry().register(NotCallable())  # type: ignore[arg-type]

    def test_duplicate_file_type_names_both(self, registry: HandlerRegistry) -> None:
        """A second handler for a file type is refused, naming both."""
        existing = registry.lookup("doctrine")
        new = FakeHandler("doctrine", (".ddl",))
        with pytest.raises(DuplicateHandlerError) as info:
            registry.register(new)
        assert (info.value.file_type, info.value.existing, info.value.new) == (
            "doctrine",
            existing,
            new,
        )
        assert ".ddl" not in registry.suffix_map()

    def test_duplicate_suffix_is_refused(self, registry: HandlerRegistry) -> None:
        """A suffix claimed twice (any case) is refused, naming both handlers and the suffix."""
        new = FakeHandler("markdown", (".txt", ".MD"))
        with pytest.raises(DuplicateSuffixError) as info:
            registry.register(new)
        assert isinstance(info.value, DuplicateHandlerError)
        assert info.value.suffix == ".md"
        assert info.value.existing is registry.lookup("documentation")
        assert info.value.new is new
        assert "suffix '.md' is already claimed" in str(info.value)
        assert "markdown" not in registry
        assert ".txt" not in registry.suffix_map()

    def test_duplicate_suffix_error_pickles(self) -> None:
        """The suffix error survives a pickle round trip with its message."""
        err = DuplicateSuffixError(".sql", FakeHandler("a"), FakeHandler("b"))
        copy = pickle.loads(pickle.dumps(err))
        assert (copy.suffix, str(copy)) == (err.suffix, str(err))

    def test_suffixes_of_one_handler_are_deduplicated(self) -> None:
        """A handler may list a suffix twice in different case."""
        registry = HandlerRegistry()
        registry.register(FakeHandler("x", (".X", ".x")))
        assert registry.suffix_map() == {".x": "x"}


class TestUnregister:
    def test_unregister_frees_type_and_suffixes(self, registry: HandlerRegistry) -> None:
        """Unregistering returns the handler and frees its file type and suffixes."""
        handler = registry.lookup("documentation")
        assert registry.unregister("documentation") is handler
        assert "documentation" not in registry
        assert ".md" not in registry.suffix_map()
        registry.register(FakeHandler("markdown", (".md",)))
        assert registry.for_path("a.md").file_type == "markdown"

    def test_unregister_unknown_raises(self, registry: HandlerRegistry) -> None:
        """Unregistering a file type nobody handles raises NoHandlerError."""
        with pytest.raises(NoHandlerError, match="no handler for file type 'xml'"):
            registry.unregister("xml")


class TestLookup:
    def test_unknown_type_lists_registered(self, registry: HandlerRegistry) -> None:
        """A failed lookup lists the registered file types and how to add more."""
        with pytest.raises(NoHandlerError) as info:
            registry.lookup("xml")
        assert info.value.registered == ("doctrine", "documentation", "down")
        assert "'lupo_migrate.handlers' entry point" in str(info.value)
        assert isinstance(info.value, RegistryError)

    def test_non_str_is_an_invalid_argument(self, registry: HandlerRegistry) -> None:
        """A file type that is not a str raises InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError):
            registry.lookup(3)  # type: ignore[arg-type]


class TestForPath:
    @pytest.mark.parametrize(
        ("path", "file_type"),
        [
            ("core/001_users.sql", "doctrine"),
            ("core/001_users.down.sql", "down"),
            ("CORE/001_USERS.DOWN.SQL", "down"),
            ("docs/readme.md", "documentation"),
            ("v1.down.d/x.json", "documentation"),
            ("a.down.sql.sql", "doctrine"),
        ],
    )
    def test_longest_suffix_wins(
        self, registry: HandlerRegistry, path: str, file_type: str
    ) -> None:
        """The handler of the longest suffix the file name ends with is chosen."""
        assert registry.for_path(path).file_type == file_type

    def test_no_match_message(self, registry: HandlerRegistry) -> None:
        """An unclaimed file names itself, its suffix, the registered suffixes, and the fix."""
        with pytest.raises(NoHandlerError) as info:
            registry.for_path("docs/a.xml")
        assert str(info.value) == (
            "no handler for 'docs/a.xml' (suffix '.xml'); registered: .down.sql, .json, .md,"
            " .sql. Register one, or install a package providing the 'lupo_migrate.handlers'"
            " entry point."
        )

    def test_no_suffix_message(self, registry: HandlerRegistry) -> None:
        """A file without a suffix says so."""
        with pytest.raises(NoHandlerError, match=r"'Makefile' \(no suffix\)"):
            registry.for_path("Makefile")

    def test_directory_dots_do_not_count(self) -> None:
        """Only the file name is matched, not the directories."""
        registry = HandlerRegistry()
        registry.register(FakeHandler("doctrine", (".sql",)))
        with pytest.raises(NoHandlerError, match="no suffix"):
            registry.for_path("x.sql/README")

    def test_empty_registry(self) -> None:
        """An empty registry says none are registered."""
        with pytest.raises(NoHandlerError, match="registered: none"):
            HandlerRegistry().for_path("a.sql")

    def test_non_str_is_an_invalid_argument(self, registry: HandlerRegistry) -> None:
        """A path that is not a str raises InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError):
            registry.for_path(None)  # type: ignore[arg-type]


class TestIntrospection:
    def test_suffix_map_and_file_types(self, registry: HandlerRegistry) -> None:
        """suffix_map and file_types describe what is registered, in registration order."""
        assert registry.suffix_map() == {
            ".sql": "doctrine",
            ".down.sql": "down",
            ".md": "documentation",
            ".json": "documentation",
        }
        assert registry.file_types() == ("doctrine", "down", "documentation")

    def test_suffix_map_is_a_copy(self, registry: HandlerRegistry) -> None:
        """Changing the returned map does not change the registry."""
        registry.suffix_map().clear()
        assert len(registry.suffix_map()) == 4

    def test_iteration_yields_handlers(self, registry: HandlerRegistry) -> None:
        """Iterating yields the handlers in registration order."""
        assert [h.file_type for h in registry] == ["doctrine", "down", "documentation"]

    def test_contains(self, registry: HandlerRegistry) -> None:
        """``in`` accepts a file type or a handler, and nothing else matches."""
        assert "down" in registry
        assert "xml" not in registry
        assert FakeHandler("doctrine", (".sql",)) not in registry  # equal, not the same object
        assert 3 not in registry

    def test_registries_are_independent(self, registry: HandlerRegistry) -> None:
        """Each registry instance has its own handlers."""
        assert len(HandlerRegistry()) == 0
