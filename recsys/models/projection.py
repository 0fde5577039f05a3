"""Cold start that learns: a ridge regression from an item's image vector into the behaviour space.

The behaviour space is the item factors of an ALS model fitted on the events. Items that have
events teach the map (image vector -> factors); an item without events is projected from its
picture alone, and its donors are the warm items whose factors lie nearest the projection (cosine,
top `donors`, weights summing to 1). The hybrid scores a cold item with its donors' behaviour
(hybrid.py, `cold="projection"`).

`ColdFactors` goes one step further (hybrid.py, `cold="factors"`): a user's history is folded into
the same factor space (the ALS fold-in), and a cold item scores the dot product of that user factor
with the item's projected factors, so a new item is ranked for this user by what its picture
predicts about who buys it, not through a few donors. The ridge strength is chosen by K-fold
cross-validation over the warm items (the events alone, never a test split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from embeddings.vectors import l2_normalize
from recsys.interactions import Interactions
from recsys.models.base import row_batches
from recsys.models.implicit_models import AlsModel, weigh

log = logging.getLogger(__name__)


class ImageToBehaviour:
    """Ridge regression Y = X W (+ mean), fitted in the dual when items are fewer than dimensions."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.weights = np.zeros((0, 0), np.float32)
        self.x_mean = np.zeros(0, np.float32)
        self.y_mean = np.zeros(0, np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ImageToBehaviour:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.x_mean, y - self.y_mean
        if len(xc) < xc.shape[1]:  # dual: (X X^T + aI)^-1 is n x n
            self.weights = xc.T @ np.linalg.solve(xc @ xc.T + self.alpha * np.eye(len(xc)), yc)
        else:
            self.weights = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(xc.shape[1]), xc.T @ yc)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.x_mean) @ self.weights + self.y_mean).astype(np.float32)


def projected_donors(train: Interactions, vector_ids: np.ndarray, vectors: np.ndarray,
                     donors: int = 20, factors: int = 32, alpha: float = 1.0) -> sp.csr_matrix:
    """(n_items, n_items) over `train.item_ids`: each cold item's donors (rows of warm items empty)."""
    n = len(train.item_ids)
    space = {item: i for i, item in enumerate(train.item_ids)}
    position = np.array([space.get(str(item), -1) for item in vector_ids], dtype=np.int64)
    has_vector = position >= 0
    warm = train.item_counts() > 0
    als = AlsModel(factors=factors, regularization=0.05, neighbours=0).fit(train)  # factors alone
    y = als.item_factors
    teach = has_vector & warm[np.maximum(position, 0)]
    ask = has_vector & ~warm[np.maximum(position, 0)]
    if teach.sum() < 2 or not ask.any():
        return sp.csr_matrix((n, n), dtype=np.float32)
    projector = ImageToBehaviour(alpha).fit(vectors[teach], y[position[teach]])
    guessed = projector.predict(vectors[ask])
    warm_ids = np.flatnonzero(warm)
    unit = l2_normalize(y[warm_ids])
    guessed = l2_normalize(guessed)
    k = min(donors, len(warm_ids))
    top = np.empty((len(guessed), k), np.int64)
    vals = np.empty((len(guessed), k), np.result_type(guessed, unit))
    # (cold with vectors, warm) similarities in batches of rows: all at once they took 8 GB at 100,000
    # items. (BLAS may round a similarity's last bit otherwise than in one product: the same donors.)
    for start, stop in row_batches(len(guessed), len(warm_ids), most=len(guessed)):
        sims = guessed[start:stop] @ unit.T
        top[start:stop] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals[start:stop] = np.take_along_axis(sims, top[start:stop], axis=1)
    vals = np.maximum(vals, 0.0)
    sums = vals.sum(axis=1, keepdims=True)
    vals = np.where(sums > 0, vals / np.maximum(sums, 1e-12), 0.0)
    rows = np.repeat(position[ask], k)
    matrix = sp.csr_matrix((vals.ravel().astype(np.float32), (rows, warm_ids[top].ravel())), shape=(n, n))
    matrix.eliminate_zeros()
    log.info("projection: %d warm items teach, %d cold items projected", int(teach.sum()), int(ask.sum()))
    return matrix


ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)  # ridge strengths cross-validated over the warm items
FOLDS = 5
CV_ITEMS = 10_000  # the strength is chosen on at most this many warm items (the map on all of them)


