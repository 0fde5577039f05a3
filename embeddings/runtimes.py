"""Which runtime runs a backbone (torch or onnxruntime), and the embedder for it.

onnxruntime runs Lite0 about 3-4x faster than eager PyTorch on this kind of CPU (NOTES.md) and
gives the same vectors (cosine >= 0.9999, tested), so `auto` uses it on the CPU and torch on a GPU.
A torch backbone asked to run on onnx is exported once per model id and input size, and cached.
An ONNX artifact is already fixed to onnxruntime: choosing its runtime imports no torch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embeddings.backbone import Backbone
from embeddings.errors import InputError
from embeddings.files import atomic_write
from embeddings.names import RUNTIMES

if TYPE_CHECKING:
    from embeddings.onnx_runtime import OnnxEmbedder
    from embeddings.torch_runtime import TorchEmbedder

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where exported ONNX files live: $RECSYS_CACHE, else ~/.cache/recsys-embed."""
    root = os.environ.get("RECSYS_CACHE") or Path.home() / ".cache" / "recsys-embed"
    return Path(root) / "onnx"


def resolve_runtime(runtime: str, device: str) -> str:
    """`torch` or `onnx` for a `--runtime` choice on a `--device` (auto: onnx on the CPU)."""
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime != "torch" and device == "cpu":
        return "onnx"
    import torch  # only to ask whether there is a GPU

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if runtime == "onnx" and on_gpu:
        raise InputError("--runtime onnx runs on the CPU only; use --device cpu or --runtime torch")
    if runtime == "auto":
        return "torch" if on_gpu else "onnx"
    return runtime


def with_runtime(backbone: Backbone, runtime: str, device: str = "auto") -> Backbone:
    """The backbone set up to run on `runtime`: for onnx, with a cached fp32 export attached.

    A backbone that already has an ONNX file (an ONNX artifact) runs on it whatever is asked.
    """
    if backbone.runtime == "onnx":
        return backbone
    if resolve_runtime(runtime, device) == "torch":
        return backbone
    from embeddings.onnx_export import export_onnx

    height, width = backbone.data_config["input_size"][1:]
    path = cache_dir() / f"{backbone.arch}-{backbone.model_id}-{height}x{width}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once, cached at %s)", backbone.arch, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Concurrent jobs each write their own temporary file; the last rename wins.
        atomic_write(path, lambda tmp: export_onnx(backbone, tmp))
    return dataclasses.replace(backbone, extra={**backbone.extra, "onnx_path": str(path)})


def make_embedder(backbone: Backbone, device: str = "auto", threads: int | None = None, *,
                  compile: bool = False) -> TorchEmbedder | OnnxEmbedder:
    """An object with `.transform`, `.dim`, `.preprocess()`, `.embed_tensors()` and `.embed_images()`.

    onnxruntime when the backbone has an ONNX file, torch otherwise; only that runtime is imported.
    """
    if backbone.runtime == "torch":
        from embeddings.torch_runtime import TorchEmbedder

        return TorchEmbedder(backbone, device, compile=compile)
    from embeddings.onnx_runtime import OnnxEmbedder

    projection = None
    if backbone.extra.get("projection_path"):
        projection = np.load(Path(backbone.extra["projection_path"]), allow_pickle=False).astype(np.float32)
    return OnnxEmbedder(Path(backbone.extra["onnx_path"]), backbone.data_config, backbone.dim, threads,
                        projection=projection)
