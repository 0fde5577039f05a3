"""Model artifact folders (DESIGN.md): what `recsys compress` writes and `--model FOLDER` runs.

A folder holds `model.json` (written last: its presence marks the artifact complete), the weights
(`model.safetensors` for the torch engine and/or `model.onnx` for onnxruntime) and an optional
`projection.npy`: float32 (1 + dim, feature_dim), row 0 the centring mean of the unit vectors and
rows 1.. the principal axes (the layout of PCA's `mean_` and `components_`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch

from embeddings.backbones import Backbone, state_dict_sha256
from embeddings.errors import InputError

FORMAT = "recsys-model-artifact/1"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
PROJECTION = "projection.npy"
ENGINES = ("torch", "onnx")


def write_artifact(
    out_dir: Path,
    *,
    arch: str,
    data_config: dict[str, Any],
    feature_dim: int,
    engine: str,
    precision: str,
    steps: list[dict[str, Any]],
    teacher: dict[str, Any],
    model: torch.nn.Module | None = None,
    onnx_file: Path | None = None,
    projection: np.ndarray | None = None,
    fidelity: dict[str, Any] | None = None,
    pruned: bool = False,
) -> Path:
    """Write an artifact folder; `model.json` goes last so a half-written folder never loads."""
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "onnx" and onnx_file is None:
        raise InputError("an onnx artifact needs an ONNX file")
    if engine == "torch" and model is None:
        raise InputError("a torch artifact needs a model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_JSON).unlink(missing_ok=True)
    files = {}
    if model is not None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out_dir / WEIGHTS))
        files["weights"] = WEIGHTS
    if onnx_file is not None:
        if Path(onnx_file).resolve() != (out_dir / ONNX).resolve():
            shutil.copyfile(onnx_file, out_dir / ONNX)
        files["onnx"] = ONNX
    dim = feature_dim
    if projection is not None:
        np.save(out_dir / PROJECTION, projection.astype(np.float32), allow_pickle=False)
        files["projection"] = PROJECTION
        dim = projection.shape[0] - 1
    record = {
        "format": FORMAT,
        "arch": arch,
        "input_size": list(data_config["input_size"]),
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
        "feature_dim": int(feature_dim),
        "dim": int(dim),
        "engine": engine,
        "precision": precision,
        "pruned": pruned,
        "steps": steps,
        "teacher": teacher,
        "fidelity": fidelity or {},
        "files": files,
    }
    _atomic_write_json(record, out_dir / MODEL_JSON)
    return out_dir


def update_fidelity(path: Path, fidelity: dict[str, Any]) -> None:
    """Record measured fidelity in an existing artifact's model.json."""
    record = read_model_json(path)
    record["fidelity"] = fidelity
    _atomic_write_json(record, Path(path) / MODEL_JSON)


def _atomic_write_json(record: dict[str, Any], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_model_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    file = path / MODEL_JSON
    if not file.is_file():
        raise InputError(f"{path}: not a model artifact (no {MODEL_JSON})")
    try:
        record = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}: not valid JSON ({exc})") from None
    for key in ("arch", "data_config", "dim", "engine", "files"):
        if key not in record:
            raise InputError(f"{file}: field {key!r} is missing")
    if record["engine"] not in ENGINES:
        raise InputError(f"{file}: engine {record['engine']!r} is not one of {', '.join(ENGINES)}")
    for name in record["files"].values():
        if not (path / name).is_file():
            raise InputError(f"{path}: {name} named in {MODEL_JSON} is missing")
    return record


def data_config_of(record: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record["data_config"].items()}


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


def load_torch_model(path: Path, record: dict[str, Any]) -> tuple[torch.nn.Module, str]:
    """The artifact's features-only torch module (float32, eval) and its weights hash."""
    from safetensors.torch import load_file

    state = load_file(str(Path(path) / record["files"]["weights"]))
    try:
        model = timm.create_model(record["arch"], pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise InputError(f"{path}: unknown architecture {record['arch']!r} ({exc})") from None
    if record.get("pruned"):
        fit_shapes_to_state(model, state)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit {record['arch']} ({str(exc)[:300]})") from None
    model.num_features = record["feature_dim"]
    return model.eval(), state_dict_sha256(state)


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


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_projection(path: Path, record: dict[str, Any]) -> np.ndarray | None:
    name = record["files"].get("projection")
    if name is None:
        return None
    projection = np.load(Path(path) / name, allow_pickle=False).astype(np.float32)
    if projection.ndim != 2 or projection.shape != (record["dim"] + 1, record["feature_dim"]):
        raise InputError(f"{path / name}: shape {projection.shape} does not match dim {record['dim']} "
                         f"and feature_dim {record['feature_dim']}")
    return projection


def load_artifact_backbone(path: Path) -> Backbone:
    """A `Backbone` for an artifact folder; `extra["engine"]` says which embedder runs it.

    For the onnx engine `extra["onnx_path"]` names the model file and `model` is the torch module
    only when the artifact also holds torch weights (None otherwise).
    """
    path = Path(path)
    record = read_model_json(path)
    projection = load_projection(path, record)
    model, hashes = None, []
    if "weights" in record["files"]:
        model, weights_hash = load_torch_model(path, record)
        hashes.append(weights_hash)
        if projection is not None:
            model = ProjectedModel(model, projection).eval()
    if record["engine"] == "onnx":
        hashes = [_file_sha256(path / record["files"]["onnx"])]
    elif model is None:
        raise InputError(f"{path}: engine torch needs {WEIGHTS}")
    if projection is not None:
        hashes.append(hashlib.sha256(projection.tobytes()).hexdigest())
    extra: dict[str, Any] = {"engine": record["engine"], "precision": record.get("precision", "fp32"),
                             "artifact": str(path)}
    if record["engine"] == "onnx":
        extra["onnx_path"] = str(path / record["files"]["onnx"])
        if projection is not None:
            extra["projection_path"] = str(path / record["files"]["projection"])
    return Backbone(
        spec=str(path),
        arch=record["arch"],
        model=model,
        data_config=data_config_of(record),
        dim=int(record["dim"]),
        weights_sha256=hashlib.sha256("".join(hashes).encode()).hexdigest(),
        extra=extra,
    )
