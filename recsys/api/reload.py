"""Hot reload: load a new version beside the old one, then swap one reference.

Requests in flight keep the snapshot they took, so they finish on the old version; a version
that fails to load leaves the old one serving and is reported by /readyz and /metrics. The
watcher polls the store's CURRENT (a cheap read of a file, or of an object on object storage:
recsys/api/sync.py) and reloads when the name in it changes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from recsys.api.metrics import Metrics
from recsys.api.serving import Snapshot
from recsys.api.sync import source_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadFailure:
    version: str | None
    message: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "message": self.message, "at": self.at}


def settle_heap() -> None:
    """Once per swap: collect what the old version left in cycles, then freeze every object alive
    (the new version's arrays, frames and lookups) out of the cyclic collector's sight. Otherwise each
    full collection walks all of them while holding the GIL: 80 to 150 ms pauses at 100,000 items,
    every few tens of seconds under load, straight into the p99. Frozen objects are still freed by
    reference counting when the next swap drops them; the next swap's collect finds their cycles."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ServingState:
    """The snapshot being served and the reload bookkeeping around it."""

    def __init__(self, store: Path | str, metrics: Metrics, cache_bytes: int, cache_max_k: int) -> None:
        self.store = store
        self.source = source_for(store)  # the folder itself, or a cache of a store on object storage
        self.metrics = metrics
        self.cache_bytes = cache_bytes
        self.cache_max_k = cache_max_k
        self.snapshot: Snapshot | None = None
        self.last_failure: ReloadFailure | None = None
        self.reloads = 0
        # The CURRENT name last acted on, so a broken version is tried once, not every poll.
        self._seen_current: str | None = None
        self._lock = asyncio.Lock()

    async def reload(self, version: str | None = None) -> tuple[bool, str | None]:
        """Load `version` (None: CURRENT) and swap it in; returns (ok, message on failure)."""
        async with self._lock:
            current = await anyio.to_thread.run_sync(self.source.current)
            target = version or current
            self._seen_current = current
            if target is None:
                return self._failed(None, f"{self.store}: no CURRENT version to load")
            serving = (self.snapshot.version,) if self.snapshot else ()
            try:
                snapshot = await anyio.to_thread.run_sync(
                    lambda: Snapshot.load(self.source.prepare(target, serving), target, self.cache_bytes,
                                          self.cache_max_k))
            except Exception as exc:  # noqa: BLE001 - any load failure keeps the old version
                log.warning("reload of version %s failed: %s", target, exc)
                return self._failed(target, f"version {target} failed to load: {exc}")
            previous = self.snapshot
            self.snapshot = snapshot  # the swap: one reference assignment
            self.last_failure = None
            self.reloads += 1
            self.metrics.reloaded(True)
            self.metrics.served(snapshot.version, len(snapshot))
            log.info("serving version %s (was %s)", snapshot.version,
                     previous.version if previous else None)
            del previous, snapshot
            await anyio.to_thread.run_sync(settle_heap)
            return True, None

    def _failed(self, version: str | None, message: str) -> tuple[bool, str]:
        self.last_failure = ReloadFailure(version, message, time.time())
        self.metrics.reloaded(False)
        return False, message

    async def watch(self, interval_s: float) -> None:
        """Reload whenever CURRENT names a new version; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                current = await anyio.to_thread.run_sync(self.source.current)
                serving = self.snapshot.version if self.snapshot else None
                if current is not None and current != self._seen_current and current != serving:
                    await self.reload()
                elif current is not None:
                    self._seen_current = current
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad poll
                log.exception("index watcher poll failed")
