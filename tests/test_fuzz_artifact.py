"""Model artifact folders fuzzed: model.json with any key removed or replaced, broken JSON, corrupt
or missing projection.npy, model.onnx and model.safetensors. Reading the folder gives a backbone
that embeds a picture, or InputError naming the file (and the key); `recsys embed --model FOLDER`
exits 2 and leaves no embedding set.

The good artifact is a real one without torch: a 3-feature ONNX graph (global average pooling), so
every example runs through onnxruntime in milliseconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from PIL import Image

from embeddings.artifact import MODEL_JSON, ONNX, PROJECTION, write_artifact
from embeddings.backbones import artifact_backbone
from embeddings.errors import InputError
from embeddings.onnx_runtime import INPUT_NAME, OUTPUT_NAME
from embeddings.runtimes import make_embedder
from tests.fuzzing import FUZZ, assert_exit_2, json_values, reads_or_names, run_cli

SIDE = 8
DATA_CONFIG = {"input_size": (3, SIDE, SIDE), "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5),
               "std": (0.25, 0.25, 0.25), "crop_pct": 1.0, "crop_mode": "center"}


def pooling_onnx(path: Path, side: int = SIDE) -> Path:
    """A real ONNX model: (n, 3, side, side) pixels to their (n, 3) channel means."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [INPUT_NAME], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], [OUTPUT_NAME])],
        "pool",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def good_artifact(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifact")
    projection = np.vstack([np.zeros((1, 3)), np.eye(3)[:2]]).astype(np.float32)  # 3 features -> 2 dims
    return write_artifact(root / "model", arch="pool3", data_config=DATA_CONFIG, feature_dim=3,
                          runtime="onnx", precision="fp32", steps=[], teacher={},
                          onnx_file=pooling_onnx(root / "m.onnx"), projection=projection)


def embed_one(folder: Path) -> np.ndarray:
    backbone = artifact_backbone(folder)
    embedder = make_embedder(backbone, "cpu", threads=1)
    picture = Image.fromarray(np.arange(7 * 5 * 3, dtype=np.uint8).reshape(7, 5, 3) * 3)
    return embedder.embed_images([picture])


def test_the_good_artifact_embeds(good_artifact) -> None:
    vectors = embed_one(good_artifact)
    assert vectors.shape == (1, 2) and np.isclose(np.linalg.norm(vectors), 1.0)


KEYS = ["arch", "dim", "feature_dim", "engine", "files", "files.onnx", "files.projection", "precision",
        "data_config", "data_config.input_size", "data_config.mean", "data_config.std",
        "data_config.crop_pct", "data_config.interpolation", "data_config.crop_mode"]
values = json_values() | st.sampled_from([0, -1, 3, 2, 10**9, [3, 8, 8], [3, 0, 8], [1, 8, 8], [0, 0, 0],
                                          [1.0, 2.0, 3.0], "torch", "onnx", "../model.onnx", "/etc/passwd",
                                          "", "nearest", "squash", "border", 1e9, 0.5])


def mutate(record: dict, key: str, how: str, value) -> dict:
    record = json.loads(json.dumps(record))
    *parents, last = key.split(".")
    holder = record
    for p in parents:
        holder = holder[p]
    if how == "drop":
        holder.pop(last, None)
    else:
        holder[last] = value
    return record


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["drop", "set"]), values),
                        min_size=1, max_size=2))
def test_fuzzed_model_json(good_artifact, tmp_path_factory, changes) -> None:
    folder = tmp_path_factory.mktemp("fz") / "model"
    shutil.copytree(good_artifact, folder)
    record = json.loads((folder / MODEL_JSON).read_text())
    for key, how, value in changes:
        try:
            record = mutate(record, key, how, value)
        except (TypeError, KeyError, AttributeError):  # the parent is no object since a step before
            pass
    (folder / MODEL_JSON).write_text(json.dumps(record))
    vectors = reads_or_names(lambda: embed_one(folder), folder)
    if vectors is not None:
        assert vectors.ndim == 2 and len(vectors) == 1 and np.all(np.isfinite(vectors))


@FUZZ
@given(name=st.sampled_from([MODEL_JSON, ONNX, PROJECTION]), cut=st.floats(0, 1), junk=st.binary(max_size=64),
       drop=st.booleans())
