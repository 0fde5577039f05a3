"""Index stores on object storage: `s3://bucket/prefix` or any other fsspec URL (DESIGN.md).

The remote layout is the local one (index/store.py): `versions/<id>/...` with `meta.json` (the
SHA-256 of every other file), `CURRENT` and `HISTORY`. Object storage has no rename, so a version's
completeness is marked by the order of writes:

- upload (`RemoteStore.upload`): a committed local version's files first, each checked by size once
  stored (a file that the base version holds unchanged is copied server-side), `meta.json` last. A
  version without meta.json is incomplete: nothing lists, downloads or publishes it, and
  `clean_stale_uploads` deletes it once untouched for an hour (an upload that died).
- publish: `CURRENT` (one PUT; object storage replaces an object whole) is written only after the
  version's meta.json exists, then `HISTORY`. A reader that follows CURRENT never meets a partial
  version, and an upload that dies half-way leaves CURRENT naming the old one.
- download (`RemoteStore.download`): into a local cache folder that is itself a local store:
  meta.json first, then each file into `versions/.tmp-<id>.<random>/` with its SHA-256 checked
  against meta.json, and the folder renamed into place when every file is there. Loading from the
  cache is then the local store's code, unchanged (checksums, memory-mapping).

Commands work on a remote store through that cache as a mirror: `local_copy` for reading (CURRENT,
HISTORY and the asked versions brought down), `synced_store` for writing (the versions a command
adds to the mirror are uploaded afterwards and, when it published one, CURRENT moves on the
remote). Credentials and endpoint come from the fsspec backend's standard environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION` for S3).
The cache is `$RECSYS_CACHE_DIR` (default `~/.cache/recsys`), one subfolder per store URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from embeddings.files import atomic_write_text, file_sha256
from index.errors import IndexLoadError, InputError
from index.store import (
    CURRENT,
    HISTORY,
    META,
    STAGING_PREFIX,
    STALE_STAGING_SECONDS,
    VERSIONS,
    WRITER_FILE,
    IndexStore,
    claim_staging,
    read_meta,
    verify_checksums,
    versions_to_prune,
)

log = logging.getLogger(__name__)

CACHE_ENV = "RECSYS_CACHE_DIR"
# Schemes whose first path part is a bucket (or container) that must exist before anything is written.
BUCKET_SCHEMES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"}


class RemoteError(IndexLoadError):
    """The object store could not be reached or refused a request (credentials, network, access)."""


def is_url(location: object) -> bool:
    """Whether a store location names object storage (a URL other than `file://`)."""
    return (isinstance(location, str) and "://" in location
            and urlparse(location).scheme.lower() not in ("", "file"))


def parse_location(text: str) -> Path | str:
    """A store argument: a local folder as a Path (`file://` URLs too), or an object-storage URL as
    given; InputError for a URL without a bucket or with a scheme no fsspec backend knows."""
    if "://" not in text:
        return Path(text)
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.netloc:
        raise InputError(f"{text}: no bucket in the URL (expected {scheme}://bucket/prefix)")
    import fsspec

    if scheme not in fsspec.available_protocols():
        raise InputError(f"{text}: unknown URL scheme {scheme!r} (a local folder, or an fsspec URL "
                         "such as s3://bucket/prefix)")
    return text


def cache_dir_for(url: str) -> Path:
    """The default cache folder of a store URL: readable, and unique per URL."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "recsys")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", url.split("://", 1)[-1]).strip("-")[:60]
    return base / "stores" / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


