"""Pick the inference engine a backbone needs: onnxruntime for ONNX artifacts, torch otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.backbones import Backbone
from embeddings.embedder import Embedder
from embeddings.onnx_engine import OnnxEmbedder


def make_embedder(backbone: Backbone, device: str = "auto",
                  threads: int | None = None, *, compile: bool = False) -> Embedder | OnnxEmbedder:
    """An object with `.transform`, `.dim`, `.embed_tensors()` and `.embed_images()` for `backbone`."""
    onnx_path = backbone.extra.get("onnx_path")
    if onnx_path is None:
        return Embedder(backbone, device, compile=compile)
    projection_path = backbone.extra.get("projection_path")
    mean = axes = None
    if projection_path:
        projection = np.load(Path(projection_path), allow_pickle=False).astype(np.float32)
        mean, axes = projection[0], np.ascontiguousarray(projection[1:].T)
    return OnnxEmbedder(Path(onnx_path), backbone.data_config, backbone.dim, threads,
                        projection=axes, mean=mean)
