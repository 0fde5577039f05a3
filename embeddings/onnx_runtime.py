"""The onnxruntime runtime: an ONNX model on the CPU, fed float32 arrays, with no torch imported.

`embeddings.onnx_export` writes the files it runs (a cached export of a torch backbone, or an
artifact's `model.onnx`, int8 included).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from embeddings.cores import cpu_count
from embeddings.errors import InputError
from embeddings.preprocess import array_transform
from embeddings.vectors import l2_normalize, project

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"
OUTPUT_NAME = "features"


def make_session(onnx_path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session with all graph optimisations and intra-op threads sized to the cores."""
    if not Path(onnx_path).is_file():
        raise InputError(f"{onnx_path}: ONNX model file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """The `embeddings.torch_runtime.TorchEmbedder` surface over an onnxruntime session.

    `projection`, when given (an artifact's projection.npy: row 0 the mean, rows 1.. the axes), maps
    the unit vectors to fewer dimensions (PCA fit on unit vectors), which are normalised again.
    """

    def __init__(self, onnx_path: Path, data_config: dict[str, Any], dim: int, threads: int | None = None,
                 *, projection: np.ndarray | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.session = make_session(self.onnx_path, threads)
        self.transform = array_transform(data_config)  # PIL and numpy, no torch
        self.data_config = data_config
        self.projection = projection
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def features(self, batch: np.ndarray) -> np.ndarray:
        """Raw pooled features (not normalised) of a preprocessed float32 (n, 3, H, W) batch."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, np.float32)})[0]

    def embed_tensors(self, batch: Any) -> np.ndarray:
        """A preprocessed (n, 3, H, W) batch (an array, or a CPU tensor) to (n, dim) unit vectors."""
        array = np.asarray(batch)
        if len(array) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = l2_normalize(self.features(array))
        if self.projection is not None:
            vectors = project(vectors, self.projection)
        return vectors

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images to one preprocessed (n, 3, H, W) float32 batch."""
        return np.stack([self.transform(image) for image in images])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images to (n, dim) unit vectors, with the model's own preprocessing."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_tensors(self.preprocess(images))
