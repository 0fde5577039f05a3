"""Every model honours one contract (after implicit's shared test mixin), plus each model's own facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import InputError, UnknownItem
from recsys.events import EVENT_COLUMNS
from recsys.interactions import Interactions, from_events
from recsys.models import (
    CooccurrenceModel,
    EaseModel,
    HybridModel,
    ItemModel,
    PopularityModel,
    VisualModel,
)
from recsys.sparse_ops import row_max_normalise, row_min_max_normalise, top_n_per_row

# Two tastes: users 0-9 use items a0..a5, users 10-19 use b0..b5; cold item a6 has no events.
ITEMS = [f"a{i}" for i in range(7)] + [f"b{i}" for i in range(6)]


def make_events() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(20):
        group = "a" if u < 10 else "b"
        for t, i in enumerate(rng.choice(6, 4, replace=False)):
            rows.append((f"u{u}", f"{group}{i}", 1000 * u + t, "purchase" if t == 0 else "view",
                         8.0 if t == 0 else 1.0))
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def make_vectors() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = {"a": rng.standard_normal(16), "b": rng.standard_normal(16)}
    v = np.stack([base[i[0]] + 0.3 * rng.standard_normal(16) for i in ITEMS]).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def interactions() -> Interactions:
    return from_events(make_events(), np.array(ITEMS))


def fitted(kind: str, interactions: Interactions) -> ItemModel:
    visual = VisualModel(5).build(interactions.item_ids, np.array(ITEMS), make_vectors())
    if kind == "visual":
        return visual
    if kind == "hybrid":
        return HybridModel(0.5).build(CooccurrenceModel(neighbours=5).fit(interactions), visual)
    return {"popularity": PopularityModel(), "cooc": CooccurrenceModel(neighbours=5),
            "ease": EaseModel(l2=5.0, neighbours=5)}[kind].fit(interactions)


KINDS = ["popularity", "cooc", "ease", "visual", "hybrid"]


@pytest.mark.parametrize("kind", KINDS)
def test_contract(kind: str, interactions: Interactions, tmp_path: Path) -> None:
    model = fitted(kind, interactions)
    ids, scores = model.similar_items("a1", k=4)
    assert ids.shape == scores.shape and 0 < len(ids) <= 4
    assert "a1" not in ids
    assert np.all(np.diff(scores) <= 1e-7)  # best first
    if kind != "popularity":  # the others know a1's neighbours are a-items
        assert all(i.startswith("a") for i in ids[:3])
    rec_ids, rec_scores = model.recommend({"a0": 1.0, "a2": 1.0}, k=5)
    assert "a0" not in rec_ids and "a2" not in rec_ids
    assert len(rec_ids) == len(rec_scores) == 5
    batch = model.score_histories(interactions.recent[:3])
    assert batch.shape == (3, len(ITEMS))
    with pytest.raises(UnknownItem):
        model.similar_items("nope")
    if kind != "hybrid":  # the hybrid is rebuilt from its saved parts
        model.save(tmp_path / "m.npz")
        again = ItemModel.load(tmp_path / "m.npz")
        assert type(again) is type(model)
        assert np.array_equal(again.similar_items("a1", 4)[0], ids)
        with np.load(tmp_path / "m.npz", allow_pickle=False) as data:  # plain arrays only
            assert "kind" in data


def test_cooccurrence_blocks_agree_with_one_block(interactions: Interactions) -> None:
    one = CooccurrenceModel(neighbours=4, block_items=4096).fit(interactions).similarity
    small = CooccurrenceModel(neighbours=4, block_items=3).fit(interactions).similarity
    by_cost = CooccurrenceModel(neighbours=4, block_pairs=20).fit(interactions)
    assert len(by_cost._blocks(np.full(10, 15.0))) == 10  # each item alone over the budget of 20
    assert abs(one - small).max() < 1e-6 and abs(one - by_cost.similarity).max() < 1e-6
    assert one.diagonal().max() == 0  # no item is its own neighbour
    assert np.diff(one.indptr).max() <= 4
    assert one[ITEMS.index("a6")].nnz == 0  # cold item: no behaviour row


def test_ease_refuses_large_catalogues(interactions: Interactions) -> None:
    with pytest.raises(InputError, match="max_items"):
        EaseModel(max_items=5).fit(interactions)


def test_popularity_prefers_recent_purchases() -> None:
    events = pd.DataFrame([("u1", "old", 0, "purchase", 8.0), ("u2", "new", 90 * 86400, "view", 1.0),
                           ("u3", "new", 90 * 86400, "view", 1.0)], columns=EVENT_COLUMNS)
    model = PopularityModel().fit(from_events(events))
    assert model.recommend({}, k=2)[0].tolist() == ["new", "old"]  # 8 * 0.5**3 = 1 < 2


def test_hybrid_cold_items_fall_back_to_visual(interactions: Interactions) -> None:
    visual = VisualModel(5).build(interactions.item_ids, np.array(ITEMS), make_vectors())
    cooc = CooccurrenceModel(neighbours=5).fit(interactions)
    hybrid = HybridModel(0.8).build(cooc, visual)
    ids, scores = hybrid.similar_items("a6", k=5)
    v_ids, _ = visual.similar_items("a6", k=5)
    assert ids.tolist() == v_ids.tolist()  # full visual weight, same order
    assert scores[0] == pytest.approx(1.0)
    # a warm user whose history sits next to the cold item can be shown it
    scores_all = hybrid.score_histories(hybrid.history_row({v_ids[0]: 1.0}))[0]
    assert scores_all[ITEMS.index("a6")] > 0
    assert cooc.score_histories(cooc.history_row({v_ids[0]: 1.0}))[0][ITEMS.index("a6")] < 1e-5
    half = HybridModel(0.8, cold_weight=0.5).build(cooc, visual)
    assert half.similar_items("a6", k=1)[1][0] == pytest.approx(0.5)  # cold rows scaled by c
    assert half.score_histories(half.history_row({v_ids[0]: 1.0}))[0][ITEMS.index("a6")] == pytest.approx(
        0.5 * scores_all[ITEMS.index("a6")], rel=1e-4)
    with pytest.raises(InputError):
        HybridModel(1.5)
    with pytest.raises(InputError):
        HybridModel(0.5, cold_weight=0.0)


def test_sparse_helpers() -> None:
    m = sp.csr_matrix(np.array([[0, 3, 1, 2], [0, 0, 0, 0], [5, 4, 0, 0]], dtype=np.float32))
    top = top_n_per_row(m, 2).toarray()
    assert top.tolist() == [[0, 3, 0, 2], [0, 0, 0, 0], [5, 4, 0, 0]]
    rand = sp.random(60, 80, density=0.3, random_state=1, format="csr", dtype=np.float32)
    fast = top_n_per_row(rand, 7).toarray()
    for i, row in enumerate(rand.toarray()):  # against a plain per-row sort
        best = np.argsort(-row, kind="stable")[:7]
        expected = np.zeros_like(row)
        expected[best] = row[best]
        assert np.array_equal(fast[i], expected)
    assert row_max_normalise(m).toarray()[0].tolist() == pytest.approx([0, 1, 1 / 3, 2 / 3])
    assert row_min_max_normalise(m, floor=0.0).toarray()[0].tolist() == pytest.approx([0, 1, 0, 0.5])
    assert row_min_max_normalise(m).toarray()[0].min() == 0 and row_min_max_normalise(m).data.min() > 0
