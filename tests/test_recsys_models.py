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
    AlsModel,
    CooccurrenceModel,
    EaseModel,
    HybridModel,
    ItemKnnModel,
    ItemModel,
    PopularityModel,
    VisualModel,
    make_behaviour_model,
)
from recsys.models.projection import ColdFactors, ImageToBehaviour, fit_cold_factors, projected_donors
from recsys.sparse_ops import top_n_per_row

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
            "ease": EaseModel(l2=5.0, neighbours=5), "cosine": ItemKnnModel("cosine", neighbours=5),
            "bm25": ItemKnnModel("bm25", neighbours=5, weighting="log"),
            "als": AlsModel(factors=4, neighbours=5, iterations=10)}[kind].fit(interactions)


KINDS = ["popularity", "cooc", "ease", "cosine", "bm25", "als", "visual", "hybrid"]


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


def test_hybrid_parts_add_up_to_its_scores(interactions: Interactions) -> None:
    """What `why` reports: each source's part, weight included; together they are the score."""
    visual = VisualModel(5).build(interactions.item_ids, np.array(ITEMS), make_vectors())
    cooc = CooccurrenceModel(neighbours=5).fit(interactions)
    hybrid = HybridModel(0.3, cold="visual").build(cooc, visual)
    history = hybrid.history_row({"a1": 1.0, "b2": 0.5})
    parts = hybrid.history_parts(history)
    assert set(parts) == {"behaviour", "visual"}
    assert parts["behaviour"].any() and parts["visual"].any()
    scores = hybrid.score_histories(history)
    np.testing.assert_allclose(parts["behaviour"] + parts["visual"], scores, atol=2e-6)  # + tie-break
    only_visual = HybridModel(0.0).build(cooc, visual).history_parts(history)
    np.testing.assert_allclose(only_visual["visual"], parts["visual"] / 0.7, rtol=1e-5, atol=1e-7)
    position = hybrid.item_position("a1")
    row = sum(hybrid.item_parts(position).values()).toarray().ravel()
    ids, top = hybrid.similar_items("a1", k=3)
    np.testing.assert_allclose(row[[hybrid.item_position(i) for i in ids]], top, atol=1e-6)


def test_popularity_prefers_recent_purchases() -> None:
    events = pd.DataFrame([("u1", "old", 0, "purchase", 8.0), ("u2", "new", 90 * 86400, "view", 1.0),
                           ("u3", "new", 90 * 86400, "view", 1.0)], columns=EVENT_COLUMNS)
    model = PopularityModel().fit(from_events(events))
    assert model.recommend({}, k=2)[0].tolist() == ["new", "old"]  # 8 * 0.5**3 = 1 < 2


def test_hybrid_cold_items_borrow_from_look_alikes(interactions: Interactions) -> None:
    visual = VisualModel(5).build(interactions.item_ids, np.array(ITEMS), make_vectors())
    cooc = CooccurrenceModel(neighbours=5).fit(interactions)
    cold = ITEMS.index("a6")
    hybrid = HybridModel(0.8, cold="visual").build(cooc, visual)
    ids, _ = hybrid.similar_items("a6", k=5)
    assert all(i.startswith("a") for i in ids)  # its look-alikes' behaviour neighbours
    v_ids, _ = visual.similar_items("a6", k=5)
    history = hybrid.history_row({v_ids[0]: 1.0})
    # behaviour alone cannot show a6; the hybrid can, through its donors' behaviour columns
    assert cooc.score_histories(history)[0][cold] < 1e-5
    borrowed = hybrid.score_histories(history)[0][cold]
    assert borrowed > HybridModel(0.8, cold="none").build(cooc, visual).score_histories(history)[0][cold]
    half = HybridModel(1.0, cold_weight=0.5).build(cooc, visual)
    full = HybridModel(1.0, cold_weight=1.0).build(cooc, visual)
    assert half.score_histories(history)[0][cold] < full.score_histories(history)[0][cold]
    with pytest.raises(InputError):
        HybridModel(1.5)
    with pytest.raises(InputError):
        HybridModel(0.5, cold_weight=0.0)
    with pytest.raises(InputError):
        HybridModel(0.5, cold="guess")


