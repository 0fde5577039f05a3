"""Reading events in chunks as codes gives exactly what the whole-frame path gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cleaning import CleaningConfig, clean_events
from recsys.errors import InputError
from recsys.event_codes import read_interactions
from recsys.events import iter_events, load_events
from recsys.interactions import Interactions, from_events


def messy_events(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    """Power-law items (some outside the catalogue), exact duplicates, and one bot."""
    rng = np.random.default_rng(seed)
    items = rng.zipf(1.5, n) % 400
    frame = pd.DataFrame({
        "user_id": [f"user{u}" for u in rng.integers(0, 300, n)],
        "item_id": [f"item{i}" if i < 350 else f"new{i}" for i in items],
        "timestamp": rng.integers(1_700_000_000, 1_700_000_000 + 40 * 86400, n),
        "event": rng.choice(["view", "click", "purchase"], n, p=[0.7, 0.2, 0.1]),
        "weight": rng.choice([1.0, 2.0], n),
    })
    duplicates = frame.sample(200, random_state=seed)
    bot = pd.DataFrame({"user_id": "bot", "item_id": [f"new{900 + i % 7}" for i in range(60)],
                        "timestamp": 1_700_000_000 + np.arange(60), "event": "view", "weight": 1.0})
    mixed = pd.concat([frame.iloc[:1000], bot.iloc[:1], frame.iloc[1000:], duplicates, bot.iloc[1:]])
    return mixed.reset_index(drop=True)


def assert_same(a: Interactions, b: Interactions) -> None:
    assert a.user_ids.tolist() == b.user_ids.tolist()
    assert a.item_ids.tolist() == b.item_ids.tolist()
    assert a.user_ids.dtype == b.user_ids.dtype and a.item_ids.dtype == b.item_ids.dtype
    for left, right in ((a.matrix, b.matrix), (a.recent, b.recent)):
        assert left.shape == right.shape
        np.testing.assert_array_equal(left.indptr, right.indptr)
        np.testing.assert_array_equal(left.indices, right.indices)
        np.testing.assert_array_equal(left.data, right.data)
    np.testing.assert_array_equal(a.trending, b.trending)


@pytest.mark.parametrize(("suffix", "half_life", "decay_days"), [
    (".parquet", 7.0, None), (".csv", None, 10.0), (".parquet", 30.0, 5.0)])
def test_chunked_codes_equal_the_whole_frame(tmp_path: Path, suffix: str, half_life: float | None,
                                             decay_days: float | None) -> None:
    raw = messy_events()
    path = tmp_path / f"events{suffix}"
    raw.to_parquet(path) if suffix == ".parquet" else raw.to_csv(path, index=False)
    config = CleaningConfig(bot_events_per_hour=30, decay_half_life_days=decay_days)
    catalogue = np.array([f"item{i}" for i in range(350)] + ["never_seen"])

    whole = from_events(clean_events(load_events(path), config), catalogue, half_life)
    chunked = read_interactions(path, catalogue, half_life, config, batch_rows=257)

    assert "bot" not in set(whole.user_ids)  # the cleaning really dropped someone
    assert whole.item_ids[-1].startswith("new") and "never_seen" in set(whole.item_ids)
    assert_same(chunked, whole)


def test_without_a_catalogue_the_item_space_is_the_events_items(tmp_path: Path) -> None:
    raw = messy_events(seed=1)
    raw.to_parquet(tmp_path / "e.parquet")
    whole = from_events(clean_events(load_events(tmp_path / "e.parquet")))
    assert_same(read_interactions(tmp_path / "e.parquet", batch_rows=100), whole)


def test_chunked_errors_name_the_row_in_the_whole_file(tmp_path: Path) -> None:
    raw = messy_events().iloc[:500].copy()
    raw.loc[321, "event"] = "teleport"
    raw.to_parquet(tmp_path / "e.parquet")
    with pytest.raises(InputError, match=r"e.parquet: row 322, column 'event': unknown event 'teleport'"):
        list(iter_events(tmp_path / "e.parquet", batch_rows=100))
    raw.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(InputError, match=r"e.csv: row 322, column 'event'"):
        read_interactions(tmp_path / "e.csv", batch_rows=64)
