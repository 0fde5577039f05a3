"""The hybrid's cold entry (`interleave`) sorts only what a list can reach, and answers as before.

`reference` is the interleave as it was before it was bounded (every warm score sorted, every cold
item ranked, once per user and setting): the bounded one must give the same scores byte for byte
without `reach` (a zero's sign aside: the old sort placed 0.0 and -0.0 in no fixed order), and the
same first `reach` places with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.hybrid import interleave


def reference(scores: np.ndarray, cold: np.ndarray, start: int, skip: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(scores, np.float32).copy()
    ranked = np.isfinite(out)
    if skip is not None and len(skip):
        ranked[skip] = False
    warm_pos = np.flatnonzero(ranked & ~cold)
    cold_pos = np.flatnonzero(ranked & cold)
    if not len(cold_pos):
        return out
    warm_scores = np.sort(out[warm_pos].astype(np.float64))[::-1]
    cold_pos = cold_pos[np.argsort(-out[cold_pos], kind="stable")]
    slots = start + np.arange(len(cold_pos))
    n = len(warm_scores)
    if n == 0:
        return out
    upper = np.concatenate([[warm_scores[0] + 1.0], warm_scores])
    inside = slots < n
    mid = (upper[np.minimum(slots, n - 1)] + warm_scores[np.minimum(slots, n - 1)]) / 2
    step = max(abs(warm_scores[-1]), 1.0) * 1e-3
    out[cold_pos] = np.where(inside, mid, warm_scores[-1] - step * (1 + slots - n)).astype(np.float32)
    return out


def random_case(rng: np.random.Generator, ties: bool) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    n = int(rng.integers(1, 400))
    scores = rng.normal(size=n).astype(np.float32)
    if ties:  # few distinct values: ties everywhere, as zero scores and equal popularity give
        scores = np.round(scores * 2).astype(np.float32) / 2
    scores[rng.random(n) < 0.05] = -np.inf  # not rankable
    cold = rng.random(n) < rng.choice([0.02, 0.3, 0.9, 1.0])
    skip = np.flatnonzero(rng.random(n) < 0.1)
    return scores, cold, int(rng.integers(0, 12)), skip


@pytest.mark.parametrize("ties", [False, True])
def test_interleave_gives_the_same_scores_as_the_full_sort(ties: bool) -> None:
    rng = np.random.default_rng(1)
    for _ in range(500):
        scores, cold, start, skip = random_case(rng, ties)
        new, old = interleave(scores, cold, start, skip), reference(scores, cold, start, skip)
        assert (new + 0).tobytes() == (old + 0).tobytes()  # + 0: -0.0 becomes 0.0


@pytest.mark.parametrize("ties", [False, True])
def test_interleave_with_a_reach_fills_the_first_places_as_before(ties: bool) -> None:
    rng = np.random.default_rng(2)
    truncated = 0
    for _ in range(500):
        scores, cold, start, skip = random_case(rng, ties)
        reach = int(rng.integers(1, 30))
        old = reference(scores, cold, start, skip)
        new = interleave(scores, cold, start, skip, reach)
        old[skip], new[skip] = -np.inf, -np.inf  # what a list never shows
        top_old, top_new = (np.argsort(-s, kind="stable")[:reach] for s in (old, new))
        # the same scores in the first places
        assert (old[top_old] + 0).tobytes() == (new[top_new] + 0).tobytes()
        if not ties:  # and (no score shared) the same items
            assert list(top_old) == list(top_new)
        truncated += int(np.isneginf(new).sum() > np.isneginf(old).sum())
    assert truncated > 100  # the bound did leave cold items out


def test_a_reach_leaves_out_only_cold_items_that_cannot_reach_the_list() -> None:
    scores = np.array([10, 9, 8, 7, 6, 5, 1, 0.5, 0.2, 0.1], np.float32)
    cold = np.zeros(10, bool)
    cold[[6, 7, 8, 9]] = True
    full = interleave(scores, cold, 2)
    bounded = interleave(scores, cold, 2, reach=3)
    assert list(np.argsort(-bounded, kind="stable")[:3]) == [0, 1, 6]
    # the first three cold items (as many as the list has places) keep their scores, the last scores -inf
    assert bounded[[0, 1, 2, 3, 4, 5, 6, 7, 8]].tolist() == full[[0, 1, 2, 3, 4, 5, 6, 7, 8]].tolist()
    assert np.isneginf(bounded[9])


def test_validation_ranks_users_as_before_the_bound() -> None:
    """rank_users (validation's top K, with a reach) gives the lists the full sort gives, on random
    events where most items are new and a fifth may not be shown."""
    import pandas as pd

    from recsys.evaluation import Holdout, rank_users
    from recsys.interactions import from_events
    from recsys.models import CooccurrenceModel, HybridModel, VisualModel

    rng = np.random.default_rng(3)
    items = np.array([f"i{i}" for i in range(300)])
    events = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 120, 1500)],
                           "item_id": items[rng.integers(0, 60, 1500)],  # items 60..299 are new
                           "timestamp": np.arange(1500), "event": "view", "weight": 1.0})
    train = from_events(events, items, None)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    visual = VisualModel(20).build(items, items, vectors)
    behaviour = CooccurrenceModel(neighbours=20).fit(train)
    hybrid = HybridModel(0.5, cold="visual", cold_from=3).build(behaviour, visual)
    showable = rng.random(300) > 0.2
    holdout = Holdout(train, np.arange(len(train.user_ids)), [set()] * len(train.user_ids),
                      train.item_counts() == 0, showable=showable)
    k = 10
    ranked = rank_users(hybrid, holdout, k, batch=50)
    # as rank_users ranked before: every cold item placed, the unshowable excluded through a dense mask
    hidden = train.matrix + sp.csr_matrix(np.broadcast_to(~showable, train.matrix.shape).astype(np.float32))
    scores = np.stack([interleave_all(hybrid, train.recent, hidden, u) for u in range(len(train.user_ids))])
    scores[train.matrix.toarray() > 0] = -np.inf
    scores[:, ~showable] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    assert (ranked == expected).all()
    assert (~hybrid.warm[ranked]).any(axis=1).mean() > 0.5  # cold items did enter the lists


def interleave_all(hybrid, recent, hidden, u: int) -> np.ndarray:
    """One user's hybrid scores with the old interleave (every item ranked)."""
    scores = hybrid.with_tie_break(sum(hybrid.history_parts(recent[u]).values()))[0]
    seen = hidden.indices[hidden.indptr[u]:hidden.indptr[u + 1]]
    return reference(scores, ~hybrid.warm, hybrid.cold_from, seen)


def test_the_scaled_parts_are_the_old_ones() -> None:
    """`_scaled(scores, w)` (one array, scaled in place) equals w * (the old scaling) byte for byte."""
    from recsys.models.hybrid import _scaled

    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        scores = rng.normal(size=(40, 300)).astype(dtype)
        scores[3] = 0.0  # no spread: stays 0
        scores[5, :200] = 0.0
        for w in (0.0, 0.3, 0.5, 0.7, 1.0):
            std = scores.std(axis=1, keepdims=True)
            old = (w * np.where(std > 1e-12, scores / np.maximum(std, 1e-12), 0.0).astype(np.float32)).astype(
                np.float32)
            new = _scaled(scores, w)
            assert new.dtype == np.float32 and new.tobytes() == old.tobytes()
