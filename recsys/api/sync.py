"""Where the server's versions come from: the store folder itself, or a local cache of a store on
object storage.

`ServingState` (recsys/api/reload.py) polls `source.current()` and, for a version it has not
served, asks `source.prepare(version)` for a local store folder holding it, then loads it from
there as from any local store. A local store is its own folder. A remote store (index/remote.py)
is cached on local disk: the version is downloaded and every file's SHA-256 verified before it is
renamed into the cache, then memory-mapped from there like a local one. Each replica polls the
remote's CURRENT on its own (one small GET per interval) and swaps on its own; none needs a shared
volume. The cache keeps the version being loaded and the one being served; older ones are deleted, so
each replica needs its own cache folder (`RECSYS_CACHE_DIR`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from index.remote import RemoteStore, is_url
from index.store import IndexStore

log = logging.getLogger(__name__)


class VersionSource(Protocol):
    def current(self) -> str | None:
        """The version CURRENT names, or None (none yet, or the store briefly unreadable)."""

    def prepare(self, version: str, keep: Collection[str] = ()) -> Path:
        """A local store folder holding `version`; versions in `keep` stay available too."""


class LocalSource:
    """A store folder on this machine (or a shared volume): read in place."""

    def __init__(self, store: Path) -> None:
        self.store = Path(store)

    def current(self) -> str | None:
        try:
            return IndexStore(self.store).current_version()
        except Exception:  # noqa: BLE001 - a store being written may be briefly unreadable
            return None

    def prepare(self, version: str, keep: Collection[str] = ()) -> Path:
        return self.store


class CachedRemoteSource:
    """A store on object storage, served from a local cache of verified versions."""

    def __init__(self, url: str, cache: Path | None = None) -> None:
        self.remote = RemoteStore(url, cache)
        # Versions this replica may drop from its cache, oldest first: what it downloads, and what
        # an earlier process of it left there (a restarted container keeps its cache volume).
        self._downloaded: list[str] = self.remote.cache.version_ids()

    def current(self) -> str | None:
        try:
            return self.remote.current_version()
        except Exception as exc:  # noqa: BLE001 - the network or the service may fail for a while
            log.warning("%s: cannot read CURRENT (%s)", self.remote.url, exc)
            return None

    def prepare(self, version: str, keep: Collection[str] = ()) -> Path:
        """Download and verify `version` into the cache (unless there), then delete the other
        cached versions that are not in `keep`."""
        self.remote.download(version)
        if version not in self._downloaded:
            self._downloaded.append(version)
        for old in [v for v in self._downloaded if v != version and v not in keep]:
            shutil.rmtree(self.remote.cache.version_dir(old), ignore_errors=True)
            self._downloaded.remove(old)
            log.info("%s: dropped version %s from the cache", self.remote.url, old)
        return self.remote.cache.root


def source_for(store: Path | str, cache: Path | None = None) -> VersionSource:
    """The source of a `--store` value: a URL is cached from object storage, a path read in place."""
    return CachedRemoteSource(str(store), cache) if is_url(store) else LocalSource(Path(store))
