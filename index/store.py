"""The versioned index store (DESIGN.md "Index store"): reading, writing and publishing versions.

Layout:
- `versions/<id>/`: `index.faiss`, `items.parquet`, `vectors.npy`, optional `neighbours.npy` and
  `neighbour_scores.npy`, optional `behaviour/`, and `meta.json` (which records a SHA-256 of every
  other file, by its path inside the version). A version is written under `versions/.tmp-<id>/`
  and renamed when complete (`IndexStore.write_version`, the one way to write one); it is never
  modified afterwards. While staged it holds `.writer` (the writing process's pid, host and start
  time), removed at commit; `IndexStore.clean_stale_staging` deletes staging folders whose writer is
  gone (a crash), or that are old and name no writer this host can check.
- `CURRENT`: the id of the serving version, replaced atomically (temporary file, os.replace).
- `HISTORY`: the ids published so far, oldest first, which `rollback` walks back through.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embeddings import faults
from embeddings.files import atomic_write_json, atomic_write_text, file_sha256
from index.errors import IndexLoadError, InputError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

VERSIONS = "versions"
CURRENT = "CURRENT"
HISTORY = "HISTORY"
META = "meta.json"
DEFAULT_KEEP = 5
STAGING_PREFIX = ".tmp-"
WRITER_FILE = ".writer"
# A staging folder whose writer cannot be checked (none recorded, or on another host) is stale once
# untouched for this long.
STALE_STAGING_SECONDS = 3600.0
CHECKSUM_THREADS = 2  # files of a version hashed at once


def new_version_id() -> str:
    """Sortable by creation time; the random tail keeps two builds in one second apart."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def read_meta(version_dir: Path) -> dict[str, Any]:
    path = version_dir / META
    if not path.is_file():
        raise IndexLoadError(f"{path}: missing; {version_dir.name} is not a complete index version")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise IndexLoadError(f"{path}: not valid JSON ({exc})") from None
    _check_meta(meta, path)
    return meta


