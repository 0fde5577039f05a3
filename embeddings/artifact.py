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
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.errors import InputError
from embeddings.files import atomic_write_json
from embeddings.names import MODEL_RUNTIMES
from embeddings.preprocess import PIL_RESAMPLING

if TYPE_CHECKING:
    import torch

FORMAT = "recsys-model-artifact/1"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
PROJECTION = "projection.npy"
CROP_MODES = ("center", "squash", "border")  # timm's eval crop modes
MAX_INPUT_SIDE = 4096  # pixels a side of the model's input: beyond any image model this project runs


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
    """An artifact folder's model.json, checked: required fields of the right types, a known runtime,
    every file present; InputError naming the file and the key otherwise."""
    path = Path(path)
    file = path / MODEL_JSON
    if not file.is_file():
        raise InputError(f"{path}: not a model artifact (no {MODEL_JSON})")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{file}: not valid JSON ({exc})") from None
    _check_record(record, file)
    return record


def _check_record(record: Any, file: Path) -> None:
    """The keys readers rely on (backbones, preprocess, the runtimes), each of the type they use, and
    the files it names present beside it."""
    def bad(key: str, want: str, value: Any) -> InputError:
        return InputError(f"{file}: key {key!r} must be {want} (got {json.dumps(value)[:80]})")

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if not isinstance(record, dict):
        raise InputError(f"{file}: must be a JSON object, not {type(record).__name__}")
    for key in ("arch", "data_config", "dim", "engine", "files"):
        if key not in record:
            raise InputError(f"{file}: field {key!r} is missing")
    if not isinstance(record["arch"], str) or not record["arch"]:
        raise bad("arch", "a model name", record["arch"])
    if not isinstance(record["engine"], str) or record["engine"] not in MODEL_RUNTIMES:
        raise InputError(f"{file}: engine {record['engine']!r} is not one of {', '.join(MODEL_RUNTIMES)}")
    files = record["files"]
    if not isinstance(files, dict) or not all(_plain_name(name) for name in files.values()):
        raise bad("files", "an object of file names inside the folder", files)
    needed = {"onnx": "onnx", "torch": "weights"}[record["engine"]]
    if needed not in files:
        raise bad("files", f"an object naming the {needed!r} file of engine {record['engine']}", files)
    for name in files.values():
        if not (file.parent / name).is_file():
            raise InputError(f"{file.parent}: {name} named in {MODEL_JSON} is missing")
    for key in ("dim", "feature_dim"):
        if not positive_int(record.get(key)):
            raise bad(key, "a positive integer", record.get(key))
    config = record["data_config"]
    if not isinstance(config, dict):
        raise bad("data_config", "an object", config)
    size = config.get("input_size")
    if not (isinstance(size, list) and len(size) == 3 and all(map(positive_int, size)) and size[0] == 3
            and max(size) <= MAX_INPUT_SIDE):
        raise bad("data_config.input_size", f"[3, height, width] (integers from 1 to {MAX_INPUT_SIDE})", size)
    for key in ("mean", "std"):
        values = config.get(key)
        if not (isinstance(values, list) and len(values) == 3 and all(number(v) for v in values)):
            raise bad(f"data_config.{key}", "three numbers", values)
    if any(v == 0 for v in config["std"]):
        raise bad("data_config.std", "three numbers other than 0", config["std"])
    crop_pct = config.get("crop_pct")
    if crop_pct is not None and not (number(crop_pct) and 0 < crop_pct <= 1):
        raise bad("data_config.crop_pct", "a number above 0, at most 1", config["crop_pct"])
    for key, known in (("interpolation", PIL_RESAMPLING), ("crop_mode", CROP_MODES)):
        if config.get(key) is not None and not (isinstance(config[key], str) and config[key] in known):
            raise bad(f"data_config.{key}", f"one of {', '.join(known)}", config[key])
    if record.get("precision") is not None and not isinstance(record["precision"], str):
        raise bad("precision", "a string", record["precision"])


def _plain_name(name: Any) -> bool:
    """A file name inside the artifact folder (no folder part, no way out of it)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\x00" not in name)


def data_config_of(record: dict[str, Any]) -> dict[str, Any]:
    """The timm data config that model.json records (lists back to tuples, as timm gives them)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record["data_config"].items()}


def load_projection(path: Path, record: dict[str, Any]) -> np.ndarray | None:
    """The artifact's projection.npy, checked against model.json's dims; None when it has none."""
    name = record["files"].get("projection")
    if name is None:
        return None
    try:
        projection = np.load(Path(path) / name, allow_pickle=False).astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - a corrupt header raises OSError, ValueError, SyntaxError, ...
        raise InputError(f"{path / name}: not a readable numpy array ({exc})") from None
    if not np.all(np.isfinite(projection)):
        raise InputError(f"{path / name}: holds values that are not finite")
    if projection.ndim != 2 or projection.shape != (record["dim"] + 1, record["feature_dim"]):
        raise InputError(f"{path / name}: shape {projection.shape} does not match dim {record['dim']} "
                         f"and feature_dim {record['feature_dim']}")
    return projection