def test_cold_entry_interleaves_cold_items_from_a_chosen_rank(interactions: Interactions) -> None:
    from recsys.models.hybrid import interleave

    scores = np.array([10, 9, 8, 7, 6, 5, 1, 0.5, 0.2, 0.1], np.float32)
    cold = np.zeros(10, bool)
    cold[[6, 7, 8]] = True  # weak scores: plainly they never reach the top 5
    order = np.argsort(-interleave(scores, cold, 2), kind="stable")
    assert list(order) == [0, 1, 6, 2, 7, 3, 8, 4, 5, 9]  # one for one from warm rank 2, in their own order
    # a skipped item (already had) takes no place: the cold items enter at the same rank among the rest
    skipped = interleave(scores, cold, 2, skip=np.array([0]))
    assert list(np.argsort(-np.delete(skipped, 0), kind="stable") + 1)[:4] == [1, 2, 6, 3]
    visual = VisualModel(5).build(interactions.item_ids, np.array(ITEMS), make_vectors())
    cooc = CooccurrenceModel(neighbours=5).fit(interactions)
    history = HybridModel(0.8).build(cooc, visual).history_row({"a0": 1.0, "a1": 1.0})
    entering = HybridModel(0.8, cold="visual", cold_from=0).build(cooc, visual)
    ids, _ = entering.recommend({"a0": 1.0, "a1": 1.0}, k=1)
    assert ids[0] == "a6"  # the only cold item, first from rank 0
    plain = HybridModel(0.8, cold="visual").build(cooc, visual).score_histories(history)[0]
    plain[history.indices] = -np.inf
    assert np.argmax(plain) != ITEMS.index("a6")  # without the entry it would not come first
    assert entering.similar_items("a0", k=1)[0][0] == "a6"
    with pytest.raises(InputError):
        HybridModel(0.5, cold_from=-1)


def test_hybrid_calibration_keeps_a_weak_best_neighbour_weak() -> None:
    """Item q's best look-alike is weak (cosine 0.2); item r's is strong (0.9). Raw cosines reach the
    blend, so r's neighbour outranks q's; the old min-max rescaling made both 1.0."""
    items = np.array(["q", "r", "x", "y", "z"])
    visual = VisualModel(4)
    visual.item_ids = items
    visual.similarity = sp.csr_matrix(np.array([
        [0, 0, 0.2, 0.1, 0], [0, 0, 0, 0.1, 0.9], [0.2, 0, 0, 0, 0], [0.1, 0.1, 0, 0, 0], [0, 0.9, 0, 0, 0]],
        dtype=np.float32))
    behaviour = CooccurrenceModel()
    behaviour.item_ids = items
    behaviour.similarity = sp.csr_matrix((5, 5), dtype=np.float32)
    hybrid = HybridModel(0.0, cold="none").build(behaviour, visual)
    scores = hybrid.score_histories(hybrid.history_row({"q": 1.0, "r": 1.0}))[0]
    assert scores[4] > 4 * scores[2]  # z (0.9 from r) far above x (0.2 from q)
    ids, _ = hybrid.similar_items("q", 2)
    assert ids.tolist() == ["x", "y"]
    # sources on different scales meet on equal terms: scaling one source changes no ranking
    behaviour.similarity = sp.csr_matrix(np.eye(5, k=1, dtype=np.float32) * 1000.0)
    blend = HybridModel(0.5, cold="none").build(behaviour, visual)
    base = blend.score_histories(blend.history_row({"q": 1.0}))[0]
    behaviour.similarity = behaviour.similarity * 0.001
    rescaled = HybridModel(0.5, cold="none").build(behaviour, visual)
    again = rescaled.score_histories(blend.history_row({"q": 1.0}))[0]
    assert np.allclose(base, again, atol=1e-4)


