"""A small thread-safe LRU of finished answers (bytes), one per loaded version, bounded in bytes.

Anyone may ask for anything, so the bound is on memory, not entries: each entry counts its
answer's bytes, its key's text and ENTRY_OVERHEAD for the Python objects around them. Answers for
more than `max_k` items are not kept: they are large, rarely asked for twice, and a flood of them
would push the small common answers out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

ENTRY_OVERHEAD = 200  # bytes: the dict slot, the key tuple and the bytes object's header, roughly
DEFAULT_MAX_K = 100


class AnswerCache:
    def __init__(self, max_bytes: int, max_k: int = DEFAULT_MAX_K) -> None:
        self.max_bytes = max_bytes
        self.max_k = max_k
        self.nbytes = 0  # what the entries count, at most max_bytes
        self._data: OrderedDict[Hashable, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: bytes, *, k: int) -> None:
        """Keep `value` (an answer for `k` items) unless k is above max_k or it alone would not fit."""
        size = len(value) + len(repr(key)) + ENTRY_OVERHEAD
        if k > self.max_k or size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._data[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self.nbytes -= dropped

    def __len__(self) -> int:
        return len(self._data)