def _check_meta(meta: Any, path: Path, servable: bool = False) -> None:
    """meta.json's checksums (and with `servable`, the keys loading and serving rely on), each of the
    type they use; IndexLoadError naming the key."""
    def bad(key: str, want: str) -> IndexLoadError:
        return IndexLoadError(f"{path}: key {key!r} must be {want} (got {json.dumps(meta.get(key))[:80]})")

    def count(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not isinstance(meta, dict):
        raise IndexLoadError(f"{path}: must be a JSON object, not {type(meta).__name__}")
    checksums = meta.get("checksums", {})
    if not isinstance(checksums, dict) or not all(
            _inside(name) and isinstance(digest, str) for name, digest in checksums.items()):
        raise bad("checksums", "an object of file paths inside the version and their SHA-256")
    if not servable:
        return
    if not isinstance(meta.get("version"), str) or not meta["version"]:
        raise bad("version", "the version id")
    if not count(meta.get("dim"), 1):
        raise bad("dim", "a positive integer")
    if not count(meta.get("count"), 0):
        raise bad("count", "a non-negative integer")
    search = meta.get("search", {})
    if not isinstance(search, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in search.values()):
        raise bad("search", "an object of FAISS search parameters and their numbers")
    if not isinstance(meta.get("factory", ""), str):
        raise bad("factory", "a FAISS factory string")


def _inside(name: Any) -> bool:
    """A relative path that stays inside the version folder."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return False
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts


def verify_checksums(version_dir: Path, meta: dict[str, Any]) -> None:
    """IndexLoadError naming the first file that is missing or whose SHA-256 differs from meta.json."""
    ChecksumCheck(version_dir, meta).wait()


class ChecksumCheck:
    """A version's files hashed in background threads against meta.json, largest first.

    hashlib releases the GIL while it hashes, so the files are hashed side by side, and beside the
    thread that loads the version: `load_version` reads each file as soon as its own check has
    passed (`wait(name)`) while the larger ones are still being read. `wait()` waits for every file
    and raises for the first bad one in name order, as a check one file after the other would.
    """

    def __init__(self, version_dir: Path, meta: dict[str, Any], threads: int = CHECKSUM_THREADS) -> None:
        checksums = meta.get("checksums") or {}
        if not checksums:
            raise IndexLoadError(f"{version_dir / META}: no checksums recorded")
        self.version_dir = version_dir
        self.expected: dict[str, str] = dict(checksums)
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="checksum")
        order = sorted(self.expected, key=lambda name: -_size(version_dir / name))
        self._results: dict[str, Future[str | None]] = {
            name: pool.submit(self._check, name) for name in order}
        pool.shutdown(wait=False)  # its threads end once the queued files are done

    def _check(self, name: str) -> str | None:
        """Why the file fails its check, or None when it passes."""
        path = self.version_dir / name
        if not path.is_file():
            return f"{path}: missing from index version {self.version_dir.name}"
        actual, expected = file_sha256(path), self.expected[name]
        if actual != expected:
            return (f"{path}: checksum mismatch (meta.json records sha256 {expected[:12]}..., the file has "
                    f"{actual[:12]}...); the file is corrupt, so version {self.version_dir.name} cannot be "
                    "served")
        return None

    def wait(self, name: str | None = None) -> None:
        """Block until the file `name` (None: every file) has passed its check; IndexLoadError when it
        has not. A file meta.json records no checksum for has nothing to wait for."""
        names = sorted(self._results) if name is None else [name]
        try:
            for each in names:
                result = self._results.get(each)
                if result is not None and (problem := result.result()) is not None:
                    raise IndexLoadError(problem)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Drop the checks not yet started (a load that failed needs none of them)."""
        for result in self._results.values():
            result.cancel()


# version folder -> its checks started ahead of its load (`prefetch_checksums`), used once
_prefetched: dict[Path, ChecksumCheck] = {}


def prefetch_checksums(store: str | Path, version: str | None = None) -> None:
    """Start hashing a version's files now (None: the one CURRENT names), for this process's next
    `load_version` of it: a server starting up hashes its index while it imports the rest of itself.
    A store or version that cannot be read is left for the load to report."""
    try:
        st = IndexStore(store)
        vdir = st.version_dir(version or st.current_version() or "")
        _prefetched[vdir] = ChecksumCheck(vdir, read_meta(vdir))
    except Exception:  # noqa: BLE001 - the load itself says what is wrong
        return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def versions_to_prune(ids: list[str], current: str | None, history: list[str], keep: int) -> list[str]:
    """The oldest of `ids` beyond `keep`, never `current` nor the rollback target (the last other
    version in `history`): what every store's prune deletes."""
    protected = {current}
    older = [v for v in history if v != current]
    if older:
        protected.add(older[-1])
    return [v for v in ids[: max(0, len(ids) - keep)] if v not in protected]


class IndexStore:
    """A folder of index versions with one published as CURRENT."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------------
    def current_version(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except UnicodeDecodeError:
            raise IndexLoadError(f"{path}: not a version id (not text)") from None

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
        try:
            return path.read_text(encoding="utf-8").split() if path.is_file() else []
        except UnicodeDecodeError:
            raise IndexLoadError(f"{path}: not a list of version ids (not text)") from None

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write_version(self, base: str | None = None,
                      without: Collection[str] = ()) -> Iterator[VersionWriter]:
        """Stage a new version: the block writes its files under `writer.path` and calls `writer.commit`.

        With `base`, the new version is derived from that version: every file of the base that the
        block does not write is hard-linked in at commit (except those under the paths in
        `without`), and meta.json starts from the base's. An error in the block, or leaving it
        without committing, removes the staging folder and leaves no version behind. Publishing is
        the caller's.
        """
        writer = VersionWriter(self, base, without)
        try:
            yield writer
        finally:
            if not writer.committed:
                shutil.rmtree(writer.path, ignore_errors=True)

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
            atomic_write_text("\n".join(history + [version]) + "\n", self.root / HISTORY)

    def rollback(self) -> str:
        """Publish the version published before the current one; returns its id."""
        current = self.current_version()
        history = self.history()
        while history and history[-1] == current:
            history.pop()
        while history and not self._complete(history[-1]):
            history.pop()  # pruned or removed by hand (or not a version id at all)
        if not history:
            raise InputError(f"{self.root}: no earlier published version to roll back to")
        previous = history[-1]
        verify_checksums(self.version_dir(previous), read_meta(self.version_dir(previous)))
        self._set_current(previous)
        atomic_write_text("\n".join(history) + "\n", self.root / HISTORY)
        return previous

    def prune(self, keep: int = DEFAULT_KEEP) -> list[str]:
        """Delete the oldest versions beyond `keep`, never CURRENT nor the rollback target."""
        removed = versions_to_prune(self.version_ids(), self.current_version(), self.history(), keep)
        for version in removed:
            shutil.rmtree(self.version_dir(version))
        return removed

    def clean_stale_staging(self, max_age: float = STALE_STAGING_SECONDS) -> list[str]:
        """Delete the staging folders (`versions/.tmp-*`) no live writer holds; returns their names.

        A folder whose `.writer` names a process of this host that is gone (or whose pid now belongs
        to a later process) is deleted; one whose writer cannot be checked (no `.writer`, another
        host) is deleted once untouched for `max_age` seconds. A live writer's folder is kept.
        """
        base = self.root / VERSIONS
        removed = []
        for folder in sorted(base.glob(STAGING_PREFIX + "*")) if base.is_dir() else []:
            if folder.is_dir() and _staging_is_stale(folder, max_age):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        if removed:
            log.info("%s: removed %d stale staging folder(s): %s", self.root, len(removed),
                     ", ".join(removed))
        return removed

    def _complete(self, version: str) -> bool:
        try:
            return (self.version_dir(version) / META).is_file()
        except InputError:
            return False

    def _set_current(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(version + "\n", self.root / CURRENT)


class VersionWriter:
    """One version being written in its staging folder; `IndexStore.write_version` hands it out."""

    def __init__(self, store: IndexStore, base: str | None, without: Collection[str]) -> None:
        self.version = new_version_id()
        self.final = store.version_dir(self.version)
        self.path = self.final.with_name(f"{STAGING_PREFIX}{self.version}")
        self.base = base
        self.base_dir = store.version_dir(base) if base is not None else None
        self.base_meta = read_meta(self.base_dir) if self.base_dir is not None else {}
        self.without = {Path(name) for name in without}
        self.committed = False
        self.path.mkdir(parents=True, exist_ok=False)
        claim_staging(self.path)

    def file(self, name: str) -> Path:
        """Where the version's file `name` (a path inside the version) is written; its folder exists."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        faults.point(f"version-file:{name}")
        return path

    def commit(self, fields: Mapping[str, Any]) -> Path:
        """Link the base's remaining files, write meta.json, and rename the folder into versions/.

        meta.json holds the base's fields (for a derived version), then `fields`, then `version`,
        `created_at`, `base_version` (for a derived version) and the SHA-256 of every file. A linked
        file keeps the checksum the base recorded, so a base file corrupted since is still caught.
        """
        linked = self._link_base()
        recorded = self.base_meta.get("checksums") or {}
        meta = {key: value for key, value in self.base_meta.items() if key != "checksums"}
        meta.update(fields)
        meta.update(version=self.version, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if self.base is not None:
            meta["base_version"] = self.base
        meta["checksums"] = {
            name: recorded[name] if name in linked and name in recorded else file_sha256(self.path / name)
            for name in self._files()
        }
        atomic_write_json(meta, self.path / META)
        faults.point("version:commit")
        os.rename(self.path, self.final)
        self.committed = True
        # Removed only now: a writer killed before the rename leaves a staging folder that names it.
        (self.final / WRITER_FILE).unlink(missing_ok=True)
        return self.final

    def _files(self) -> list[str]:
        """Every file of the version but meta.json, by its path inside the version."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and p not in (self.path / META, self.path / WRITER_FILE))

    def _link_base(self) -> set[str]:
        if self.base_dir is None:
            return set()
        linked = set()
        for src in sorted(self.base_dir.rglob("*")):
            rel = src.relative_to(self.base_dir)
            dst = self.path / rel
            if (not src.is_file() or rel == Path(META) or dst.exists()
                    or any(part in self.without for part in (rel, *rel.parents))):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system, or one without hard links
                shutil.copy2(src, dst)
            linked.add(str(rel))
        return linked


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim_staging(folder: Path) -> None:
    """Mark a staging folder as this process's (its `.writer`), for `IndexStore.clean_stale_staging`."""
    (folder / WRITER_FILE).write_text(_writer_tag(os.getpid()))


def _writer_tag(pid: int) -> str:
    return f"{pid} {socket.gethostname()} {_process_start(pid) or '-'}\n"


def _staging_is_stale(folder: Path, max_age: float) -> bool:
    try:
        pid_text, host, start = (folder / WRITER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        pid, host, start = None, None, None
    if pid is not None and host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # the writer is gone
        except PermissionError:
            pass  # alive, another user's
        return start != "-" and _process_start(pid) not in (None, start)  # the pid was reused
    try:
        return time.time() - folder.stat().st_mtime > max_age
    except OSError:
        return False


def load_version(store: str | Path, version: str | None = None, verify: bool = True,
                 mmap: bool | None = None) -> LoadedIndex:
    """Load a version (None: CURRENT) for serving; IndexLoadError with a clear message otherwise.

    Checksums are verified first, so a corrupt file never replaces a serving index: each file is
    read once its own checksum has passed, while the others are still being hashed
    (`ChecksumCheck`), and nothing is returned before every file has passed. Indexes of
    MMAP_MIN_BYTES and more are memory-mapped read-only (mmap=None decides by size; pass False to
    modify the index). FAISS
    search threads are set to `threads.search_threads()` (1 by default; see index/threads.py).
    """
    from index.loaded import LoadedIndex  # here, not above: reading the store needs neither FAISS nor pandas

    st = IndexStore(store)
    if version is None:
        version = st.current_version()
        if version is None:
            raise IndexLoadError(f"{st.root}: no {CURRENT} file; nothing published yet")
    try:
        vdir = st.version_dir(version)
    except InputError as exc:
        raise IndexLoadError(f"{st.root}: {exc}") from None
    if not vdir.is_dir():
        raise IndexLoadError(f"{vdir}: no such index version in {st.root}")
    meta = read_meta(vdir)
    _check_meta(meta, vdir / META, servable=True)
    if not verify:
        return LoadedIndex.open(vdir, meta, mmap=mmap)
    check = _prefetched.pop(vdir, None)
    if check is None or check.expected != meta.get("checksums"):
        check = ChecksumCheck(vdir, meta)
    try:
        loaded = LoadedIndex.open(vdir, meta, mmap=mmap, verified=check.wait)
    except BaseException:
        check.cancel()
        raise
    check.wait()  # every other file too (behaviour/), before anything reads it
    return loaded
