"""The demo-data generator: deterministic by seed, readable by our loaders, cold items arrive late."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from embeddings.catalog import read_catalog
from jobs.demo_data import DemoConfig, draw_item, generate
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


def test_users_follow_their_tastes(tmp_path: Path) -> None:
    data = generate(tmp_path, DemoConfig(n_items=60, n_users=40, days=20))
    events = pd.read_csv(data.events).merge(pd.read_csv(data.attributes), on="item_id")
    # a user's most frequent colour covers far more of their events than 1 in 6 (six colours)
    share = events.groupby("user_id").colour.agg(lambda c: c.value_counts(normalize=True).iloc[0])
    assert share.mean() > 0.35


def test_drawings_differ_by_attribute() -> None:
    red = draw_item("circle", "red", "solid", "white", 1)
    blue = draw_item("circle", "blue", "solid", "white", 1)
    assert red.size == (224, 224) and red.getpixel((112, 112)) != blue.getpixel((112, 112))
