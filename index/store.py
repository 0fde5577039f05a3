"""The versioned index store (DESIGN.md "Index store").

Layout:
- `versions/<id>/`: `index.faiss`, `items.parquet`, `vectors.npy`, optional `neighbours.npy` and
  `neighbour_scores.npy`, and `meta.json` (which records a SHA-256 of every other file).
  A version is written under `versions/.tmp-<id>/` and renamed when complete; it is never
  modified afterwards.
- `CURRENT`: the id of the serving version, replaced atomically (temporary file, os.replace).
- `HISTORY`: the ids published so far, oldest first, which `rollback` walks back through.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from index.errors import IndexLoadError, InputError

VERSIONS = "versions"
CURRENT = "CURRENT"
HISTORY = "HISTORY"
META = "meta.json"
DEFAULT_KEEP = 5


def new_version_id() -> str:
    """Sortable by creation time; the random tail keeps two builds in one second apart."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read_meta(version_dir: Path) -> dict[str, Any]:
    path = version_dir / META
    if not path.is_file():
        raise IndexLoadError(f"{path}: missing; {version_dir.name} is not a complete index version")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexLoadError(f"{path}: not valid JSON ({exc})") from None


def verify_checksums(version_dir: Path, meta: dict[str, Any]) -> None:
    """IndexLoadError naming the first file that is missing or whose SHA-256 differs from meta.json."""
    checksums = meta.get("checksums") or {}
    if not checksums:
        raise IndexLoadError(f"{version_dir / META}: no checksums recorded")
    for name, expected in sorted(checksums.items()):
        path = version_dir / name
        if not path.is_file():
            raise IndexLoadError(f"{path}: missing from index version {version_dir.name}")
        actual = sha256_file(path)
        if actual != expected:
            raise IndexLoadError(
                f"{path}: checksum mismatch (meta.json records sha256 {expected[:12]}..., the file has "
                f"{actual[:12]}...); the file is corrupt, so version {version_dir.name} cannot be served"
            )


class IndexStore:
    """A folder of index versions with one published as CURRENT."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------------
    def current_version(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        return path.read_text().strip() or None

    def version_ids(self) -> list[str]:
        """Complete versions (those with meta.json), oldest first (ids sort by creation time)."""
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / META).is_file())

    def versions(self) -> list[dict[str, Any]]:
        """meta.json of each complete version, oldest first."""
        return [read_meta(self.version_dir(v)) for v in self.version_ids()]

    def version_dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise InputError(f"{version!r} is not an index version id")
        return self.root / VERSIONS / version

    def history(self) -> list[str]:
        path = self.root / HISTORY
        return path.read_text().split() if path.is_file() else []

    # -- writing -------------------------------------------------------------------------------
    def staging_dir(self, version: str) -> Path:
        path = self.root / VERSIONS / f".tmp-{version}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def commit(self, staging: Path, version: str) -> Path:
        """Make a fully written staging folder a version (one rename)."""
        final = self.version_dir(version)
        os.rename(staging, final)
        return final

    def publish(self, version: str) -> None:
        """Verify the version's files, then switch CURRENT to it atomically."""
        vdir = self.version_dir(version)
        if not (vdir / META).is_file():
            known = ", ".join(self.version_ids()) or "none"
            raise InputError(f"no complete index version {version!r} in {self.root} (versions: {known})")
        verify_checksums(vdir, read_meta(vdir))
        self._set_current(version)
        history = self.history()
        if not history or history[-1] != version:
            atomic_write_text(self.root / HISTORY, "\n".join(history + [version]) + "\n")

    def rollback(self) -> str:
        """Publish the version published before the current one; returns its id."""
        current = self.current_version()
        history = self.history()
        while history and history[-1] == current:
            history.pop()
        while history and not (self.version_dir(history[-1]) / META).is_file():
            history.pop()  # pruned or removed by hand
        if not history:
            raise InputError(f"{self.root}: no earlier published version to roll back to")
        previous = history[-1]
        verify_checksums(self.version_dir(previous), read_meta(self.version_dir(previous)))
        self._set_current(previous)
        atomic_write_text(self.root / HISTORY, "\n".join(history) + "\n")
        return previous

    def prune(self, keep: int = DEFAULT_KEEP) -> list[str]:
        """Delete the oldest versions beyond `keep`, never CURRENT nor the rollback target."""
        protected = {self.current_version()}
        history = [v for v in self.history() if v != self.current_version()]
        if history:
            protected.add(history[-1])
        ids = self.version_ids()
        removed = []
        for version in ids[: max(0, len(ids) - keep)]:
            if version not in protected:
                shutil.rmtree(self.version_dir(version))
                removed.append(version)
        return removed

    def _set_current(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / CURRENT, version + "\n")


def load_version(store: str | Path, version: str | None = None, verify: bool = True,
                 mmap: bool | None = None):  # -> LoadedIndex (imported late: loaded imports store)
    """Load a version (None: CURRENT) for serving; IndexLoadError with a clear message otherwise.

    Checksums are verified first, so a corrupt file never replaces a serving index. Indexes over
    MMAP_MIN_BYTES are memory-mapped (mmap=None decides by size). FAISS search threads are set to
    `threads.search_threads()` (1 by default; see index/threads.py).
    """
    from index.loaded import LoadedIndex

    st = IndexStore(store)
    if version is None:
        version = st.current_version()
        if version is None:
            raise IndexLoadError(f"{st.root}: no {CURRENT} file; nothing published yet")
    try:
        vdir = st.version_dir(version)
    except InputError as exc:
        raise IndexLoadError(str(exc)) from None
    if not vdir.is_dir():
        raise IndexLoadError(f"{vdir}: no such index version in {st.root}")
    meta = read_meta(vdir)
    if verify:
        verify_checksums(vdir, meta)
    return LoadedIndex.open(vdir, meta, mmap=mmap)