def test_projection_learns_the_behaviour_space(interactions: Interactions) -> None:
    """A ridge map from image vectors to ALS factors: a cold a-item's donors are a-items."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    true = rng.standard_normal((8, 3))
    fitted_map = ImageToBehaviour(alpha=1e-3).fit(x, x @ true + 1.0)
    assert np.abs(fitted_map.predict(x[:5]) - (x[:5] @ true + 1.0)).max() < 1e-2
    donors = projected_donors(interactions, np.array(ITEMS), make_vectors(), donors=3, factors=4)
    cold = ITEMS.index("a6")
    row = donors.getrow(cold)
    assert row.nnz > 0 and row.sum() == pytest.approx(1.0, abs=1e-5)
    assert all(ITEMS[j].startswith("a") for j in row.indices)
    assert donors.getrow(ITEMS.index("a1")).nnz == 0  # warm items borrow nothing


def test_cold_factors_rank_new_items_by_what_their_pictures_say_about_buyers(tmp_path: Path) -> None:
    """Two new items, one looking like the a-items and one like the b-items: every a-user's folded
    history scores the a-like one higher, every b-user's the b-like one; through the hybrid the
    a-like one is the first new item in an a-user's list; as the hybrid's visual taste the projected
    factors put a shopper's own side first; the factors survive a save and load."""
    items = np.array(ITEMS + ["b6"])
    vectors = np.vstack([make_vectors(), make_vectors()[ITEMS.index("b0")] + 0.01]).astype(np.float32)
    train = from_events(make_events(), items)
    factors = fit_cold_factors(train, items, vectors, factors=4)
    scores = factors.score(train.recent)
    a6, b6 = list(items).index("a6"), list(items).index("b6")
    users = np.array([u[1:] for u in train.user_ids], dtype=int)
    assert (scores[users < 10, a6] > scores[users < 10, b6]).all()
    assert (scores[users >= 10, b6] > scores[users >= 10, a6]).all()
    taste = HybridModel(0.0, cold="none", taste="projected").build(
        make_behaviour_model("cosine").fit(train), VisualModel(5).build(items, items, vectors), None, factors)
    for user in range(len(users)):  # the projected taste alone: a shopper's own side first
        top = np.argsort(-taste.score_histories(train.recent[user])[0], kind="stable")[:7]
        assert {items[i][0] for i in top} == {"a" if users[user] < 10 else "b"}
    behaviour = make_behaviour_model("cosine").fit(train)
    visual = VisualModel(5).build(items, items, vectors)
    hybrid = HybridModel(1.0, cold="factors", cold_from=0).build(
        behaviour, visual, projected_donors(train, items, vectors, donors=3, factors=4), factors)
    a_user = int(np.flatnonzero(users < 10)[0])
    ranked = np.argsort(-hybrid.score_histories(train.recent[a_user]), axis=1, kind="stable")[0]
    new = [i for i in ranked if i in (a6, b6)]
    assert new[0] == a6
    np.savez(tmp_path / "f.npz", **factors.arrays())
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        again = ColdFactors.from_arrays(data)
    assert again is not None and np.array_equal(again.score(train.recent), scores)


def test_make_behaviour_model_by_name() -> None:
    assert make_behaviour_model("bm25").params()["measure"] == "bm25"
    assert make_behaviour_model("ease", l2=50.0).l2 == 50.0
    with pytest.raises(InputError, match="behaviour model"):
        make_behaviour_model("svd")


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


@pytest.mark.parametrize("model", [AlsModel(factors=8, iterations=5), ItemKnnModel("cosine", 5),
                                   ItemKnnModel("bm25", 5)], ids=["als", "cosine", "bm25"])
def test_implicit_fits_the_same_on_one_thread_and_on_every_core(model, interactions, monkeypatch) -> None:
    """A small matrix is fitted on one thread (implicit_models.ONE_THREAD_BELOW_NNZ), a large one on
    every core; the answers are the same either way."""
    from recsys.models import implicit_models

    assert implicit_models._threads(interactions.matrix) == 1
    one = model.fit(interactions).similarity.toarray(), getattr(model, "item_factors", None)
    monkeypatch.setattr(implicit_models, "ONE_THREAD_BELOW_NNZ", 0)
    assert implicit_models._threads(interactions.matrix) == 0
    every = model.fit(interactions).similarity.toarray(), getattr(model, "item_factors", None)
    assert np.array_equal(one[0], every[0]) and np.array_equal(one[1], every[1])