def test_fuzzed_files(good_artifact, tmp_path_factory, name, cut, junk, drop) -> None:
    folder = tmp_path_factory.mktemp("fzf") / "model"
    shutil.copytree(good_artifact, folder)
    if drop:
        (folder / name).unlink()
    else:
        body = (folder / name).read_bytes()
        (folder / name).write_bytes(body[: int(len(body) * cut)] + junk)
    vectors = reads_or_names(lambda: embed_one(folder), folder)
    if vectors is not None:
        assert vectors.shape == (1, 2) and np.all(np.isfinite(vectors))


# Found by the fuzzing above; each failed before its fix (KeyError, TypeError, AttributeError,
# ValueError or onnxruntime's own errors, all as tracebacks).
@pytest.mark.parametrize(("key", "value", "needle"), [
    ("files", ["model.onnx"], "key 'files' must be an object of file names"),
    ("files", {"projection": "projection.npy"}, "naming the 'onnx' file"),
    ("files", {"onnx": "../model/model.onnx"}, "key 'files'"),
    ("feature_dim", None, "key 'feature_dim' must be a positive integer"),
    ("dim", "8", "key 'dim' must be a positive integer"),
    ("data_config", [], "key 'data_config' must be an object"),
    ("data_config.input_size", [3, 8], "key 'data_config.input_size'"),
    ("data_config.std", [0, 1, 1], "other than 0"),
    ("data_config.crop_pct", 1e9, "key 'data_config.crop_pct'"),
    ("data_config.interpolation", "cubic-ish", "key 'data_config.interpolation' must be one of"),
    ("data_config.crop_mode", ["center"], "key 'data_config.crop_mode' must be one of"),
    ("arch", 7, "key 'arch' must be a model name"),
    ("data_config.input_size", [3, 16, 16], "takes input of shape"),
])
def test_found_by_fuzzing_model_json(good_artifact, tmp_path, key, value, needle) -> None:
    folder = tmp_path / "model"
    shutil.copytree(good_artifact, folder)
    record = mutate(json.loads((folder / MODEL_JSON).read_text()), key, "set", value)
    (folder / MODEL_JSON).write_text(json.dumps(record))
    with pytest.raises(InputError, match=needle) as info:
        embed_one(folder)
    assert str(folder) in str(info.value)


@pytest.mark.parametrize(("name", "needle"), [
    (ONNX, "not a usable ONNX model"),
    (PROJECTION, "not a readable numpy array"),
    (MODEL_JSON, "not valid JSON"),
])
def test_found_by_fuzzing_corrupt_files(good_artifact, tmp_path, name, needle) -> None:
    folder = tmp_path / "model"
    shutil.copytree(good_artifact, folder)
    (folder / name).write_bytes((folder / name).read_bytes()[:20] + b"\xff\x00junk")
    with pytest.raises(InputError, match=needle):
        embed_one(folder)


def test_found_by_fuzzing_a_projection_header_with_a_null_byte(good_artifact, tmp_path) -> None:
    # numpy parses the .npy header with ast.literal_eval: SyntaxError out of np.load
    folder = tmp_path / "model"
    shutil.copytree(good_artifact, folder)
    body = (folder / PROJECTION).read_bytes()
    (folder / PROJECTION).write_bytes(body[:20] + b"\x00" + body[21:])
    with pytest.raises(InputError, match="projection.npy: not a readable numpy array"):
        embed_one(folder)


def test_a_corrupt_safetensors_file_is_an_input_error(tmp_path) -> None:
    from embeddings.timm_models import load_artifact_model

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{junk}")
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors file"):
        load_artifact_model(weights, {"arch": "tf_efficientnet_lite0", "feature_dim": 1280})


def test_cli_exits_2_and_writes_no_set(good_artifact, tmp_path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(good_artifact, folder)
    (folder / ONNX).write_bytes(b"not onnx")
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (9, 9), "red").save(images / "a.png")
    out = tmp_path / "set"
    assert_exit_2(run_cli("embed", "--images", str(images), "--model", str(folder), "--out", str(out),
                          "--device", "cpu"), folder / ONNX)
    assert not (out / "embedding_set.json").exists()
