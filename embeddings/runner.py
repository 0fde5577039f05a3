"""The batch embed runner: a catalogue in, an embedding set out, resumable slice by slice.

The catalogue is cut into fixed slices of `part_size` rows; slice N becomes `part-N.parquet` once
all its items are done. A rerun with the same catalogue and model into the same folder skips the
finished slices, so a crash (kill -9 included) loses at most the slices in flight.

`plan_run`, `PartWriter` and `finish_run` are shared by both engines: the local engine below
(decoding workers feeding one model on this machine) and the Ray Data engine in
`embeddings/ray_engine.py`; `embeddings.engines.embed` picks one. With an ONNX model the local
engine decodes in threads with PIL and numpy and imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from embeddings import embedding_set as es
from embeddings.backbone import Backbone
from embeddings.cores import cpu_count
from embeddings.errors import InputError
from embeddings.loader import CatalogImages, thread_batches, torch_batches
from embeddings.preprocess import draft_size
from embeddings.runtimes import make_embedder

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
    gpu_decode: bool | None = None  # torch runtime: JPEGs decoded by nvJPEG on the device; None: on CUDA
    progress: bool = True


def default_workers() -> int:
    """One decoding worker per core beyond the first (at most 8); none on one core."""
    cores = cpu_count()
    return max(1, min(8, cores - 1)) if cores > 1 else 0


def catalog_fingerprint(catalog: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for item_id, image in zip(catalog["item_id"], catalog["image"]):
        digest.update(f"{item_id}\t{image}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class RunPlan:
    """What a run has to do: which slices are left, and what the previous set can give back."""

    out_dir: Path
    catalog: pd.DataFrame
    backbone: Backbone
    options: EmbedOptions
    marker: dict[str, Any]
    todo: list[int]
    resumed_items: int
    reusable_shas: dict[str, str] = field(default_factory=dict)  # item_id -> sha256 in the previous set
    reusable_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.marker["preprocessing"]

    def slice_rows(self, part: int) -> range:
        size = self.options.part_size
        return range(part * size, min(len(self.catalog), (part + 1) * size))


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


def plan_run(catalog: pd.DataFrame, out_dir: Path, backbone: Backbone,
             options: EmbedOptions) -> RunPlan | dict[str, Any]:
    """Prepare `out_dir` for a run; returns the manifest instead when the same run is complete."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    n_parts = (len(catalog) + options.part_size - 1) // options.part_size
    done = es.finished_parts(out_dir)
    if done:
        log.info("resuming: %d of %d parts already finished", len(done), n_parts)
    shas, vectors = _previous_vectors(options.previous, backbone.model_id)
    plan = RunPlan(out_dir, catalog, backbone, options, marker, [p for p in range(n_parts) if p not in done],
                   0, shas, vectors)
    plan.resumed_items = sum(len(plan.slice_rows(p)) for p in done)
    return plan


