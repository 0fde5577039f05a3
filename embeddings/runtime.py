"""Choose the inference runtime of a job: torch on GPUs, onnxruntime fp32 on the CPU.

onnxruntime runs Lite0 about 3-4x faster than eager PyTorch on this kind of CPU (NOTES.md) and
gives the same vectors (cosine >= 0.9999, tested), so `auto` uses it on the CPU. The ONNX file is
exported once per model id and input size and cached.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch

from embeddings.backbones import Backbone
from embeddings.errors import InputError
from embeddings.names import RUNTIMES

log = logging.getLogger(__name__)



def cache_dir() -> Path:
    """Where exported ONNX files live: $RECSYS_CACHE, else ~/.cache/recsys-embed."""
    root = os.environ.get("RECSYS_CACHE") or Path.home() / ".cache" / "recsys-embed"
    return Path(root) / "onnx"


def resolve_runtime(runtime: str, device: str) -> str:
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if runtime == "onnx" and on_gpu:
        raise InputError("--runtime onnx runs on the CPU only; use --device cpu or --runtime torch")
    if runtime == "auto":
        return "torch" if on_gpu else "onnx"
    return runtime


def with_runtime(backbone: Backbone, runtime: str, device: str = "auto") -> Backbone:
    """The backbone set up to run on `runtime`: for onnx, with a cached fp32 export attached."""
    if resolve_runtime(runtime, device) == "torch" or backbone.extra.get("onnx_path"):
        return backbone
    from embeddings.onnx_engine import export_onnx

    height, width = backbone.data_config["input_size"][1:]
    path = cache_dir() / f"{backbone.arch}-{backbone.model_id}-{height}x{width}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once, cached at %s)", backbone.arch, path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        export_onnx(backbone, tmp)
        os.replace(tmp, path)  # concurrent jobs each write their own tmp; the last rename wins
    return dataclasses.replace(backbone, extra={**backbone.extra, "onnx_path": str(path), "runtime": "onnx"})
