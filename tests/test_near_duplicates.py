"""Retrieval on real photos: augmented variants of one photo find each other, only with real weights."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from embeddings.backbones import load_backbone
from embeddings.embedding_set import read_embedding_set
from embeddings.runner import EmbedOptions, embed_catalog
from jobs.fixtures.real_photos import augment, real_photos

N_VARIANTS = 4


@pytest.fixture(scope="module")
def photo_catalog(tmp_path_factory) -> pd.DataFrame:
    """Each real photo as itself plus 4 augmented variants, written as JPEG files."""
    folder = tmp_path_factory.mktemp("photos")
    rng = random.Random(0)
    rows = []
    for name, photo in real_photos().items():
        photo.save(folder / f"{name}-orig.jpg", quality=92)
        rows.append({"item_id": f"{name}-orig", "image": str(folder / f"{name}-orig.jpg"), "photo": name})
        for v in range(N_VARIANTS):
            path = folder / f"{name}-v{v}.jpg"
            augment(photo, rng).save(path, quality=90)
            rows.append({"item_id": f"{name}-v{v}", "image": str(path), "photo": name})
    return pd.DataFrame(rows)


def top4_hit_rate(catalog: pd.DataFrame, out_dir, backbone) -> float:
    embed_catalog(catalog, out_dir, backbone, EmbedOptions(batch_size=16, workers=1, progress=False))
    result = read_embedding_set(out_dir)
    photo_of = dict(zip(catalog["item_id"], catalog["photo"]))
    labels = np.array([photo_of[i] for i in result.item_ids])
    scores = result.vectors @ result.vectors.T
    np.fill_diagonal(scores, -np.inf)
    top4 = np.argsort(-scores, axis=1)[:, :N_VARIANTS]
    is_variant = np.array(["-v" in i for i in result.item_ids])
    hits = (labels[top4] == labels[:, None]).all(axis=1)
    return float(hits[is_variant].mean())


def test_variants_fill_top4_with_pretrained_weights_not_random(photo_catalog, tmp_path, lite0) -> None:
    assert photo_catalog["photo"].nunique() >= 10
    pretrained = top4_hit_rate(photo_catalog, tmp_path / "pretrained", lite0)
    torch.manual_seed(0)  # random init, but the same one every run
    random_weights = top4_hit_rate(photo_catalog, tmp_path / "random",
                                   load_backbone("tf_efficientnet_lite0", pretrained=False))
    print(f"top-4 hit rate: pretrained {pretrained:.3f}, random weights {random_weights:.3f}")
    assert pretrained >= 0.9, pretrained
    assert random_weights <= pretrained - 0.3, (pretrained, random_weights)