@dataclass
class ColdFactors:
    """User fold-in and projected item factors: `score` ranks cold items for a history."""

    fold: np.ndarray  # (factors, n_items): a history times fold.T is the user's factor vector
    item_factors: np.ndarray  # (n_items, factors): projected from the image; zero rows without one
    weighting: str = "binary"  # how a history's weights enter the fold-in (as the ALS model's)

    def score(self, histories: sp.csr_matrix) -> np.ndarray:
        """(users, n_items): each user's factor dotted with each item's projected factors (0 for
        items without a picture)."""
        users = np.asarray(weigh(sp.csr_matrix(histories, dtype=np.float32), self.weighting) @ self.fold.T,
                           dtype=np.float32)
        return users @ self.item_factors.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {"cold_fold": self.fold, "cold_item_factors": self.item_factors,
                "cold_weighting": np.array(self.weighting)}

    @classmethod
    def from_arrays(cls, data: Any) -> ColdFactors | None:
        if "cold_fold" not in data:
            return None
        return cls(np.asarray(data["cold_fold"], np.float32),
                   np.asarray(data["cold_item_factors"], np.float32), str(data["cold_weighting"]))


def fit_cold_factors(train: Interactions, vector_ids: np.ndarray, vectors: np.ndarray, factors: int = 64,
                     regularization: float = 0.5) -> ColdFactors:
    """ALS on `train`, then a ridge map from image vectors to the factors of the warm items, its
    strength chosen by cross-validation over them; every item with a picture gets projected factors
    (the hybrid's cold mode reads the cold items', its projected taste every item's)."""
    n = len(train.item_ids)
    space = {item: i for i, item in enumerate(train.item_ids)}
    position = np.array([space.get(str(item), -1) for item in vector_ids], dtype=np.int64)
    has_vector = position >= 0
    warm = train.item_counts() > 0
    als = AlsModel(factors=factors, regularization=regularization, neighbours=0).fit(train)  # factors alone
    y = als.item_factors.astype(np.float64)
    fold = np.linalg.solve(y.T @ y + regularization * np.eye(factors), y.T).astype(np.float32)
    projected = np.zeros((n, factors), np.float32)
    teach = has_vector & warm[np.maximum(position, 0)]
    ask = has_vector & ~warm[np.maximum(position, 0)]
    if teach.sum() >= 2 * FOLDS:
        x, target = vectors[teach], y[position[teach]]
        alpha = _cross_validated_alpha(x, target)
        projected[position[has_vector]] = ImageToBehaviour(alpha).fit(x, target).predict(vectors[has_vector])
        log.info("projected factors: ridge alpha %g (cross-validated over %d warm items), %d cold items",
                 alpha, int(teach.sum()), int(ask.sum()))
    return ColdFactors(fold, projected, "raw")  # histories enter as they are: recency and event weights count


def _cross_validated_alpha(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """The ridge strength whose held-out predictions point closest to the true factors (mean cosine)."""
    rng = np.random.default_rng(seed)
    if len(x) > CV_ITEMS:  # 25 ridge fits over a 1280-wide gram: a sample decides as well
        keep = rng.choice(len(x), CV_ITEMS, replace=False)
        x, y = x[keep], y[keep]
    folds = rng.permutation(len(x)) % FOLDS
    best, best_alpha = -np.inf, ALPHAS[0]
    for alpha in ALPHAS:
        cosines = []
        for f in range(FOLDS):
            guess = ImageToBehaviour(alpha).fit(x[folds != f], y[folds != f]).predict(x[folds == f])
            truth = l2_normalize(y[folds == f].astype(np.float32))
            cosines.append(np.sum(l2_normalize(guess) * truth, axis=1))
        score = float(np.mean(np.concatenate(cosines)))
        if score > best:
            best, best_alpha = score, alpha
    return best_alpha
