"""The bundled weights are the real ImageNet EfficientNet-Lite0, loaded offline."""

from __future__ import annotations

import torch

from embeddings.preprocess import build_transform
from embeddings.timm_models import bundled_weights_path, load_classifier
from jobs.fixtures.real_photos import real_photo

TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN = 281, 282, 283, 284, 285
ESPRESSO = 967


def test_bundled_lite0_weights_classify_real_photos() -> None:
    assert bundled_weights_path("tf_efficientnet_lite0").is_file()
    model = load_classifier("tf_efficientnet_lite0")
    from timm.data import resolve_data_config

    transform = build_transform(resolve_data_config({}, model=model))
    batch = torch.stack([transform(real_photo("chelsea")), transform(real_photo("coffee"))])
    with torch.no_grad():
        probs = model(batch).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert top[0] in (TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN)
    assert top[1] == ESPRESSO
    assert probs[1, ESPRESSO] > 0.8


def test_backbone_gives_pooled_1280_dim_features(lite0) -> None:
    assert lite0.dim == 1280
    assert lite0.data_config["mean"] == (0.5, 0.5, 0.5)
    assert lite0.data_config["std"] == (0.5, 0.5, 0.5)
    assert lite0.data_config["interpolation"] == "bicubic"
    with torch.no_grad():
        out = lite0.model(torch.zeros(2, 3, 224, 224))
    assert tuple(out.shape) == (2, 1280)
    assert len(lite0.model_id) == 16
