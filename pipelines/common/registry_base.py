"""A small name -> object registry with duplicate refusal, suggestions and import-path lookup."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from pipelines.common.imports import import_attribute, is_import_path
from pipelines.common.problems import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds named objects of one kind (reward factories, combination functions, nodes...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice; rename one of them")
        self._items[name] = item
        return item

    def replace(self, name: str, item: T) -> T:
        """Put ``item`` in place of what ``name`` holds (an updated record of the same thing); KeyError if
        ``name`` is not registered."""
        if name not in self._items:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item)
        return wrap

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        """Look up ``name``, or import ``package.module:attr``; KeyError says what exists."""
        if name in self._items:
            return self._items[name]
        if is_import_path(name):
            return import_attribute(name)   # ImportPathError (a KeyError) says what is wrong with the path
        raise KeyError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                       f"registered: {', '.join(sorted(self._items)) or '(none)'}")

    def __contains__(self, name: str) -> bool:
        return name in self._items
