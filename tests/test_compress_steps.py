"""Each compression step on a small scale, with the real pretrained Lite0 and real photos."""

from __future__ import annotations

import copy
import random

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from embeddings.artifact import write_artifact
from embeddings.backbones import load_backbone
from embeddings.compress.distill import DistillOptions, distill, distillation_loss
from embeddings.compress.project import explained_variance, fit_projection
from embeddings.compress.prune import count_macs, prune_channels
from embeddings.compress.quantize import quantize_int8
from embeddings.errors import InputError
from embeddings.onnx_export import export_onnx
from embeddings.onnx_runtime import OnnxEmbedder
from embeddings.preprocess import build_transform
from embeddings.torch_runtime import TorchEmbedder
from embeddings.vectors import project
from jobs.fixtures.real_photos import augment, real_photos
from tests.imagegen import product_image


@pytest.fixture(scope="module")
def photos():
    return real_photos()


def test_distillation_brings_a_low_resolution_student_closer_to_the_teacher(lite0, photos) -> None:
    """A 96 px student starting from the teacher's weights: 10 steps on random augmented views
    halve its loss on the photos' plain centre-crop views (which training never sees as such)."""
    train = list(photos.values())[:8]
    student = copy.deepcopy(lite0.model)
    student_config = {**lite0.data_config, "input_size": (3, 96, 96)}
    teacher_x = torch.stack([build_transform(lite0.data_config)(p) for p in train])
    student_x = torch.stack([build_transform(student_config)(p) for p in train])
    with torch.no_grad():
        target = lite0.model(teacher_x)
        before = float(distillation_loss(student.eval()(student_x), target))
    result = distill(student, lambda batch: lite0.model(batch), train, teacher_config=lite0.data_config,
                     student_config=student_config,
                     options=DistillOptions(steps=10, batch_size=8, lr=2e-4, seed=0))
    with torch.no_grad():
        after = float(distillation_loss(student(student_x), target))
    assert result.steps == 10 and len(result.losses) == 10
    print(f"distillation loss on centre views {before:.4f} -> {after:.4f}")
    assert after < 0.75 * before, (before, after)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])


def test_distillation_loss_is_zero_only_for_the_same_vectors() -> None:
    vectors = F.normalize(torch.randn(6, 32), dim=1)
    assert float(distillation_loss(vectors * 3.0, vectors)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(torch.randn(6, 32), vectors)) > 0.5


def test_int8_keeps_fidelity_on_real_photos(lite0, photos, tmp_path) -> None:
    """Static int8 calibrated on other images stays faithful to fp32 on real photos it never saw."""
    fp32 = export_onnx(lite0, tmp_path / "fp32.onnx")
    transform = build_transform(lite0.data_config)
    rng = random.Random(1)
    names = list(photos)
    calibration = [product_image(i) for i in range(8)] + [augment(photos[n], rng) for n in names[:8]]
    batch = torch.stack([transform(image) for image in calibration]).numpy()
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", [batch[:8], batch[8:]])
    graph = onnx.load(str(int8)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 30
    assert fp32.stat().st_size > 2.5 * int8.stat().st_size
    evaluation = [photos[n] for n in names]  # the originals: calibration saw only crops of 8 of them
    expected = TorchEmbedder(lite0, "cpu").embed_images(evaluation)
    got = OnnxEmbedder(int8, lite0.data_config, lite0.dim).embed_images(evaluation)
    cosines = (expected * got).sum(axis=1)
    print(f"int8 cosine to fp32 on real photos: mean {cosines.mean():.4f} min {cosines.min():.4f}")
    assert cosines.mean() >= 0.98 and cosines.min() >= 0.95, cosines
    # Retrieval order survives: each photo's nearest other photo is the same under both.
    def nearest(v: np.ndarray) -> np.ndarray:
        scores = v @ v.T
        np.fill_diagonal(scores, -np.inf)
        return scores.argmax(axis=1)
    assert (nearest(expected) == nearest(got)).mean() >= 0.75


def test_pruning_cuts_macs_keeps_dim_and_round_trips_through_an_artifact(lite0, tmp_path) -> None:
    model = copy.deepcopy(lite0.model)
    input_size = lite0.data_config["input_size"]
    macs_before, params_before = count_macs(model, input_size)
    prune_channels(model, input_size, 0.25)
    macs_after, params_after = count_macs(model, input_size)
    assert macs_before / macs_after >= 1.4 and params_after < params_before
    x = torch.randn(2, *input_size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, lite0.dim) and torch.isfinite(out).all()
    folder = write_artifact(tmp_path / "pruned", arch=lite0.arch, data_config=lite0.data_config,
                            feature_dim=lite0.dim, runtime="torch", precision="fp32",
                            steps=[{"step": "prune", "ratio": 0.25}], teacher={"spec": "t"}, model=model,
                            pruned=True)
    reloaded = load_backbone(str(folder))
    assert reloaded.dim == lite0.dim and reloaded.runtime == "torch"
    with torch.no_grad():
        again = reloaded.model(x)
    assert torch.allclose(out, again, atol=1e-5)
    with pytest.raises(InputError, match="between 0 and 1"):
        prune_channels(copy.deepcopy(lite0.model), input_size, 1.5)


def test_projection_keeps_most_variance_and_checks_dim() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 6))
    vectors = latent @ rng.normal(size=(6, 64)) + 0.05 * rng.normal(size=(200, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    projection = fit_projection(vectors.astype(np.float32), 8)
    assert projection.shape == (9, 64)
    assert explained_variance(vectors, projection) > 0.95
    projected = project(vectors, projection)
    assert projected.shape == (200, 8) and np.allclose(np.linalg.norm(projected, axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="--dim"):
        fit_projection(vectors, 64)