class PartWriter:
    """Gathers per-item results (in any order) and writes each slice as soon as it is complete."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.item_ids = plan.catalog["item_id"].tolist()
        self.images = plan.catalog["image"].tolist()
        self.open: dict[int, dict[str, Any]] = {
            p: {"rows": plan.slice_rows(p), "vectors": {}, "shas": {}, "failures": [], "seen": 0,
                "stats": {"computed": 0, "reused": 0, "failed": 0}}
            for p in plan.todo
        }
        self.write_seconds = 0.0

    def add(self, rows: Sequence[int], shas: Sequence[str], status: Sequence[str],
            errors: Sequence[tuple[str, str] | None], vectors: np.ndarray | None) -> None:
        """Record a batch: `vectors` holds one row per item whose status is "ok", in order."""
        ok = 0
        touched = set()
        for row, sha, state, error in zip(rows, shas, status, errors):
            part = int(row) // self.plan.options.part_size
            slot = self.open[part]
            slot["seen"] += 1
            touched.add(part)
            if state == "ok":
                slot["vectors"][row], slot["shas"][row] = vectors[ok], sha
                slot["stats"]["computed"] += 1
                ok += 1
            elif state == "reused":
                slot["vectors"][row] = self.plan.reusable_vectors[self.item_ids[row]]
                slot["shas"][row] = sha
                slot["stats"]["reused"] += 1
            else:
                error_type, message = error
                slot["failures"].append({"item_id": self.item_ids[row], "image": self.images[row],
                                         "error_type": error_type, "message": message})
                slot["stats"]["failed"] += 1
        for part in touched:
            if self.open[part]["seen"] == len(self.open[part]["rows"]):
                self._write(part)

    def _write(self, part: int) -> None:
        tick = time.perf_counter()
        slot = self.open.pop(part)
        rows = [row for row in slot["rows"] if row in slot["vectors"]]
        dim = self.plan.backbone.dim
        vectors = np.stack([slot["vectors"][r] for r in rows]) if rows else np.zeros((0, dim), np.float32)
        es.write_part(self.plan.out_dir, part, [self.item_ids[r] for r in rows], vectors.astype(np.float32),
                      [slot["shas"][r] for r in rows], slot["failures"], slot["stats"])
        self.write_seconds += time.perf_counter() - tick

    def check_complete(self) -> None:
        if self.open:
            raise RuntimeError(f"the engine returned no results for parts {sorted(self.open)}")


def finish_run(plan: RunPlan, seconds: dict[str, float], *, device: str, source: str = "",
               engine: str = "local") -> dict[str, Any]:
    """Count every part, merge failures, apply the failure policy and write the manifest last."""
    options, backbone = plan.options, plan.backbone
    counts = {"total": len(plan.catalog), "computed": 0, "reused": 0, "failed": 0}
    for part_stats in es.finished_parts(plan.out_dir).values():
        for key in ("computed", "reused", "failed"):
            counts[key] += int(part_stats.get(key, 0))
    es.merge_failures(plan.out_dir)
    elapsed = time.perf_counter() - plan.started
    failure_rate = counts["failed"] / max(1, counts["total"])
    done_now = counts["computed"] + counts["reused"] + counts["failed"] - plan.resumed_items
    report = {
        "format": "recsys-embedding-set/1",
        "model": {"spec": backbone.spec, "arch": backbone.arch, "id": backbone.model_id,
                  "pretrained": bool(backbone.extra.get("pretrained", True))},
        "runtime": backbone.runtime,
        "engine": engine,
        "preprocessing": plan.preprocessing,
        "dim": backbone.dim,
        "dtype": "float32",
        "counts": counts,
        "failure_rate": round(failure_rate, 6),
        "timings": {
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "wall_seconds": round(elapsed, 3),
            "images_per_second": round(max(done_now, 0) / max(elapsed, 1e-9), 2),
            "note": "read and decode are summed over worker processes; model and write are main-process time",
        },
        "source": source,
        "catalog_fingerprint": plan.marker["catalog"],
        "previous": str(options.previous) if options.previous else None,
        "device": device,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    if failure_rate > options.max_failure_rate:
        raise EmbedFailed(
            f"{counts['failed']} of {counts['total']} items failed ({failure_rate:.1%}, over the "
            f"{options.max_failure_rate:.1%} limit); see {plan.out_dir / es.FAILURES}", report)
    es.atomic_write_json(report, plan.out_dir / es.MANIFEST)
    return report


def embed_catalog(
    catalog: pd.DataFrame,
    out_dir: Path,
    backbone: Backbone,
    options: EmbedOptions | None = None,
    *,
    source: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The local engine: embed every catalogue item into `out_dir` on this machine; returns the report.

    `backbone` runs on its runtime as it is (see `embeddings.runtimes.with_runtime`). Raises
    `EmbedFailed` (with the report) when more than `max_failure_rate` of items failed.
    """
    options = options or EmbedOptions()
    plan = plan_run(catalog, out_dir, backbone, options)
    if isinstance(plan, dict):
        return plan
    embedder = make_embedder(backbone, options.device, compile=options.compile)
    device = str(getattr(embedder, "device", "cpu"))
    gpu_decode = backbone.runtime == "torch" and (
        options.gpu_decode if options.gpu_decode is not None else device.startswith("cuda"))
    dataset = CatalogImages(
        catalog["image"].tolist(),
        catalog["item_id"].tolist(),
        embedder.transform,
        reusable=plan.reusable_shas,
        draft_size=draft_size(backbone.data_config) if options.draft_decode else None,
        http_timeout=options.http_timeout,
        defer_jpeg=gpu_decode,
    )
    # Batches never cross a slice boundary, so each slice is written as soon as its last batch is in.
    batches = [list(rows[i:i + options.batch_size])
               for rows in map(plan.slice_rows, plan.todo) for i in range(0, len(rows), options.batch_size)]
    workers = default_workers() if options.workers is None else options.workers
    if backbone.runtime == "onnx":
        loaded = thread_batches(dataset, batches, workers)
    else:
        loaded = torch_batches(dataset, batches, workers)
    deferred = None
    if gpu_decode:
        from embeddings.gpu_decode import DeferredJpegs

        deferred = DeferredJpegs(backbone.data_config, embedder.device, embedder.transform)
    writer = PartWriter(plan)
    seconds = {"read": 0.0, "decode": 0.0, "model": 0.0}
    bar = tqdm(total=len(catalog), initial=plan.resumed_items, unit="img", desc="embed",
               disable=not options.progress)
    for batch in loaded:
        seconds["read"] += batch.seconds["read"]
        seconds["decode"] += batch.seconds["decode"]
        tick = time.perf_counter()
        if batch.jpegs:
            deferred.decode_into(batch)
            seconds["decode"] += time.perf_counter() - tick
            tick = time.perf_counter()
        vectors = embedder.embed_tensors(batch.pixels) if batch.pixels is not None else None
        seconds["model"] += time.perf_counter() - tick
        writer.add(batch.rows, batch.shas, batch.status, batch.errors, vectors)
        bar.update(len(batch.rows))
        if on_progress:
            on_progress(len(batch.rows))
    bar.close()
    writer.check_complete()
    seconds["write"] = writer.write_seconds
    return finish_run(plan, seconds, source=source, device=device)
