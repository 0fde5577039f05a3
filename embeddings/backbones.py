"""Backbones by model SPEC: the one way to get a model, its weights and its preprocessing.

A SPEC is (DESIGN.md) a timm model name, a checkpoint file (`.safetensors`, `.pth`, `.pt`, whose
architecture is `arch`, default `tf_efficientnet_lite0`) or a model artifact folder written by
`recsys compress`. Like timm's `create_model`, this dispatcher sits above the modules it picks
from: `embeddings.timm_models` (torch: names, checkpoints, artifact weights) and
`embeddings.artifact` (the folder's files). Neither imports it, nor each other.

An ONNX artifact resolves without importing torch or timm: its id is the hash of its files, and
torch weights it may also hold load only if a caller asks for `Backbone.torch_model()`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings import artifact
from embeddings.backbone import Backbone
from embeddings.errors import InputError
from embeddings.files import file_sha256
from embeddings.names import DEFAULT_MODEL

if TYPE_CHECKING:
    import torch

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def load_backbone(spec: str = DEFAULT_MODEL, *, arch: str | None = None, pretrained: bool = True) -> Backbone:
    """Resolve a model SPEC into a `Backbone` (eval mode, on the CPU)."""
    path = Path(spec)
    if path.is_dir():
        if not (path / artifact.MODEL_JSON).is_file():
            raise InputError(f"{path}: a folder SPEC must be a model artifact holding {artifact.MODEL_JSON}")
        return artifact_backbone(path)
    from embeddings import timm_models  # torch and timm: only for SPECs that need them

    if path.suffix in CHECKPOINT_SUFFIXES or path.is_file():
        return timm_models.checkpoint_backbone(spec, arch or DEFAULT_MODEL)
    return timm_models.timm_backbone(spec, pretrained=pretrained)


def artifact_backbone(path: Path) -> Backbone:
    """A `Backbone` for an artifact folder, on the runtime its model.json names.

    For the onnx runtime `extra["onnx_path"]` names the model file (and `extra["projection_path"]`
    the projection); torch weights, where the folder also holds them, load on first use.
    """
    path = Path(path)
    record = artifact.read_model_json(path)
    projection = artifact.load_projection(path, record)
    files = record["files"]
    runtime = record["engine"]  # model.json's key for the runtime
    model, load_model, hashes = None, None, []
    if runtime == "onnx":
        hashes.append(file_sha256(path / files["onnx"]))
        if "weights" in files:

            def load_model() -> torch.nn.Module:
                return _torch_weights(path, record, projection)[0]
    elif "weights" not in files:
        raise InputError(f"{path}: engine torch needs {artifact.WEIGHTS}")
    else:
        model, weights_hash = _torch_weights(path, record, projection)
        hashes.append(weights_hash)
    if projection is not None:
        hashes.append(hashlib.sha256(projection.tobytes()).hexdigest())
    extra = {"precision": record.get("precision", "fp32"), "artifact": str(path)}
    if runtime == "onnx":
        extra["onnx_path"] = str(path / files["onnx"])
        if projection is not None:
            extra["projection_path"] = str(path / files["projection"])
    return Backbone(
        spec=str(path),
        arch=record["arch"],
        model=model,
        data_config=artifact.data_config_of(record),
        dim=int(record["dim"]),
        weights_sha256=hashlib.sha256("".join(hashes).encode()).hexdigest(),
        extra=extra,
        load_model=load_model,
    )


def _torch_weights(path: Path, record: dict[str, Any],
                   projection: np.ndarray | None) -> tuple[torch.nn.Module, str]:
    from embeddings import timm_models  # torch and timm: only when the artifact's weights are wanted

    return timm_models.load_artifact_model(path / record["files"]["weights"], record, projection)
