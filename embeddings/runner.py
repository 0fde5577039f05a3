"""The batch embed runner: a catalogue in, an embedding set out, resumable slice by slice.

The catalogue is cut into fixed slices of `part_size` rows; slice N becomes `part-N.parquet` once
all its items are done. A rerun with the same catalogue and model into the same folder skips the
finished slices, so a crash (kill -9 included) loses at most the slice in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from embeddings import embedding_set as es
from embeddings.backbones import Backbone
from embeddings.engines import make_embedder
from embeddings.errors import ImageError, InputError
from embeddings.gpu_decode import TensorPreprocess, decode_jpegs
from embeddings.images import decode_image
from embeddings.loader import CatalogImages, LoadedBatch, collate, worker_init
from embeddings.preprocess import draft_size

log = logging.getLogger(__name__)


class EmbedFailed(Exception):
    """The run finished but too many items failed: the set is left unmarked (no manifest)."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class EmbedOptions:
    batch_size: int = 32
    workers: int | None = None  # None: one decoding process per core beyond the first
    device: str = "auto"
    part_size: int = 2048
    max_failure_rate: float = 0.05
    previous: Path | None = None
    draft_decode: bool = True  # JPEG DCT-scaled decoding when the image is much larger than needed
    http_timeout: float = 10.0  # seconds, for connecting and for each read
    compile: bool = False  # torch.compile the model (torch runtime; pays off on long GPU runs)
    gpu_decode: bool | None = None  # JPEGs decoded by nvJPEG on the model's device; None: on CUDA only
    progress: bool = True


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores - 1)) if cores > 1 else 0


