"""Model artifact folders (DESIGN.md): what `recsys compress` writes and `--model FOLDER` runs.

A folder holds `model.json` (written last: its presence marks the artifact complete), the weights
(`model.safetensors` for the torch runtime and/or `model.onnx` for onnxruntime) and an optional
`projection.npy`: float32 (1 + dim, feature_dim), row 0 the centring mean of the unit vectors and
rows 1.. the principal axes (the layout of PCA's `mean_` and `components_`).

model.json names the runtime under the key `engine` (the file format predates the word runtime).
This module reads and writes the files only; it needs no torch (`embeddings.backbones` turns a
folder into a `Backbone`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.errors import InputError
from embeddings.files import atomic_write_json
from embeddings.names import MODEL_RUNTIMES

if TYPE_CHECKING:
    import torch

FORMAT = "recsys-model-artifact/1"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
PROJECTION = "projection.npy"


def write_artifact(
    out_dir: Path,
    *,
    arch: str,
    data_config: dict[str, Any],
    feature_dim: int,
    runtime: str,
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
    if runtime not in MODEL_RUNTIMES:
        raise InputError(f"runtime {runtime!r}: expected one of {', '.join(MODEL_RUNTIMES)}")
    if runtime == "onnx" and onnx_file is None:
        raise InputError("an onnx artifact needs an ONNX file")
    if runtime == "torch" and model is None:
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
        "engine": runtime,  # the key as written on disk
        "precision": precision,
        "pruned": pruned,
        "steps": steps,
        "teacher": teacher,
        "fidelity": fidelity or {},
        "files": files,
    }
    atomic_write_json(record, out_dir / MODEL_JSON)
    return out_dir


def update_fidelity(path: Path, fidelity: dict[str, Any]) -> None:
    """Record measured fidelity in an existing artifact's model.json."""
    record = read_model_json(path)
    record["fidelity"] = fidelity
    atomic_write_json(record, Path(path) / MODEL_JSON)


def read_model_json(path: Path) -> dict[str, Any]:
    """An artifact folder's model.json, checked: required fields, a known runtime, every file present."""
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
    if record["engine"] not in MODEL_RUNTIMES:
        raise InputError(f"{file}: engine {record['engine']!r} is not one of {', '.join(MODEL_RUNTIMES)}")
    for name in record["files"].values():
        if not (path / name).is_file():
            raise InputError(f"{path}: {name} named in {MODEL_JSON} is missing")
    return record


def data_config_of(record: dict[str, Any]) -> dict[str, Any]:
    """The timm data config that model.json records (lists back to tuples, as timm gives them)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record["data_config"].items()}


def load_projection(path: Path, record: dict[str, Any]) -> np.ndarray | None:
    """The artifact's projection.npy, checked against model.json's dims; None when it has none."""
    name = record["files"].get("projection")
    if name is None:
        return None
    projection = np.load(Path(path) / name, allow_pickle=False).astype(np.float32)
    if projection.ndim != 2 or projection.shape != (record["dim"] + 1, record["feature_dim"]):
        raise InputError(f"{path / name}: shape {projection.shape} does not match dim {record['dim']} "
                         f"and feature_dim {record['feature_dim']}")
    return projection
