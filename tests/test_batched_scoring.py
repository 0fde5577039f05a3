"""Scores built in bounded batches of rows (the ranker's candidates and features, validation's lists,
the projected donors) are those of the whole matrix at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embeddings.vectors import l2_normalize
from recsys.events import EVENT_COLUMNS
from recsys.interactions import from_events
from recsys.models import VisualModel, make_behaviour_model, projection
from recsys.models import base as base_module
from recsys.models.base import zscores
from recsys.models.projection import fit_cold_factors, projected_donors
from recsys.models.ranker import RankerModel, _newness, _ranks, _ranks_at, item_age_days


def old_candidates(self: RankerModel, recent: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RankerModel.candidates as it was before batching: every user's dense rows at once."""
    recent = sp.csr_matrix(recent, dtype=np.float32)
    binary = recent.copy()
    binary.data[:] = 1.0
    n_users, n_items = recent.shape
    behaviour = self.behaviour.score_histories(recent)
    borrowed = np.asarray((self.donors @ behaviour.T).T, dtype=np.float32) if self.donors.nnz else \
        np.zeros_like(behaviour)
    behaviour_all = behaviour + borrowed
    behaviour_plain = self.behaviour.score_histories(binary)
    visual = np.asarray((recent @ self.visual.similarity).todense(), dtype=np.float32)
    visual_sum = np.asarray((binary @ self.visual.similarity).todense(), dtype=np.float32)
    length = np.asarray(binary.sum(axis=1), dtype=np.float32)
    popularity = self.popularity if self.popularity is not None else np.zeros(n_items, np.float32)
    cold = (self.age_days < 0).astype(np.float32)
    taste = self.factors.score(recent) if self.factors is not None else np.zeros_like(behaviour)
    seen = binary.tocoo()
    masked = {}
    for name, values in (("behaviour", behaviour_all), ("visual", visual), ("taste", taste),
                         ("popularity", np.broadcast_to(popularity, (n_users, n_items)).copy()),
                         ("newest", np.broadcast_to(_newness(self.age_days), (n_users, n_items)).copy())):
        values = values.copy()
        values[seen.row, seen.col] = -np.inf
        masked[name] = values
    k = min(self.per_source, n_items)
    chosen = np.zeros((n_users, n_items), bool)
    for name, values in masked.items():
        if name == "taste" and self.factors is None:
            continue
        top = np.argpartition(-values, k - 1, axis=1)[:, :k]
        np.put_along_axis(chosen, top, True, axis=1)
    chosen[seen.row, seen.col] = False
    users, items = np.nonzero(chosen)
    ranks = {name: _ranks(masked[name]) for name in ("behaviour", "visual", "popularity", "taste")}
    best = self._visual_best(binary, users, items)
    features = np.column_stack([
        zscores(behaviour_all)[users, items], ranks["behaviour"][users, items],
        zscores(borrowed)[users, items], zscores(visual)[users, items], ranks["visual"][users, items],
        (visual_sum / np.maximum(length, 1.0))[users, items], best, ranks["popularity"][users, items],
        cold[items], self.age_days[items], length[users, 0], zscores(behaviour_plain)[users, items],
        zscores(taste)[users, items], ranks["taste"][users, items],
    ]).astype(np.float32)
    return users, items, features


