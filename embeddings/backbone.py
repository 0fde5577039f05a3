"""`Backbone`: what a model SPEC resolves to (`embeddings.backbones.load_backbone` makes them).

A backbone names its architecture, the hash of its weights and its preprocessing (timm's data
config), which together give the model id recorded with every embedding set and index version.
Importing this module costs no torch: an ONNX artifact runs without it, and its torch weights (when
the folder also holds them) load only when something asks for `torch_model()`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embeddings.errors import InputError

if TYPE_CHECKING:
    import torch


@dataclass
class Backbone:
    """A feature extractor and everything needed to reproduce its vectors."""

    spec: str
    arch: str
    model: torch.nn.Module | None  # features only (pooled pre-logits); None until `torch_model()` loads it
    data_config: dict[str, Any]  # timm's resolved data config: input_size, mean, std, crop, ...
    dim: int
    weights_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)  # onnx_path, projection_path, precision, pretrained
    load_model: Callable[[], torch.nn.Module] | None = field(default=None, repr=False, compare=False)

    def torch_model(self) -> torch.nn.Module:
        """The torch module, loaded on first use where loading was deferred."""
        if self.model is None:
            if self.load_model is None:
                raise InputError(f"{self.spec}: holds no torch weights; it runs on onnxruntime only")
            self.model = self.load_model()
        return self.model

    @property
    def runtime(self) -> str:
        """`onnx` when an ONNX file is attached (an ONNX artifact or a cached export), else `torch`."""
        return "onnx" if self.extra.get("onnx_path") else "torch"

    @property
    def preprocessing(self) -> dict[str, Any]:
        """JSON-safe record of the preprocessing, stored with every embedding set."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in sorted(self.data_config.items())}

    @property
    def model_id(self) -> str:
        """A hash of weights and preprocessing: vectors with different ids never mix."""
        record = json.dumps(
            {"arch": self.arch, "weights": self.weights_sha256, "pre": self.preprocessing},
            sort_keys=True,
        )
        return hashlib.sha256(record.encode()).hexdigest()[:16]
