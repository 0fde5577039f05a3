"""The onnxruntime runtime: a static export of the real Lite0 gives torch eager's vectors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from embeddings.artifact import write_artifact
from embeddings.backbones import load_backbone
from embeddings.embedding_set import read_embedding_set
from embeddings.errors import InputError
from embeddings.images import decode_image
from embeddings.onnx_export import export_onnx
from embeddings.onnx_runtime import OnnxEmbedder
from embeddings.preprocess import build_transform, draft_size
from embeddings.runtimes import make_embedder
from embeddings.torch_runtime import TorchEmbedder
from jobs.fixtures.real_photos import real_photos


@pytest.fixture(scope="module")
def exported(lite0, tmp_path_factory):
    return export_onnx(lite0, tmp_path_factory.mktemp("onnx") / "lite0.onnx")


@pytest.fixture(scope="module")
def photos():
    return list(real_photos().values())


def test_static_export_folds_same_padding_into_convs(exported) -> None:
    ops = Counter(node.op_type for node in onnx.load(str(exported)).graph.node)
    assert ops["Conv"] == 49, ops
    # No dynamic padding arithmetic left (a dynamic export has Shape/Ceil/Pad around every stride 2).
    assert not {"Pad", "Shape", "Ceil", "ConstantOfShape"} & set(ops), ops
    assert sum(ops.values()) < 100, ops


def test_fp32_onnxruntime_matches_torch_eager_on_real_photos(lite0, exported, photos) -> None:
    ort_embedder = OnnxEmbedder(exported, lite0.data_config, lite0.dim, threads=2)
    torch_embedder = TorchEmbedder(lite0, "cpu")
    batch = torch.stack([torch_embedder.transform(photo) for photo in photos])
    expected = torch_embedder.embed_tensors(batch)
    got = ort_embedder.embed_tensors(batch)
    assert got.shape == (len(photos), 1280) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    # The batch axis is dynamic: one image alone gives the same vector as inside the batch.
    single = ort_embedder.embed_images(photos[:1])
    assert float(single[0] @ got[0]) >= 0.9999
    assert ort_embedder.embed_images([]).shape == (0, 1280)


def test_onnx_artifact_loads_through_load_backbone_and_picks_onnxruntime(lite0, exported, photos,
                                                                         tmp_path) -> None:
    folder = write_artifact(tmp_path / "art", arch=lite0.arch, data_config=lite0.data_config,
                            feature_dim=lite0.dim, runtime="onnx", precision="fp32", steps=[],
                            teacher={"spec": lite0.spec, "id": lite0.model_id}, onnx_file=exported)
    backbone = load_backbone(str(folder))
    assert backbone.runtime == "onnx" and backbone.dim == 1280
    embedder = make_embedder(backbone, "cpu")
    assert isinstance(embedder, OnnxEmbedder)
    assert isinstance(make_embedder(lite0, "cpu"), TorchEmbedder)
    vectors = embedder.embed_images(photos[:3])
    expected = TorchEmbedder(lite0, "cpu").embed_images(photos[:3])
    assert (vectors * expected).sum(axis=1).min() >= 0.9999
    assert backbone.model_id != lite0.model_id  # the artifact's vectors are never mixed with torch's


def test_missing_onnx_file_is_a_clear_input_error(tmp_path, lite0) -> None:
    with pytest.raises(InputError, match="not found"):
        OnnxEmbedder(tmp_path / "missing.onnx", lite0.data_config, lite0.dim)


def test_embed_job_with_an_onnx_artifact_imports_no_torch_and_gives_torch_preprocessed_vectors(
        lite0, exported, tmp_path) -> None:
    """`recsys embed --model ONNX_ARTIFACT` on the CPU: no torch, no timm, the same vectors as timm's
    own (torch) preprocessing of the same decoded photos."""
    folder = write_artifact(tmp_path / "art", arch=lite0.arch, data_config=lite0.data_config,
                            feature_dim=lite0.dim, runtime="onnx", precision="fp32", steps=[],
                            teacher={"spec": lite0.spec, "id": lite0.model_id}, onnx_file=exported)
    images = tmp_path / "photos"
    images.mkdir()
    for name, photo in real_photos().items():
        photo.save(images / f"{name}.jpg", quality=92)
    out = tmp_path / "set"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jobs", "embed", "--images", str(images),
         "--out", str(out), "--model", str(folder), "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "embeddings.onnx_runtime" in imported  # the import log is what it claims to be
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "timm", "torchvision"))
    assert not heavy, heavy[:10]

    result = read_embedding_set(out)
    assert len(result.item_ids) == len(real_photos())
    torch_transform = build_transform(lite0.data_config)
    onnx = OnnxEmbedder(exported, lite0.data_config, lite0.dim)
    pixels = [torch_transform(decode_image((images / f"{item}.jpg").read_bytes(),
                                           draft_size=draft_size(lite0.data_config)))
              for item in result.item_ids]
    expected = onnx.embed_tensors(torch.stack(pixels))
    cosines = (result.vectors * expected).sum(axis=1)
    assert cosines.min() > 0.999, cosines
