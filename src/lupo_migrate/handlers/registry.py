"""The handler registry: which handler applies which file type, and which suffixes it claims.

A :class:`HandlerRegistry` is an ordinary instance, never a module global, so every test and
every embedding application gets its own. It only records handlers: discovery through entry
points lives in :mod:`lupo_migrate.handlers.plugins`, whose only action is :meth:`register`.

Rules:

- a handler is checked against :class:`lupo_migrate.core.ports.Handler` when registered, and every
  missing or ill-typed member is named at once;
- a file type is handled by one handler; registering a second one for it is an error;
- a suffix is claimed by one handler; a second claim is an error too (two handlers for one
  suffix would make discovery depend on registration order). Suffixes are compared without
  regard to case and stored lower-cased;
- :meth:`HandlerRegistry.for_path` picks the handler of the *longest* suffix the file name ends
  with, so ``.down.sql`` beats ``.sql``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from posixpath import basename
from typing import cast, final

import attrs

from lupo_migrate.core.errors import (
    DuplicateHandlerError,
    HandlerProtocolError,
    InvalidArgumentError,
    NoHandlerError,
)
from lupo_migrate.core.ports import Handler

__all__ = ["DuplicateSuffixError", "HandlerRegistry"]

_METHODS = ("apply", "rollback", "can_rollback")


@final
class DuplicateSuffixError(DuplicateHandlerError):
    """Two handlers claim the same file name suffix.

    Attributes:
        suffix: the suffix both claim (lower-cased).
        file_type: the file type of the handler already registered.
        existing: the handler already registered.
        new: the handler that was refused.
    """

    def __init__(self, suffix: str, existing: Handler, new: Handler) -> None:
        super().__init__(existing.file_type, existing, new)
        self.suffix = suffix
        # Replace the file-type wording of the parent with the suffix conflict.
        self.args = (
            f"suffix {suffix!r} is already claimed by {existing!r} (file type"
            f" {existing.file_type!r}); cannot also give it to {new!r} (file type"
            f" {new.file_type!r}). Drop the suffix from one handler, or unregister the first.",
        )

    def __reduce__(self) -> tuple[type[DuplicateSuffixError], tuple[str, Handler, Handler]]:
        return (type(self), (self.suffix, cast(Handler, self.existing), cast(Handler, self.new)))


def _protocol_problems(handler: object) -> list[str]:
    """Every member of the Handler protocol *handler* lacks or has with the wrong type."""
    problems: list[str] = []
    file_type = getattr(handler, "file_type", None)
    if file_type is None:
        problems.append("file_type")
    elif not isinstance(file_type, str) or not file_type:
        problems.append(f"file_type (must be a non-empty str, got {file_type!r})")
    suffixes = getattr(handler, "suffixes", None)
    if suffixes is None:
        problems.append("suffixes")
    elif (
        isinstance(suffixes, str)
        or not isinstance(suffixes, Sequence)
        or not all(isinstance(s, str) and s for s in suffixes)
    ):
        problems.append(f"suffixes (must be a sequence of non-empty str, got {suffixes!r})")
    for name in _METHODS:
        member = getattr(handler, name, None)
        if member is None:
            problems.append(f"{name}()")
        elif not callable(member):
            problems.append(f"{name}() (not callable: {member!r})")
    return problems


@final
@attrs.define
class HandlerRegistry:
    """Handlers by file type, and the suffixes they claim for discovery.

    Iterating yields the handlers in registration order; ``in`` accepts a file type or a
    handler; ``len`` counts handlers.
    """

    _by_type: dict[str, Handler] = attrs.field(factory=dict, init=False)
    _by_suffix: dict[str, str] = attrs.field(factory=dict, init=False)

    def register(self, handler: Handler) -> None:
        """Add *handler* for its ``file_type`` and ``suffixes``.

        Args:
            handler: any object with the members of :class:`lupo_migrate.core.ports.Handler`.

        Raises:
            HandlerProtocolError: members are missing or have the wrong type; all are named.
            DuplicateHandlerError: its file type is already handled.
            DuplicateSuffixError: one of its suffixes is already claimed by another handler.
        """
        problems = _protocol_problems(handler)
        if problems:
            raise HandlerProtocolError(handler, problems)
        existing = self._by_type.get(handler.file_type)
        if existing is not None:
            raise DuplicateHandlerError(handler.file_type, existing, handler)
        suffixes = list(dict.fromkeys(s.lower() for s in handler.suffixes))
        for suffix in suffixes:
            owner = self._by_suffix.get(suffix)
            if owner is not None:
                raise DuplicateSuffixError(suffix, self._by_type[owner], handler)
        self._by_type[handler.file_type] = handler
        for suffix in suffixes:
            self._by_suffix[suffix] = handler.file_type

    def unregister(self, file_type: str) -> Handler:
        """Remove and return the handler of *file_type*, freeing its suffixes.

        Raises:
            NoHandlerError: no handler is registered for *file_type*.
        """
        handler = self.lookup(file_type)
        del self._by_type[file_type]
        self._by_suffix = {s: t for s, t in self._by_suffix.items() if t != file_type}
        return handler

    def lookup(self, file_type: str) -> Handler:
        """The handler of *file_type*.

        Raises:
            InvalidArgumentError: *file_type* is not a str.
            NoHandlerError: none is registered; the message lists the registered types.
        """
        if not isinstance(file_type, str):
            raise InvalidArgumentError(f"a file type is a str, got {file_type!r}.")
        try:
            return self._by_type[file_type]
        except KeyError:
            raise NoHandlerError(f"file type {file_type!r}", list(self._by_type)) from None

    def for_path(self, relpath: str) -> Handler:
        """The handler claiming *relpath*: the one with the longest suffix its name ends with.

        Args:
            relpath: a path relative to the migrations root, POSIX separators. Only the file
                name is matched, so dots in directory names do not count.

        Raises:
            InvalidArgumentError: *relpath* is not a str.
            NoHandlerError: no registered suffix matches; the message lists the suffixes.
        """
        if not isinstance(relpath, str):
            raise InvalidArgumentError(f"a path is a str, got {relpath!r}.")
        name = basename(relpath).lower()
        best: str | None = None
        for suffix in self._by_suffix:
            if name.endswith(suffix) and (best is None or len(suffix) > len(best)):
                best = suffix
        if best is None:
            dot = name.rfind(".")
            shown = f"suffix {name[dot:]!r}" if dot > 0 else "no suffix"
            raise NoHandlerError(f"{relpath!r} ({shown})", list(self._by_suffix))
        return self._by_type[self._by_suffix[best]]

    def suffix_map(self) -> dict[str, str]:
        """A copy of the claimed suffixes (lower-cased), each mapped to its file type."""
        return dict(self._by_suffix)

    def file_types(self) -> tuple[str, ...]:
        """The registered file types, in registration order."""
        return tuple(self._by_type)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_type
        return any(h is item for h in self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def __iter__(self) -> Iterator[Handler]:
        return iter(list(self._by_type.values()))
