"""The in-memory store's undo log: containers that record how to undo each write.

A transaction of `MemoryStore` costs what it writes, not what the store
holds: while a `Journal` is open, every write to a `JournaledDict` or a
`JournaledList` appends how to put back what it replaced; a rollback plays
those entries backwards, a commit drops them. Only the writes the store
makes are offered; the others raise, so that no write escapes the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, SupportsIndex, TypeVar

__all__ = ["Journal", "JournaledDict", "JournaledList"]

_K = TypeVar("_K")
_V = TypeVar("_V")

_MISSING: Any = object()


class Journal:
    """The undo entries of the open transaction; `None` outside one (nothing is recorded)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] | None = None

    def open(self) -> None:
        self.entries = []

    def commit(self) -> None:
        self.entries = None

    def rollback(self) -> None:
        """Undo every write of the transaction, newest first."""
        entries, self.entries = self.entries or [], None
        for container, key, old in reversed(entries):
            if isinstance(container, list):
                if key is None:  # an append: cut back to the length before it
                    list.__delitem__(container, slice(old, None))
                else:
                    list.__setitem__(container, key, old)
            elif old is _MISSING:
                dict.__delitem__(container, key)
            else:
                dict.__setitem__(container, key, old)


class JournaledDict(dict[_K, _V]):
    """A dict whose item writes are undone by its journal's rollback."""

    __slots__ = ("_journal",)

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def __setitem__(self, key: _K, value: _V) -> None:
        if self._journal.entries is not None:
            self._journal.entries.append((self, key, self.get(key, _MISSING)))
        super().__setitem__(key, value)

    def __delitem__(self, key: _K) -> None:
        if self._journal.entries is not None:
            self._journal.entries.append((self, key, self[key]))
        super().__delitem__(key)

    def update(self, other: Mapping[_K, _V], /) -> None:  # type: ignore[override]
        for key, value in other.items():
            self[key] = value

    def pop(self, *_: Any) -> NoReturn:
        _refuse("pop")

    def popitem(self) -> NoReturn:
        _refuse("popitem")

    def setdefault(self, *_: Any) -> NoReturn:
        _refuse("setdefault")

    def clear(self) -> NoReturn:
        _refuse("clear")

    def __ior__(self, _: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("|=")


class JournaledList(list[_V]):
    """A list written only by `append` and item assignment, each undone by a rollback."""

    __slots__ = ("_journal",)

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def append(self, value: _V) -> None:
        if self._journal.entries is not None:
            self._journal.entries.append((self, None, len(self)))
        super().append(value)

    def __setitem__(self, index: Any, value: Any) -> None:
        if not isinstance(index, SupportsIndex):
            _refuse("slice assignment")
        if self._journal.entries is not None:
            self._journal.entries.append((self, index.__index__() % len(self), self[index]))
        super().__setitem__(index, value)

    def __delitem__(self, _: Any) -> NoReturn:
        _refuse("del")

    def extend(self, _: Iterable[_V]) -> NoReturn:
        _refuse("extend")

    def insert(self, *_: Any) -> NoReturn:
        _refuse("insert")

    def pop(self, *_: Any) -> NoReturn:
        _refuse("pop")

    def remove(self, _: _V) -> NoReturn:
        _refuse("remove")

    def clear(self) -> NoReturn:
        _refuse("clear")

    def sort(self, *_: Any, **__: Any) -> NoReturn:
        _refuse("sort")

    def reverse(self) -> NoReturn:
        _refuse("reverse")

    def __iadd__(self, _: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("+=")

    def __imul__(self, _: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("*=")


def _refuse(operation: str) -> NoReturn:
    raise TypeError(f"{operation} is not journaled: the in-memory store could not undo it")
