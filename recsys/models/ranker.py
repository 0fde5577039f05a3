"""A learned second stage: candidates from every source, ranked by LightGBM lambdarank.

Candidates per user: the top `per_source` items of the behaviour scores (cold items scored by
their donors, hybrid.py), of the visual scores, of the projected taste (projection.py: the user's
folded history dotted with every item's projected factors), of popularity, and the newest items (those with
no events, then the most recently first seen). Each (user, candidate) pair is described by
FEATURES: each source's score, its score scaled by the source's spread for that user and its rank,
the candidate's mean and best image similarity to the history, item age, popularity, whether it
is cold, and how much of the behaviour evidence is recent (scores from recency-weighted against
plain histories). The model is trained on a validation window (recsys.evaluation), never the test.

Scores: candidates get the model's score; every other item ranks after them (by popularity), so
`score_histories` keeps the full-catalogue contract of every model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.models.base import ItemModel, NeighbourModel, row_batches
from recsys.models.projection import ColdFactors

log = logging.getLogger(__name__)

# Scores enter scaled per user (z-scores) and as ranks: raw scales drift between the validation
# window's models and the final ones, fitted on more events.
FEATURES = ("behaviour_scaled", "behaviour_rank", "borrowed_scaled", "visual_scaled", "visual_rank",
            "visual_mean", "visual_best", "popularity_rank", "cold", "age_days", "history_length",
            "behaviour_plain_scaled", "taste_scaled", "taste_rank")
OFF_LIST = -1e6  # below every model score
MIN_USERS = 10  # users with a held-out item among their candidates needed to train


class RankerModel(ItemModel):
    kind = "ranker"

    def __init__(self, per_source: int = 50, trees: int = 60, leaves: int = 7, seed: int = 0) -> None:
        super().__init__()
        self.per_source, self.trees, self.leaves, self.seed = per_source, trees, leaves, seed
        self.behaviour: NeighbourModel | None = None
        self.visual: NeighbourModel | None = None
        self.donors = sp.csr_matrix((0, 0), dtype=np.float32)
        self.age_days = np.zeros(0, np.float32)  # days since first event; -1: no events (cold)
        self.factors: ColdFactors | None = None  # projected taste (projection.py); None: no such source
        self.booster: Any = None

    def params(self) -> dict[str, Any]:
        return {"per_source": self.per_source, "trees": self.trees, "leaves": self.leaves, "seed": self.seed}

    def build(self, behaviour: NeighbourModel, visual: NeighbourModel, donors: sp.csr_matrix,
              age_days: np.ndarray, factors: ColdFactors | None = None) -> RankerModel:
        """The sources to rank over; `donors` as the hybrid's (rows: cold items, weights summing to 1);
        `factors`: the projected taste, a source of candidates and features of its own."""
        self.behaviour, self.visual = behaviour, visual
        self.item_ids, self.popularity = behaviour.item_ids, behaviour.popularity
        self.donors = sp.csr_matrix(donors, dtype=np.float32)
        self.age_days = np.asarray(age_days, np.float32)
        self.factors = factors
        return self

    # -- training ------------------------------------------------------------------------------
    def train(self, histories: sp.csr_matrix, relevant: list[set[int]]) -> RankerModel:
        """Fit the booster: `histories` are the users' (recency-weighted) histories, `relevant` their
        held-out item positions."""
        import lightgbm

        recent = histories
        users, items, features = self.candidates(recent)
        labels = np.array([items[i] in relevant[users[i]] for i in range(len(users))], dtype=np.int32)
        has_positive = np.zeros(recent.shape[0], bool)
        has_positive[users[labels > 0]] = True
        keep = has_positive[users]
        users, labels, features = users[keep], labels[keep], features[keep]
        groups = np.bincount(users, minlength=recent.shape[0])
        groups = groups[groups > 0]
        if len(groups) < MIN_USERS:  # too little to learn from: no booster, the blend serves
            log.info("ranker: %d users with a positive candidate; not trained", len(groups))
            self.booster = None
            return self
        params = {"objective": "lambdarank", "num_leaves": self.leaves, "learning_rate": 0.05,
                  "min_data_in_leaf": 50, "bagging_fraction": 0.8, "bagging_freq": 1,
                  "feature_fraction": 0.8, "seed": self.seed, "num_threads": 1, "verbose": -1,
                  "deterministic": True, "lambdarank_truncation_level": 20}
        data = lightgbm.Dataset(features, labels, group=groups, feature_name=list(FEATURES))
        self.booster = lightgbm.train(params, data, num_boost_round=self.trees)
        log.info("ranker: %d pairs, %d users with a positive, %d positives", len(labels), len(groups),
                 int(labels.sum()))
        return self

    # -- scoring -------------------------------------------------------------------------------
    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        n_users, n_items = histories.shape
        scores = np.full((n_users, n_items), OFF_LIST, np.float32)
        if self.popularity is not None:
            scores += self.popularity[None, :]
        users, items, features = self.candidates(histories)
        if len(users) and self.booster is not None:
            scores[users, items] = self.booster.predict(features).astype(np.float32)
        return scores

    def candidates(self, recent: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user rows, item positions, features (pairs, len(FEATURES))) of every candidate pair; the
        history items themselves are never candidates. Users go in batches (base.row_batches): each
        user's pairs depend on that user's row alone."""
        recent = sp.csr_matrix(recent, dtype=np.float32)
        # the projected taste in one product, as before batching: BLAS rounds the last bit of each
        # score differently for another number of rows
        taste = self.factors.score(recent) if self.factors is not None else None
        batches = row_batches(*recent.shape)
        parts = [self._candidates(recent[start:stop], None if taste is None else taste[start:stop])
                 for start, stop in batches]
        del taste
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(FEATURES)), np.float32)
        return (np.concatenate([users + start for (users, _, _), (start, _) in zip(parts, batches)]),
                np.concatenate([items for _, items, _ in parts]),
                np.concatenate([features for _, _, features in parts]))

    def _candidates(self, recent: sp.csr_matrix, taste: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
        """`candidates` of one batch of users; `taste`: their projected taste (None: no such source)."""
        assert self.behaviour is not None and self.visual is not None, "build first"
        binary = recent.copy()
        binary.data[:] = 1.0
        n_users, n_items = recent.shape
        behaviour = self.behaviour.score_histories(recent)
        borrowed = np.asarray((self.donors @ behaviour.T).T, dtype=np.float32) if self.donors.nnz else \
            np.zeros_like(behaviour)
        behaviour_all = behaviour + borrowed
        del behaviour
        behaviour_plain = self.behaviour.score_histories(binary)
        visual = np.asarray((recent @ self.visual.similarity).todense(), dtype=np.float32)
        visual_sum = np.asarray((binary @ self.visual.similarity).todense(), dtype=np.float32)
        length = np.asarray(binary.sum(axis=1), dtype=np.float32)  # (users, 1)
        popularity = self.popularity if self.popularity is not None else np.zeros(n_items, np.float32)
        cold = (self.age_days < 0).astype(np.float32)
        taste = taste if taste is not None else np.zeros_like(behaviour_all)
        seen = binary.tocoo()
        masked = {}
        for name, values in (("behaviour", behaviour_all), ("visual", visual), ("taste", taste),
                             ("popularity", np.broadcast_to(popularity, (n_users, n_items))),
                             ("newest", np.broadcast_to(_newness(self.age_days), (n_users, n_items)))):
            values = values.copy()
            values[seen.row, seen.col] = -np.inf
            masked[name] = values
        k = min(self.per_source, n_items)
        chosen = np.zeros((n_users, n_items), bool)
        for name, values in masked.items():
            if name == "taste" and self.factors is None:
                continue  # no projected taste: its all-zero scores would nominate arbitrary items
            top = np.argpartition(-values, k - 1, axis=1)[:, :k]
            np.put_along_axis(chosen, top, True, axis=1)
        del masked["newest"]
        chosen[seen.row, seen.col] = False
        users, items = np.nonzero(chosen)
        del chosen
        ranks = {name: _ranks_at(masked.pop(name), users, items)
                 for name in ("behaviour", "visual", "popularity", "taste")}
        best = self._visual_best(binary, users, items)
        features = np.column_stack([
            _zscores_at(behaviour_all, users, items), ranks["behaviour"],
            _zscores_at(borrowed, users, items), _zscores_at(visual, users, items), ranks["visual"],
            visual_sum[users, items] / np.maximum(length, 1.0)[users, 0], best, ranks["popularity"],
            cold[items], self.age_days[items], length[users, 0], _zscores_at(behaviour_plain, users, items),
            _zscores_at(taste, users, items), ranks["taste"],
        ]).astype(np.float32)
        return users, items, features

    def _visual_best(self, binary: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per pair: the best image similarity between the candidate and any history item."""
        assert self.visual is not None
        out = np.zeros(len(users), np.float32)
        similarity = self.visual.similarity
        for u in np.unique(users):
            history = binary.indices[binary.indptr[u]:binary.indptr[u + 1]]
            if not len(history):
                continue
            best = np.asarray(similarity[history].max(axis=0).todense()).ravel()
            where = users == u
            out[where] = best[items[where]]
        return out

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """An item as a one-item history."""
        row = self.history_row({item_id: 1.0})
        scores = self.score_histories(row)[0]
        scores[self.item_position(item_id)] = -np.inf
        return self._top(scores, k)


def item_age_days(first_seen: np.ndarray, now: float) -> np.ndarray:
    """Days from each item's first event to `now`; -1 for items without events (NaN first_seen)."""
    age = (now - np.asarray(first_seen, np.float64)) / 86400.0
    return np.where(np.isfinite(age), np.maximum(age, 0.0), -1.0).astype(np.float32)


def _newness(age_days: np.ndarray) -> np.ndarray:
    """Higher for newer items: cold ones first, then by days since first event."""
    return np.where(age_days < 0, 1e6, -age_days).astype(np.float32)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Per row: 0 for the best value, 1 for the next, ..."""
    order = np.argsort(-values, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(values.shape[1])[None, :].repeat(values.shape[0], 0), axis=1)
    return ranks.astype(np.float32)


def _ranks_at(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`_ranks(values)[rows, cols]` (`rows` ascending) without placing every item: a pair's rank is
    how many items of its row come first (a larger value, or an equal one at a smaller position),
    counted in the row's sorted (value, position) keys."""
    if values.dtype != np.float32:
        return _ranks(values)[rows, cols]
    n_rows, n = values.shape
    # float32 bits made to sort as -value does (-0.0 as 0.0), then the position below them: unique keys
    bits = (np.negative(values) + np.float32(0.0)).view(np.uint32)
    bits = np.where(bits >= np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    keys = (bits.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    del bits
    wanted = keys[rows, cols]
    keys.sort(axis=1)
    out = np.empty(len(rows), np.float32)
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    for r in range(n_rows):
        if bounds[r] < bounds[r + 1]:
            out[bounds[r]:bounds[r + 1]] = np.searchsorted(keys[r], wanted[bounds[r]:bounds[r + 1]])
    return out


def _zscores_at(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`zscores(values)[rows, cols]`, the shift and spread still taken over each whole row."""
    std = values.std(axis=1, keepdims=True)[rows, 0]
    mean = values.mean(axis=1, keepdims=True)[rows, 0]
    return np.where(std > 1e-12, (values[rows, cols] - mean) / np.maximum(std, 1e-12), 0.0).astype(np.float32)
