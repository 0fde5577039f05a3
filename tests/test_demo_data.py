"""The demo-data generator: deterministic by seed, readable by our loaders, cold items arrive late."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings.backbone import Backbone
from embeddings.catalog import read_catalog
from jobs.demo.data import DemoConfig, DemoData, draw_item, generate
from recsys.events import load_events

SMALL = DemoConfig(n_items=30, n_users=25, days=20, late_days=5, late_frac=0.3)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", SMALL)
    b = generate(tmp_path / "b", SMALL)
    c = generate(tmp_path / "c", DemoConfig(**{**SMALL.__dict__, "seed": 1}))
    assert a.events.read_bytes() == b.events.read_bytes()
    assert a.catalog.read_bytes() == b.catalog.read_bytes()
    assert (a.images / "item00007.png").read_bytes() == (b.images / "item00007.png").read_bytes()
    assert a.events.read_bytes() != c.events.read_bytes()


def test_files_load_and_cold_items_have_no_early_events(tmp_path: Path) -> None:
    data = generate(tmp_path, SMALL)
    catalog = read_catalog(data.catalog)
    assert len(catalog) == 30 and {"category", "in_stock", "title"} <= set(catalog.columns)
    events = load_events(data.events)
    assert set(events.event) <= {"view", "click", "purchase"}
    assert (events.event == "view").sum() > (events.event == "purchase").sum() > 0
    attributes = pd.read_csv(data.attributes)
    late = attributes[attributes.arrival > attributes.arrival.min()]
    assert len(late) > 0
    joined = events.merge(attributes[["item_id", "arrival"]], on="item_id")
    assert (joined.timestamp >= joined.arrival).all()  # nobody touches an item before it arrives


def top_share(data: DemoData, column: str) -> float:
    """Mean over users of the share of their events on their most frequent value of `column`."""
    events = pd.read_csv(data.events).merge(pd.read_csv(data.attributes), on="item_id")
    shares = events.groupby("user_id")[column].agg(lambda c: c.value_counts(normalize=True).iloc[0])
    return float(shares.mean())


def test_users_follow_their_tastes_as_far_as_looks_say(tmp_path: Path) -> None:
    small = dict(n_items=60, n_users=40, days=20)
    looks = generate(tmp_path / "looks", DemoConfig(**small, looks=1.0))
    blind = generate(tmp_path / "blind", DemoConfig(**small, looks=0.0))
    # six colours, six makers: a user's most frequent one covers far more than 1 in 6 where it counts
    assert top_share(looks, "colour") > 0.35 and top_share(blind, "maker") > 0.35
    # and where it does not count, about what chance gives (40 users, ~35 events each: ~0.3)
    assert top_share(blind, "colour") < top_share(looks, "colour") - 0.1
    assert top_share(looks, "maker") < top_share(blind, "maker") - 0.1
    with pytest.raises(ValueError, match="looks"):
        DemoConfig(looks=1.5)


def test_drawings_differ_by_attribute() -> None:
    red = draw_item("circle", "red", "solid", "white", 1)
    blue = draw_item("circle", "blue", "solid", "white", 1)
    assert red.size == (224, 224) and red.getpixel((112, 112)) != blue.getpixel((112, 112))


def test_lite0_sees_the_hidden_styles_and_the_evaluation_runs(tmp_path: Path, lite0: Backbone) -> None:
    """Real pretrained Lite0 vectors of the drawn items: look-alikes share attributes far above chance,
    and the evaluation report holds every model, overall and on the cold-start slice."""
    from PIL import Image

    from embeddings.torch_runtime import TorchEmbedder
    from recsys.evaluation import VisualVectors, evaluate

    data = generate(tmp_path, DemoConfig(n_items=36, n_users=60, days=30, late_days=8))
    catalog = pd.read_csv(data.catalog)
    images = [Image.open(tmp_path / p).convert("RGB") for p in catalog.image]
    vectors = TorchEmbedder(lite0, device="cpu").embed_images(images)
    attributes = pd.read_csv(data.attributes).set_index("item_id").loc[catalog.item_id]
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    nearest = sims.argmax(axis=1)
    same = [(attributes.iloc[i].colour == attributes.iloc[j].colour) or
            (attributes.iloc[i]["shape"] == attributes.iloc[j]["shape"]) for i, j in enumerate(nearest)]
    assert np.mean(same) > 0.6  # chance: 1 - (5/6) * (5/6) = 0.31
    report = evaluate(load_events(data.events), VisualVectors(catalog.item_id.to_numpy(str), vectors),
                      split="temporal")
    assert set(report["models"]) == {"popularity", "behaviour_cosine", "behaviour_bm25", "behaviour_ease",
                                     "behaviour_als", "visual", "hybrid"}
    assert report["cold_items_in_test"] > 0
    assert report["cold_start"]["visual"]["recall@10"] > report["cold_start"]["behaviour_cosine"]["recall@10"]
