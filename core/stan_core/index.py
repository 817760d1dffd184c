"""Objects kept by (namespace, name), also found by namespace: the lookups that both the
operator's scheduler and the facade's caches make, the second without scanning everything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

Key = tuple[str, str]
Value = TypeVar("Value")


class NamespacedIndex(Generic[Value]):
    def __init__(self) -> None:
        self._items: dict[Key, Value] = {}
        self._by_namespace: dict[str, dict[str, Value]] = {}

    def get(self, key: Key) -> Value | None:
        return self._items.get(key)

    def keys(self) -> Iterable[Key]:
        return self._items.keys()

    def values(self) -> Iterable[Value]:
        return self._items.values()

    def in_namespace(self, namespace: str) -> Mapping[str, Value]:
        """The namespace's objects by name; a live view, to be read and not kept."""
        return self._by_namespace.get(namespace, {})

    def put(self, key: Key, value: Value) -> None:
        self._items[key] = value
        self._by_namespace.setdefault(key[0], {})[key[1]] = value

    def pop(self, key: Key) -> Value | None:
        value = self._items.pop(key, None)
        if value is not None:
            siblings = self._by_namespace[key[0]]
            del siblings[key[1]]
            if not siblings:
                del self._by_namespace[key[0]]
        return value
