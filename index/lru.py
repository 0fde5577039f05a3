"""A small thread-safe LRU map: the per-version caches of masks, bitmaps and FAISS selectors
(index/loaded.py, recsys/filters.py, recsys/answers.py) keep their newest entries this way."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
MISSING = object()  # what `get` returns for an absent key (a cached value may itself be None)


class LockedLRU(Generic[V]):
    """At most `size` entries; `get` refreshes an entry, `put` drops the least recently used."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | object:
        with self._lock:
            if key not in self._entries:
                return MISSING
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)