class RemoteStore:
    """An index store under an fsspec URL, with a local cache (a local store folder) beside it."""

    def __init__(self, url: str, cache: str | Path | None = None) -> None:
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        try:
            self.fs, self.root = url_to_fs(self.url)
        except ImportError as exc:  # the scheme's backend (s3fs for s3://) is not installed
            raise InputError(f"{url}: {exc}") from None
        self.root = self.root.rstrip("/")
        self.cache = IndexStore(Path(cache) if cache is not None else cache_dir_for(self.url))

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r}, cache={str(self.cache.root)!r})"

    def check(self) -> RemoteStore:
        """InputError when the bucket does not exist (a typo in the URL, most likely)."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if not BUCKET_SCHEMES.intersection(protocols):
            return self
        bucket = self.root.split("/", 1)[0]
        with self._requests("checking the bucket"):
            found = self.fs.exists(bucket)
        if not found:
            raise InputError(f"{self.url}: no bucket {bucket!r} there (or no access to it)")
        return self

    # -- reading -------------------------------------------------------------------------------
    def current_version(self) -> str | None:
        data = self._read(CURRENT)
        return (data.decode().strip() or None) if data is not None else None

    def history(self) -> list[str]:
        data = self._read(HISTORY)
        return data.decode().split() if data is not None else []

    def version_ids(self) -> list[str]:
        """Complete versions (those whose meta.json is stored), oldest first."""
        self.fs.invalidate_cache()
        with self._requests("listing versions"):
            paths = self.fs.glob(self._path(VERSIONS, "*", META))
        return sorted(v for v in (PurePosixPath(p).parent.name for p in paths) if not v.startswith("."))

    def versions(self) -> list[dict[str, Any]]:
        """meta.json of each complete version, oldest first."""
        return [self.read_meta(v) for v in self.version_ids()]

    def read_meta(self, version: str) -> dict[str, Any]:
        data = self._read(VERSIONS, self._checked(version), META)
        if data is None:
            raise IndexLoadError(f"{self._url(VERSIONS, version, META)}: missing; {version} is not a "
                                 "complete index version")
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise IndexLoadError(f"{self._url(VERSIONS, version, META)}: not valid JSON ({exc})") from None

    def has_version(self, version: str) -> bool:
        return self._exists(VERSIONS, self._checked(version), META)

    # -- moving versions -------------------------------------------------------------------------
    def download(self, version: str) -> Path:
        """The version's folder in the cache, fetched and verified first unless already there.

        Every file's SHA-256 is checked against meta.json before the folder is renamed into place,
        so the cache only ever holds complete, verified versions. Concurrent downloads of one
        version into one cache are safe (the first rename wins)."""
        final = self.cache.version_dir(version)
        if (final / META).is_file():
            return final
        data = self._read(VERSIONS, version, META)
        if data is None:
            known = ", ".join(self.version_ids()) or "none"
            raise IndexLoadError(f"{self.url}: no complete index version {version!r} (versions: {known})")
        checksums = json.loads(data).get("checksums") or {}
        if not checksums:
            raise IndexLoadError(f"{self._url(VERSIONS, version, META)}: no checksums recorded")
        started = time.perf_counter()
        staging = final.with_name(f"{STAGING_PREFIX}{version}.{secrets.token_hex(3)}")
        staging.mkdir(parents=True)
        claim_staging(staging)
        try:
            for name, expected in sorted(checksums.items()):
                self._fetch(version, _inside(name, version), staging / name, expected)
            (staging / WRITER_FILE).unlink()
            (staging / META).write_bytes(data)
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / META).is_file():
                    raise  # not a concurrent download that won
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("%s: downloaded version %s (%d files) in %.1f s", self.url, version, len(checksums),
                 time.perf_counter() - started)
        return final

    def upload(self, local: IndexStore, version: str) -> None:
        """Upload a committed local version: its files (verified first), then meta.json last."""
        if self.has_version(version):
            return
        vdir = local.version_dir(version)
        meta = read_meta(vdir)
        verify_checksums(vdir, meta)
        started = time.perf_counter()
        base = meta.get("base_version")
        base_sums = {}
        if base and self.has_version(base):
            base_sums = self.read_meta(base).get("checksums") or {}
        for name, digest in sorted(meta["checksums"].items()):
            target = self._path(VERSIONS, version, name)
            with self._requests(f"uploading versions/{version}/{name}"):
                if base_sums.get(name) == digest:  # unchanged from the base: a server-side copy
                    self.fs.copy(self._path(VERSIONS, base, name), target)
                else:
                    self.fs.put_file(str(vdir / name), target)
                stored = self.fs.info(target)["size"]
            if stored != (vdir / name).stat().st_size:
                raise IndexLoadError(f"{self._url(VERSIONS, version, name)}: stored {stored} bytes, "
                                     f"the file has {(vdir / name).stat().st_size}")
        with self._requests(f"uploading versions/{version}/{META}"):
            self.fs.pipe_file(self._path(VERSIONS, version, META), (vdir / META).read_bytes())
        log.info("%s: uploaded version %s (%d files) in %.1f s", self.url, version, len(meta["checksums"]),
                 time.perf_counter() - started)

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, version: str) -> None:
        """Verify the version (downloaded into the cache, checksums checked, unless already there),
        then point CURRENT at it and append it to HISTORY."""
        if not self.has_version(version):
            known = ", ".join(self.version_ids()) or "none"
            raise InputError(f"no complete index version {version!r} in {self.url} (versions: {known})")
        self.download(version)
        self._write(CURRENT, version + "\n")
        history = self.history()
        if not history or history[-1] != version:
            self._write(HISTORY, "\n".join(history + [version]) + "\n")

    def rollback(self) -> str:
        """Publish the version published before the current one; returns its id."""
        current = self.current_version()
        history = self.history()
        while history and history[-1] == current:
            history.pop()
        while history and not self.has_version(history[-1]):
            history.pop()  # pruned or removed by hand
        if not history:
            raise InputError(f"{self.url}: no earlier published version to roll back to")
        previous = history[-1]
        self.download(previous)
        self._write(CURRENT, previous + "\n")
        self._write(HISTORY, "\n".join(history) + "\n")
        return previous

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond `keep`, never CURRENT nor the rollback target. meta.json
        goes first, so a version half deleted is an incomplete one, never a corrupt complete one."""
        removed = versions_to_prune(self.version_ids(), self.current_version(), self.history(), keep)
        for version in removed:
            with self._requests(f"deleting versions/{version}"):
                self.fs.rm(self._path(VERSIONS, version, META))
                self.fs.rm(self._path(VERSIONS, version), recursive=True)
        return removed

    def clean_stale_uploads(self, max_age: float = STALE_STAGING_SECONDS) -> list[str]:
        """Delete incomplete versions (no meta.json) whose newest object is older than `max_age`
        seconds: uploads that died. Returns their ids."""
        self.fs.invalidate_cache()
        try:
            with self._requests("listing versions"):
                folders = self.fs.ls(self._path(VERSIONS), detail=False)
        except FileNotFoundError:
            return []
        complete = set(self.version_ids())
        removed = []
        for folder in sorted(folders):
            name = PurePosixPath(folder.rstrip("/")).name
            with self._requests(f"tidying versions/{name}"):
                files = [] if name in complete else self.fs.find(folder)
                if files and time.time() - max(self.fs.modified(f).timestamp() for f in files) > max_age:
                    self.fs.rm(folder, recursive=True)
                    removed.append(name)
        if removed:
            log.info("%s: removed %d incomplete upload(s): %s", self.url, len(removed), ", ".join(removed))
        return removed

    # -- the cache as a mirror -----------------------------------------------------------------
    def mirror(self, versions: Iterable[str | None] = (None,)) -> IndexStore:
        """The cache with the remote's CURRENT and HISTORY, and `versions` (None: CURRENT) in it."""
        self.cache.root.mkdir(parents=True, exist_ok=True)
        current = self.current_version()
        for name, text in ((CURRENT, current and current + "\n"), (HISTORY, self._read(HISTORY))):
            if text is None:
                (self.cache.root / name).unlink(missing_ok=True)
            else:
                atomic_write_text(text if isinstance(text, str) else text.decode(), self.cache.root / name)
        for version in versions:
            if (version or current) is not None:
                self.download(version or current)
        return self.cache

    def push(self, local: IndexStore, new: Iterable[str], published_before: str | None,
             keep: int | None = None) -> None:
        """Upload the mirror's `new` versions; if the mirror's CURRENT moved off `published_before`,
        publish it on the remote too, then prune to `keep` versions (None: no pruning)."""
        for version in sorted(new):
            self.upload(local, version)
        current = local.current_version()
        if current is not None and current != published_before:
            self.publish(current)
            if keep is not None:
                self.prune(keep)

    # -- objects -------------------------------------------------------------------------------
    def _checked(self, version: str) -> str:
        self.cache.version_dir(version)  # InputError for what is not a version id
        return version

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _url(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    @contextmanager
    def _requests(self, what: str) -> Iterator[None]:
        """Turn the backend's failures (botocore's, OSError) into RemoteError naming the store."""
        try:
            yield
        except (FileNotFoundError, IndexLoadError, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - every backend raises its own kinds
            raise RemoteError(f"{self.url}: {what} failed ({type(exc).__name__}: {exc})") from None

    def _read(self, *parts: str) -> bytes | None:
        try:
            with self._requests(f"reading {'/'.join(parts)}"):
                return self.fs.cat_file(self._path(*parts))
        except FileNotFoundError:
            return None

    def _exists(self, *parts: str) -> bool:
        self.fs.invalidate_cache()
        with self._requests(f"looking for {'/'.join(parts)}"):
            return bool(self.fs.exists(self._path(*parts)))

    def _write(self, name: str, text: str) -> None:
        with self._requests(f"writing {name}"):
            self.fs.pipe_file(self._path(name), text.encode())

    def _fetch(self, version: str, name: str, target: Path, expected: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._requests(f"downloading versions/{version}/{name}"):
                self.fs.get_file(self._path(VERSIONS, version, name), str(target))
        except FileNotFoundError:
            raise IndexLoadError(f"{self._url(VERSIONS, version, name)}: missing from index version "
                                 f"{version}") from None
        actual = file_sha256(target)
        if actual != expected:
            raise IndexLoadError(
                f"{self._url(VERSIONS, version, name)}: checksum mismatch (meta.json records sha256 "
                f"{expected[:12]}..., the object has {actual[:12]}...); version {version} cannot be served")


def _inside(name: str, version: str) -> str:
    """A file name from a remote meta.json, refused if it would land outside the version's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise IndexLoadError(f"version {version}: meta.json names a file outside the version ({name!r})")
    return name


def open_store(location: str | Path) -> IndexStore | RemoteStore:
    """The store at `location` for listing, publishing and rolling back: local or remote."""
    return RemoteStore(str(location)).check() if is_url(location) else IndexStore(location)


def local_copy(location: str | Path, versions: Iterable[str | None] = (None,)) -> Path:
    """A local store folder to read `location` from: the folder itself, or a remote store's cache
    holding its CURRENT, HISTORY and `versions` (None: CURRENT), downloaded and verified."""
    if not is_url(location):
        return Path(location)
    remote = RemoteStore(str(location)).check()
    versions = list(versions)
    if None in versions and remote.current_version() is None:
        raise IndexLoadError(f"{remote.url}: no {CURRENT}; nothing published yet")
    return remote.mirror(versions).root


@contextmanager
def synced_store(location: str | Path, versions: Iterable[str | None] = (None,), keep: int | None = None,
                 cache: str | Path | None = None) -> Iterator[Path]:
    """A local store folder for a command that writes versions; for a remote store, its mirror.

    On leaving the block normally, the versions the block committed into the mirror are uploaded
    and, if it published one, the remote's CURRENT follows (then the remote keeps `keep` versions).
    An error in the block uploads nothing: the remote stays as it was."""
    if not is_url(location):
        yield Path(location)
        return
    remote = RemoteStore(str(location), cache).check()
    remote.clean_stale_uploads()
    local = remote.mirror(versions)
    published_before = local.current_version()
    before = set(local.version_ids())
    yield local.root
    remote.push(local, [v for v in local.version_ids() if v not in before], published_before, keep)