def catalog_fingerprint(catalog: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for item_id, image in zip(catalog["item_id"], catalog["image"]):
        digest.update(f"{item_id}\t{image}\n".encode())
    return digest.hexdigest()[:16]


def _previous_vectors(previous: Path | None, model_id: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """item_id -> sha and item_id -> vector from a previous set made by the same model."""
    if previous is None:
        return {}, {}
    old = es.read_embedding_set(previous)
    if old.model_id != model_id:
        log.warning("--previous %s was made by model %s, not %s: nothing reused", previous, old.model_id,
                    model_id)
        return {}, {}
    shas = dict(zip(old.item_ids.tolist(), old.image_sha256.tolist()))
    vectors = dict(zip(old.item_ids.tolist(), old.vectors))
    return shas, vectors


def _check_run_marker(out_dir: Path, marker: dict[str, Any]) -> None:
    """Refuse to mix two different runs in one folder; resume only the same one."""
    path = out_dir / es.WORK_DIR / "run.json"
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != marker:
            raise InputError(
                f"{out_dir}: holds an unfinished run of another catalogue or model "
                f"(catalogue {existing.get('catalog')}, model {existing.get('model_id')}); "
                "choose another --out or delete the folder"
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        es.atomic_write_json(marker, path)


class _PartBuffer:
    """Results of one slice, gathered in catalogue order until the slice is complete."""

    def __init__(self, rows: range) -> None:
        self.rows = rows
        self.vectors: dict[int, np.ndarray] = {}
        self.shas: dict[int, str] = {}
        self.failures: list[dict[str, str]] = []
        self.stats = {"computed": 0, "reused": 0, "failed": 0}
        self.seen = 0

    @property
    def complete(self) -> bool:
        return self.seen == len(self.rows)


def embed_catalog(
    catalog: pd.DataFrame,
    out_dir: Path,
    backbone: Backbone,
    options: EmbedOptions | None = None,
    *,
    source: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed every catalogue item into `out_dir` and return the run report.

    Raises `EmbedFailed` (with the report) when more than `max_failure_rate` of items failed.
    """
    options = options or EmbedOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    embedder = make_embedder(backbone, options.device, compile=options.compile)
    preprocessing = {**backbone.preprocessing, "jpeg_draft": options.draft_decode}
    marker = {"catalog": catalog_fingerprint(catalog), "model_id": backbone.model_id,
              "part_size": options.part_size, "preprocessing": preprocessing}
    manifest_path = out_dir / es.MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        same_run = manifest.get("catalog_fingerprint") == marker["catalog"]
        if same_run and manifest["model"]["id"] == backbone.model_id:
            log.info("%s is already a complete set of this catalogue and model", out_dir)
            return manifest
        raise InputError(f"{out_dir}: already holds a complete embedding set of another run; "
                         "choose another --out")
    _check_run_marker(out_dir, marker)
    es.atomic_write_table(pa.Table.from_pandas(catalog, preserve_index=False), out_dir / es.CATALOG)

    n = len(catalog)
    n_parts = (n + options.part_size - 1) // options.part_size
    done = es.finished_parts(out_dir)
    todo = [p for p in range(n_parts) if p not in done]
    resumed = sum(len(range(p * options.part_size, min(n, (p + 1) * options.part_size))) for p in done)
    if done:
        log.info("resuming: %d of %d parts already finished", len(done), n_parts)

    prev_shas, prev_vectors = _previous_vectors(options.previous, backbone.model_id)
    device = getattr(embedder, "device", torch.device("cpu"))
    gpu_decode = options.gpu_decode if options.gpu_decode is not None else device.type == "cuda"
    preprocess = TensorPreprocess(backbone.data_config, device) if gpu_decode else None
    dataset = CatalogImages(
        catalog["image"].tolist(),
        catalog["item_id"].tolist(),
        embedder.transform,
        reusable=prev_shas,
        draft_size=draft_size(backbone.data_config) if options.draft_decode else None,
        http_timeout=options.http_timeout,
        defer_jpeg=gpu_decode,
    )
    size = options.part_size
    buffers = {p: _PartBuffer(range(p * size, min(n, (p + 1) * size))) for p in todo}
    batches = [list(buf.rows[i:i + options.batch_size])
               for buf in buffers.values() for i in range(0, len(buf.rows), options.batch_size)]
    workers = default_workers() if options.workers is None else options.workers
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    seconds = {"read": 0.0, "decode": 0.0, "model": 0.0, "write": 0.0}
    item_ids = catalog["item_id"].tolist()
    images = catalog["image"].tolist()
    bar = tqdm(total=n, initial=resumed, unit="img", desc="embed", disable=not options.progress)
    for batch in loader:
        part = batch.rows[0] // options.part_size
        buf = buffers[part]
        seconds["read"] += batch.seconds["read"]
        seconds["decode"] += batch.seconds["decode"]
        tick = time.perf_counter()
        if batch.jpegs:
            _decode_deferred(batch, preprocess, embedder.transform)
            seconds["decode"] += time.perf_counter() - tick
            tick = time.perf_counter()
        vectors = embedder.embed_tensors(batch.pixels) if batch.pixels is not None else None
        seconds["model"] += time.perf_counter() - tick
        _collect(buf, batch, vectors, prev_vectors, item_ids, images)
        bar.update(len(batch.rows))
        if on_progress:
            on_progress(len(batch.rows))
        if buf.complete:
            tick = time.perf_counter()
            _write_part(out_dir, part, buf, item_ids, embedder.dim)
            seconds["write"] += time.perf_counter() - tick
            del buffers[part]
    bar.close()
    return _finish(out_dir, catalog, backbone, options, preprocessing, marker, seconds, started, source)


def _decode_deferred(batch: LoadedBatch, preprocess: TensorPreprocess, transform: Callable) -> None:
    """Decode the batch's deferred JPEGs on the device and merge them, in row order, with the rest.

    A JPEG that nvJPEG refuses is decoded on the CPU instead; one that nothing can read fails.
    """
    decoded = iter(zip(batch.jpegs, decode_jpegs(batch.jpegs, preprocess)))
    ready = iter(batch.pixels if batch.pixels is not None else [])
    tensors = []
    for i, status in enumerate(batch.status):
        if status == "ok":
            tensors.append(next(ready).to(preprocess.device))
        elif status == "jpeg":
            blob, tensor = next(decoded)
            if tensor is None:
                try:
                    tensor = transform(decode_image(blob)).to(preprocess.device)
                except ImageError as exc:
                    batch.status[i], batch.errors[i] = "failed", (exc.error_type, exc.message)
                    continue
            batch.status[i] = "ok"
            tensors.append(tensor)
    batch.pixels = torch.stack(tensors) if tensors else None
    batch.jpegs = []


def _collect(buf: _PartBuffer, batch: LoadedBatch, vectors: np.ndarray | None,
             prev_vectors: dict[str, np.ndarray], item_ids: list[str], images: list[str]) -> None:
    ok = 0
    for row, sha, status, error in zip(batch.rows, batch.shas, batch.status, batch.errors):
        buf.seen += 1
        if status == "ok":
            buf.vectors[row] = vectors[ok]
            buf.shas[row] = sha
            buf.stats["computed"] += 1
            ok += 1
        elif status == "reused":
            buf.vectors[row] = prev_vectors[item_ids[row]]
            buf.shas[row] = sha
            buf.stats["reused"] += 1
        else:
            error_type, message = error
            buf.failures.append({"item_id": item_ids[row], "image": images[row],
                                 "error_type": error_type, "message": message})
            buf.stats["failed"] += 1


def _write_part(out_dir: Path, part: int, buf: _PartBuffer, item_ids: list[str], dim: int) -> None:
    rows = [row for row in buf.rows if row in buf.vectors]
    vectors = np.stack([buf.vectors[row] for row in rows]) if rows else np.zeros((0, dim), np.float32)
    es.write_part(out_dir, part, [item_ids[r] for r in rows], vectors.astype(np.float32),
                  [buf.shas[r] for r in rows], buf.failures, buf.stats)


def _finish(out_dir: Path, catalog: pd.DataFrame, backbone: Backbone, options: EmbedOptions,
            preprocessing: dict[str, Any], marker: dict[str, Any], seconds: dict[str, float],
            started: float, source: str) -> dict[str, Any]:
    stats = es.finished_parts(out_dir)
    counts = {"total": len(catalog), "computed": 0, "reused": 0, "failed": 0}
    for part_stats in stats.values():
        for key in ("computed", "reused", "failed"):
            counts[key] += int(part_stats.get(key, 0))
    es.merge_failures(out_dir)
    elapsed = time.perf_counter() - started
    failure_rate = counts["failed"] / max(1, counts["total"])
    report = {
        "format": "recsys-embedding-set/1",
        "model": {"spec": backbone.spec, "arch": backbone.arch, "id": backbone.model_id,
                  "pretrained": bool(backbone.extra.get("pretrained", True))},
        "runtime": "onnx" if backbone.extra.get("onnx_path") else "torch",
        "preprocessing": preprocessing,
        "dim": backbone.dim,
        "dtype": "float32",
        "counts": counts,
        "failure_rate": round(failure_rate, 6),
        "timings": {
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "wall_seconds": round(elapsed, 3),
            "images_per_second": round((counts["computed"] + counts["reused"]) / max(elapsed, 1e-9), 2),
            "note": "read and decode are summed over worker processes; model and write are main-process time",
        },
        "source": source,
        "catalog_fingerprint": marker["catalog"],
        "previous": str(options.previous) if options.previous else None,
        "device": str(torch.device(options.device)) if options.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu"),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    if failure_rate > options.max_failure_rate:
        raise EmbedFailed(
            f"{counts['failed']} of {counts['total']} items failed ({failure_rate:.1%}, over the "
            f"{options.max_failure_rate:.1%} limit); see {out_dir / es.FAILURES}", report)
    es.atomic_write_json(report, out_dir / es.MANIFEST)
    return report
