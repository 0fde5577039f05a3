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
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise InputError(f"{onnx_path}: not a usable ONNX model ({str(exc)[:300]})") from None


def _check_shapes(session: ort.InferenceSession, onnx_path: Path, data_config: dict[str, Any],
                  features: int) -> None:
    """The model's fixed input and output sizes against the data config and the feature size the
    artifact records (a mismatch would fail every batch of a run)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise InputError(f"{onnx_path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
                         f"{[i.name for i in inputs]} and {[o.name for o in outputs]}")
    want = [3, *data_config["input_size"][1:]]
    got = list(inputs[0].shape[1:])
    if len(got) != 3 or any(isinstance(g, int) and g != w for g, w in zip(got, want)):
        raise InputError(f"{onnx_path}: takes input of shape {inputs[0].shape}, but the data config gives "
                         f"{want}")
    out = next(o for o in outputs if o.name == OUTPUT_NAME).shape
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != features):
        raise InputError(f"{onnx_path}: gives output of shape {out}, where {features} features are expected")


class OnnxEmbedder:
    """The `embeddings.torch_runtime.TorchEmbedder` surface over an onnxruntime session.

    `projection`, when given (an artifact's projection.npy: row 0 the mean, rows 1.. the axes), maps
    the unit vectors to fewer dimensions (PCA fit on unit vectors), which are normalised again.
    """

    def __init__(self, onnx_path: Path, data_config: dict[str, Any], dim: int, threads: int | None = None,
                 *, projection: np.ndarray | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.session = make_session(self.onnx_path, threads)
        _check_shapes(self.session, self.onnx_path, data_config, projection.shape[1] if projection is not None
                      else dim)
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
