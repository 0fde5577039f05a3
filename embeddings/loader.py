"""Reading and decoding catalogue images, batch by batch, ahead of the model.

Each item comes back as pixels ready for the model, or as a failure with its reason, or as
"reused" when incremental mode found the same image bytes under the same model before. A batch's
remote images are downloaded several at a time (threads: the wait is network, not CPU). Timings
of each stage travel with the batch so the run report can say where the time went.

Two ways to run it, one per runtime: `torch_batches` (a torch DataLoader with worker processes,
tensors in shared memory) and `thread_batches` (a thread pool and numpy arrays: PIL decoding and
resizing, hashing and numpy release the GIL), which imports no torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from embeddings.errors import ImageError
from embeddings.images import (
    HTTP_TIMEOUT_S,
    MAX_PIXELS,
    check_pixels,
    decode_image,
    is_jpeg,
    is_remote,
    read_image_bytes,
)

DOWNLOADS_IN_FLIGHT = 16  # per decoding worker


@dataclass
class LoadedBatch:
    """One batch as the workers hand it over; lists are aligned with `rows`."""

    rows: list[int]
    shas: list[str]
    pixels: Any  # (n_ok, 3, H, W) array or tensor for rows whose status is "ok", in order; or None
    status: list[str]  # "ok" | "reused" | "failed" | "jpeg" (bytes left for the GPU to decode)
    errors: list[tuple[str, str] | None]
    jpegs: list[bytes] = field(default_factory=list)  # for rows whose status is "jpeg", in order
    seconds: dict[str, float] = field(default_factory=dict)


def _read(ref: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[bytes | ImageError, float]:
    started = time.perf_counter()
    try:
        data: bytes | ImageError = read_image_bytes(ref, timeout=timeout)
    except ImageError as exc:
        data = exc
    return data, time.perf_counter() - started


class CatalogImages:
    """Item `i` of the catalogue: its image bytes read, hashed, decoded and transformed.

    A map-style dataset (`__len__`, `__getitem__`, `__getitems__`), as torch's DataLoader takes it.
    """

    def __init__(
        self,
        refs: list[str],
        item_ids: list[str],
        transform: Callable[[Any], Any],
        *,
        reusable: dict[str, str] | None = None,
        draft_size: tuple[int, int] | None = None,
        max_pixels: int = MAX_PIXELS,
        http_timeout: float = HTTP_TIMEOUT_S,
        defer_jpeg: bool = False,
    ) -> None:
        self.refs = refs
        self.item_ids = item_ids
        self.transform = transform
        self.reusable = reusable or {}  # item_id -> sha256 whose vector the previous set holds
        self.draft_size = draft_size
        self.max_pixels = max_pixels
        self.http_timeout = http_timeout
        self.defer_jpeg = defer_jpeg  # leave JPEG decoding to the GPU (embeddings.gpu_decode)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, row: int) -> dict[str, Any]:
        return self._process(row, *_read(self.refs[row], self.http_timeout))

    def __getitems__(self, rows: list[int]) -> list[dict[str, Any]]:
        """A whole batch; remote images are fetched concurrently."""
        refs = [self.refs[row] for row in rows]
        if len(rows) > 1 and any(is_remote(ref) for ref in refs):
            with ThreadPoolExecutor(max_workers=min(DOWNLOADS_IN_FLIGHT, len(rows))) as pool:
                reads = list(pool.map(lambda ref: _read(ref, self.http_timeout), refs))
        else:
            reads = [_read(ref, self.http_timeout) for ref in refs]
        return [self._process(row, data, seconds) for row, (data, seconds) in zip(rows, reads)]

    def _process(self, row: int, data: bytes | ImageError, read_s: float) -> dict[str, Any]:
        item: dict[str, Any] = {"row": row, "sha": "", "pixels": None, "error": None, "status": "failed",
                                "read_s": read_s}
        if isinstance(data, ImageError):
            item["error"] = (data.error_type, data.message)
            return item
        started = time.perf_counter()
        try:
            item["sha"] = hashlib.sha256(data).hexdigest()
            if self.reusable.get(self.item_ids[row]) == item["sha"]:
                item["status"] = "reused"
                return item
            if self.defer_jpeg and is_jpeg(data):
                check_pixels(data, self.max_pixels)  # the bomb guard still runs here, on the header
                item["bytes"] = data
                item["status"] = "jpeg"
            else:
                image = decode_image(data, max_pixels=self.max_pixels, draft_size=self.draft_size)
                item["pixels"] = self.transform(image)
                item["status"] = "ok"
        except ImageError as exc:
            item["error"] = (exc.error_type, exc.message)
        except Exception as exc:  # noqa: BLE001 - one hostile file must cost that item only
            item["error"] = (type(exc).__name__, str(exc)[:500])
        item["decode_s"] = time.perf_counter() - started
        return item


def collate(items: list[dict[str, Any]], stack: Callable[[list[Any]], Any] = np.stack) -> LoadedBatch:
    """One `LoadedBatch` of processed items; `stack` joins their pixels (np.stack, or torch.stack)."""
    ok = [item["pixels"] for item in items if item["status"] == "ok"]
    return LoadedBatch(
        rows=[item["row"] for item in items],
        shas=[item["sha"] for item in items],
        pixels=stack(ok) if ok else None,
        status=[item["status"] for item in items],
        errors=[item["error"] for item in items],
        jpegs=[item["bytes"] for item in items if item["status"] == "jpeg"],
        seconds={
            "read": sum(item.get("read_s", 0.0) for item in items),
            "decode": sum(item.get("decode_s", 0.0) for item in items),
        },
    )


def thread_batches(dataset: CatalogImages, batches: Iterable[list[int]], workers: int,
                   prefetch: int = 4) -> Iterator[LoadedBatch]:
    """The batches in order, each read and decoded by one of `workers` threads (none: inline).

    Up to `workers * prefetch` batches are in flight, so decoding runs ahead of the model.
    """
    def load(rows: list[int]) -> LoadedBatch:
        return collate(dataset.__getitems__(rows))

    if workers < 1:
        yield from map(load, batches)
        return
    todo = iter(batches)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending = deque(pool.submit(load, rows) for rows in islice(todo, workers * prefetch))
        try:
            while pending:
                batch = pending.popleft().result()
                pending.extend(pool.submit(load, rows) for rows in islice(todo, 1))
                yield batch
        finally:  # the consumer stopped early: drop the batches not started yet
            for future in pending:
                future.cancel()


def torch_batches(dataset: CatalogImages, batches: list[list[int]], workers: int) -> Iterable[LoadedBatch]:
    """The batches in order through a torch DataLoader: `workers` processes, tensors in shared memory."""
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=functools.partial(collate, stack=torch.stack),
        worker_init_fn=_single_threaded if workers else None,
        prefetch_factor=4 if workers else None,
    )


def _single_threaded(_: int) -> None:
    # Decoding workers are single-threaded; the cores belong to the model in the main process.
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