def random_shop(seed: int, n_users: int = 70, n_items: int = 300, cold: int = 60):
    """Events over the first items (the last `cold` have none), pictures for all, and a ranker over them."""
    rng = np.random.default_rng(seed)
    items = np.array([f"i{i:04d}" for i in range(n_items)])
    rows = [(f"u{u}", items[rng.integers(0, n_items - cold)], 1000 * u + t, "view", float(rng.integers(1, 3)))
            for u in range(n_users) for t in range(int(rng.integers(1, 12)))]
    events = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    train = from_events(events, items, 7.0)
    vectors = rng.standard_normal((n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    behaviour = make_behaviour_model("cooc").fit(train)
    visual = VisualModel(10).build(items, items, vectors)
    donors = projected_donors(train, items, vectors, donors=3, factors=4)
    factors = fit_cold_factors(train, items, vectors, factors=4)
    first = events.groupby("item_id").timestamp.min().reindex(items).to_numpy(np.float64)
    ages = item_age_days(first, 90_000.0)
    ranker = RankerModel(per_source=20).build(behaviour, visual, donors, ages, factors)
    return ranker, train


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_factors", [True, False])
def test_candidates_in_batches_match_the_whole_matrix(seed: int, with_factors: bool, monkeypatch) -> None:
    ranker, train = random_shop(seed)
    if not with_factors:
        ranker.factors = None
    want = old_candidates(ranker, train.recent)
    # one batch; batches of 7 users (the last of 7 or 8: never one alone); of 2 users
    for cells in (10_000_000, 300 * 7, 300):
        monkeypatch.setattr(base_module, "BATCH_CELLS", cells)
        got = ranker.candidates(train.recent)
        assert len(got[0]) > 0
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_ranker_scores_and_training_match_in_batches(monkeypatch) -> None:
    """Trained and scored in batches of 5 users: the same booster and the same scores as in one batch."""
    ranker, train = random_shop(3, n_users=120)
    held = train.recent
    users, items, _ = ranker.candidates(held)
    rng = np.random.default_rng(0)
    relevant = [set(rng.choice(items[users == u], 2).tolist()) | {int(rng.integers(300))}
                for u in range(held.shape[0])]  # two candidates and one item at random
    booster = ranker.train(held, relevant).booster
    assert booster is not None
    whole = booster.model_to_string()
    scores = ranker.score_histories(held)
    monkeypatch.setattr(base_module, "BATCH_CELLS", 300 * 5)
    assert ranker.train(held, relevant).booster.model_to_string() == whole
    assert np.array_equal(ranker.score_histories(held), scores)


def test_ranks_at_the_asked_pairs_are_the_full_ranks() -> None:
    """Ties (keep position order), -inf, 0.0 beside -0.0, negative values: as the stable full sort."""
    rng = np.random.default_rng(5)
    values = rng.choice(np.array([0.0, -0.0, 1.5, -2.0, 3.0, -np.inf, 1e-6], np.float32), (40, 500))
    values[:20] += rng.standard_normal((20, 500)).astype(np.float32) * (rng.random((20, 500)) < 0.3)
    chosen = rng.random(values.shape) < 0.1
    rows, cols = np.nonzero(chosen)
    assert np.array_equal(_ranks_at(values, rows, cols), _ranks(values)[rows, cols])
    assert np.array_equal(_ranks_at(values.astype(np.float64), rows, cols), _ranks(values)[rows, cols])


def old_projected_donors(train, vector_ids, vectors, donors=20, factors=32, alpha=1.0) -> sp.csr_matrix:
    """projected_donors as it was before batching: every (cold, warm) similarity at once."""
    n = len(train.item_ids)
    space = {item: i for i, item in enumerate(train.item_ids)}
    position = np.array([space.get(str(item), -1) for item in vector_ids], dtype=np.int64)
    has_vector = position >= 0
    warm = train.item_counts() > 0
    y = projection.AlsModel(factors=factors, regularization=0.05, neighbours=0).fit(train).item_factors
    teach = has_vector & warm[np.maximum(position, 0)]
    ask = has_vector & ~warm[np.maximum(position, 0)]
    guessed = projection.ImageToBehaviour(alpha).fit(vectors[teach], y[position[teach]]).predict(vectors[ask])
    warm_ids = np.flatnonzero(warm)
    sims = l2_normalize(guessed) @ l2_normalize(y[warm_ids]).T
    k = min(donors, len(warm_ids))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    sums = vals.sum(axis=1, keepdims=True)
    vals = np.where(sums > 0, vals / np.maximum(sums, 1e-12), 0.0)
    rows, cols = np.repeat(position[ask], k), warm_ids[top].ravel()
    matrix = sp.csr_matrix((vals.ravel().astype(np.float32), (rows, cols)), shape=(n, n))
    matrix.eliminate_zeros()
    return matrix


@pytest.mark.parametrize("seed", [0, 1])
def test_projected_donors_in_batches_are_those_of_one_product(seed: int, monkeypatch) -> None:
    ranker, train = random_shop(seed, n_items=400, cold=150)
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    want = old_projected_donors(train, train.item_ids, vectors, donors=5, factors=4)
    assert want.nnz > 0
    for cells in (10_000_000, 250 * 7, 1):  # one batch, 7 cold items at a time, 2 at a time
        monkeypatch.setattr(base_module, "BATCH_CELLS", cells)
        got = projected_donors(train, train.item_ids, vectors, donors=5, factors=4)
        # the same donors; their weights as close as BLAS rounding allows (a product over fewer rows
        # may round the last bit of a similarity otherwise: at 100,000 items 8% of the weights moved,
        # by at most 3e-8, no donor changed)
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.allclose(got.data, want.data, rtol=1e-5, atol=1e-7)
