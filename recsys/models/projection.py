"""Cold start that learns: a ridge regression from an item's image vector into the behaviour space.

The behaviour space is the item factors of an ALS model fitted on the events. Items that have
events teach the map (image vector -> factors); an item without events is projected from its
picture alone, and its donors are the warm items whose factors lie nearest the projection (cosine,
top `donors`, weights summing to 1). The hybrid scores a cold item with its donors' behaviour
(hybrid.py, `cold="projection"`).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from embeddings.vectors import l2_normalize
from recsys.interactions import Interactions
from recsys.models.implicit_models import AlsModel

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
    als = AlsModel(factors=factors, regularization=0.05).fit(train)
    y = als.item_factors
    teach = has_vector & warm[np.maximum(position, 0)]
    ask = has_vector & ~warm[np.maximum(position, 0)]
    if teach.sum() < 2 or not ask.any():
        return sp.csr_matrix((n, n), dtype=np.float32)
    projector = ImageToBehaviour(alpha).fit(vectors[teach], y[position[teach]])
    guessed = projector.predict(vectors[ask])
    warm_ids = np.flatnonzero(warm)
    unit = l2_normalize(y[warm_ids])
    sims = l2_normalize(guessed) @ unit.T  # (cold with vectors, warm)
    k = min(donors, len(warm_ids))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    sums = vals.sum(axis=1, keepdims=True)
    vals = np.where(sums > 0, vals / np.maximum(sums, 1e-12), 0.0)
    rows = np.repeat(position[ask], k)
    matrix = sp.csr_matrix((vals.ravel().astype(np.float32), (rows, warm_ids[top].ravel())), shape=(n, n))
    matrix.eliminate_zeros()
    log.info("projection: %d warm items teach, %d cold items projected", int(teach.sum()), int(ask.sum()))
    return matrix
