"""Embedding an uploaded image with the model that made the serving index's vectors.

The backbone loads on the first upload, not at startup (most servers never see one), and is
kept per model id: a reload to a version made by another model loads that model next time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.api.errors import ApiError

if TYPE_CHECKING:
    from PIL import Image

    from embeddings.onnx_runtime import OnnxEmbedder
    from embeddings.torch_runtime import TorchEmbedder


def model_record(meta: dict[str, Any]) -> tuple[str, str | None]:
    """(model SPEC, model id) recorded in an index version's meta.json."""
    model = meta.get("model")
    if isinstance(model, dict):
        spec, model_id = model.get("spec"), model.get("id")
    else:
        spec, model_id = meta.get("model_spec") or model, meta.get("model_id")
    if not spec:
        raise ApiError(503, "the serving version does not record the model that made its vectors",
                       code="no_model")
    return str(spec), (str(model_id) if model_id else None)


class UploadEmbedder:
    """Turns decoded images into vectors, one model per model id, loaded lazily."""

    def __init__(self, threads: int = 1) -> None:
        self._lock = threading.Lock()
        self._embedders: dict[str, tuple[TorchEmbedder | OnnxEmbedder, str]] = {}
        self.threads = threads

    def embedder_for(self, meta: dict[str, Any]) -> tuple[TorchEmbedder | OnnxEmbedder, str]:
        from embeddings.backbones import load_backbone
        from embeddings.errors import InputError
        from embeddings.runtimes import make_embedder

        spec, model_id = model_record(meta)
        key = model_id or spec
        with self._lock:
            embedder = self._embedders.get(key)
            if embedder is None:
                try:
                    backbone = load_backbone(spec)
                except InputError as exc:
                    raise ApiError(503, f"cannot load the serving model {spec!r}: {exc}",
                                   code="no_model") from None
                if model_id and backbone.model_id != model_id:
                    raise ApiError(503, f"model {spec!r} here has id {backbone.model_id} but the index "
                                        f"was made with {model_id}", code="model_mismatch")
                if backbone.runtime == "torch":  # ONNX artifacts (int8 too) never import torch
                    import torch

                    torch.set_num_threads(self.threads)  # searches share the cores: no oversubscription
                embedder = self._embedders[key] = (make_embedder(backbone, "cpu", self.threads),
                                                   backbone.model_id)
            return embedder

    def embed(self, meta: dict[str, Any], image: Image.Image) -> tuple[np.ndarray, str]:
        """(1, dim) unit vector for one RGB image, and the model id that made it."""
        embedder, model_id = self.embedder_for(meta)
        with self._lock:  # one forward pass at a time: the runtime already uses the compute threads
            vector = embedder.embed_images([image])
        return vector, model_id
