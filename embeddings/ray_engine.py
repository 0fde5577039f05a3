"""The Ray engine (`recsys embed --engine ray`): the same embedding set, computed through Ray Data.

The pipeline has two stages, so CPU-heavy decoding overlaps inference:
1. `map_batches(decode_batch)`: Ray tasks read the image bytes, hash them, skip unchanged images
   (incremental mode) and decode + preprocess the rest into pixel arrays;
2. `map_batches(EmbedActor)`: an actor pool; each actor loads the model once in `__init__` and asks
   for one GPU when the cluster has GPUs.
The driver streams the results back and writes each slice as a part as soon as it is complete,
with the same `PartWriter` as the local engine, so the files, the resume after a crash and the
report are the same whichever engine ran.

Pointing it at a cluster: set `RAY_ADDRESS` (for example `ray://head:10001`, or `auto` on a
cluster node) or pass `--ray-address`; without it a local Ray instance starts on this machine.
Image references must then be reachable from every node (shared storage or http(s) URLs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embeddings.backbone import Backbone
from embeddings.backbones import load_backbone
from embeddings.cores import cpu_count
from embeddings.loader import CatalogImages
from embeddings.preprocess import array_transform, draft_size
from embeddings.runner import EmbedOptions, PartWriter, RunPlan, finish_run, plan_run
from embeddings.runtimes import make_embedder, with_runtime

log = logging.getLogger(__name__)


class DecodeBatch:
    """Stage 1 (Ray tasks): rows of the catalogue to pixels, sha256 and status."""

    def __init__(self, data_config: dict[str, Any], reusable: dict[str, str], draft: tuple[int, int] | None,
                 http_timeout: float) -> None:
        self.data_config = data_config
        self.transform = array_transform(data_config)  # once per actor, not per batch; numpy, no torch
        self.reusable = reusable
        self.draft = draft
        self.http_timeout = http_timeout

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dataset = CatalogImages(batch["image"].tolist(), batch["item_id"].tolist(), self.transform,
                                reusable=self.reusable, draft_size=self.draft, http_timeout=self.http_timeout)
        items = dataset.__getitems__(list(range(len(batch["row"]))))
        height, width = self.data_config["input_size"][1:]
        pixels = np.zeros((len(items), 3, height, width), np.float32)
        for i, item in enumerate(items):
            if item["status"] == "ok":
                pixels[i] = item["pixels"]
        return {
            "row": batch["row"],
            "sha": np.array([item["sha"] for item in items], dtype=object),
            "status": np.array([item["status"] for item in items], dtype=object),
            "error_type": np.array([(item["error"] or ("", ""))[0] for item in items], dtype=object),
            "message": np.array([(item["error"] or ("", ""))[1] for item in items], dtype=object),
            "pixels": pixels,
            "read_s": np.array([item.get("read_s", 0.0) for item in items]),
            "decode_s": np.array([item.get("decode_s", 0.0) for item in items]),
        }


class EmbedActor:
    """Stage 2 (Ray actors): the model, loaded once per actor, turns pixels into unit vectors.

    `exported` is the driver's backbone when it runs on onnxruntime (without its torch module): an
    actor that can read its ONNX file runs it as it is, without resolving `spec` again (no torch,
    no timm); elsewhere (another node) it resolves `spec` and finds or makes the export there."""

    def __init__(self, spec: str, runtime: str, device: str, exported: Backbone | None = None) -> None:
        if exported is not None and _files_here(exported):
            backbone = exported
        else:
            backbone = with_runtime(load_backbone(spec), runtime, device)
        self.embedder = make_embedder(backbone, device)
        self.dim = backbone.dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["status"] == "ok"
        vectors = np.zeros((len(ok), self.dim), np.float32)
        tick = time.perf_counter()
        if ok.any():
            vectors[ok] = self.embedder.embed_tensors(np.ascontiguousarray(batch["pixels"][ok]))
        model_s = np.full(len(ok), (time.perf_counter() - tick) / max(len(ok), 1))
        out = {key: value for key, value in batch.items() if key != "pixels"}
        return {**out, "embedding": vectors, "model_s": model_s}


def _init_ray(address: str | None, num_cpus: int | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=1 << 30)


def embed_with_ray(catalog: pd.DataFrame, out_dir: Path, backbone: Backbone, options: EmbedOptions, *,
                   runtime: str = "auto", address: str | None = None, actors: int | None = None,
                   num_cpus: int | None = None, source: str = "",
                   on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Embed the catalogue through Ray Data into `out_dir`; returns the run report."""
    import ray

    plan = plan_run(catalog, out_dir, backbone, options)
    if isinstance(plan, dict):
        return plan
    _init_ray(address, num_cpus)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = "cuda" if gpus else "cpu"
    backbone = with_runtime(backbone, runtime, device)  # an ONNX export happens once, on the driver
    todo_rows = np.concatenate([np.arange(r.start, r.stop) for r in map(plan.slice_rows, plan.todo)]
                               or [np.zeros(0, np.int64)])
    table = catalog.iloc[todo_rows][["item_id", "image"]].assign(row=todo_rows).reset_index(drop=True)
    pool = actors or max(1, gpus or 1)
    decoded = ray.data.from_pandas(table).map_batches(
        DecodeBatch,
        fn_constructor_kwargs={
            "data_config": backbone.data_config, "reusable": plan.reusable_shas,
            "draft": draft_size(backbone.data_config) if options.draft_decode else None,
            "http_timeout": options.http_timeout},
        batch_size=options.batch_size, concurrency=max(1, (num_cpus or cpu_count()) - 1),
    )
    embedded = decoded.map_batches(
        EmbedActor,  # runs the driver's ONNX export where it can read it, else resolves the SPEC
        fn_constructor_kwargs={"spec": backbone.spec, "runtime": runtime, "device": device,
                               "exported": _without_torch(backbone) if backbone.runtime == "onnx" else None},
        batch_size=options.batch_size, concurrency=pool, num_gpus=1 if gpus else 0,
    )
    return _drain(plan, embedded, source, device, on_progress)


def _without_torch(backbone: Backbone) -> Backbone:
    """The backbone as an onnxruntime actor needs it: no torch module to pickle and ship."""
    return dataclasses.replace(backbone, model=None, load_model=None)


def _files_here(backbone: Backbone) -> bool:
    """Whether this machine has the backbone's ONNX file (and projection, where it has one)."""
    return all(Path(backbone.extra[key]).is_file() for key in ("onnx_path", "projection_path")
               if key in backbone.extra)


def _drain(plan: RunPlan, embedded: Any, source: str, device: str,
           on_progress: Callable[[int], None] | None) -> dict[str, Any]:
    writer = PartWriter(plan)
    seconds = {"read": 0.0, "decode": 0.0, "model": 0.0}
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        ok = batch["status"] == "ok"
        errors = [(t, m) if s == "failed" else None
                  for s, t, m in zip(batch["status"], batch["error_type"], batch["message"])]
        writer.add(batch["row"].tolist(), batch["sha"].tolist(), batch["status"].tolist(), errors,
                   batch["embedding"][ok])
        seconds["read"] += float(batch["read_s"].sum())
        seconds["decode"] += float(batch["decode_s"].sum())
        seconds["model"] += float(batch["model_s"].sum())
        if on_progress:
            on_progress(len(batch["row"]))
    writer.check_complete()
    seconds["write"] = writer.write_seconds
    return finish_run(plan, seconds, source=source, engine="ray", device=device)
