"""Behaviour models done by the `implicit` library (multithreaded C++): item-item cosine and BM25
neighbours, and ALS matrix factorisation.

All three keep the shared neighbour interface (a sparse top-N item x item matrix that saves, loads
and serves like the co-occurrence model). ALS also keeps its item factors: a user is scored by
folding the history into the factor space (a ridge solve against the item factors), and the
factors are what the cold-start projection (projection.py) learns to predict from images.

`weighting` says what the models see of the summed event weights: `binary` (did the user touch
the item at all), `log` (log1p of the weights) or `raw`; it is one of the settings validation picks.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.interactions import Interactions
from recsys.models.base import NeighbourModel, popularity_scores
from recsys.sparse_ops import top_n_per_row

log = logging.getLogger(__name__)

WEIGHTINGS = ("binary", "log", "raw")


def weigh(matrix: sp.spmatrix, weighting: str) -> sp.csr_matrix:
    """The user x item matrix as a model sees it: binary, log1p or raw event weights."""
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting {weighting!r}: expected one of {list(WEIGHTINGS)}")
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if weighting == "binary":
        out.data[:] = 1.0
    elif weighting == "log":
        out.data = np.log1p(out.data)
    return out


# Below this many stored interactions a fit takes milliseconds on one thread, and implicit's
# threads cost more than they save (ten times the CPU on a busy 2-core machine); the answers are the
# same on any number of threads (each user's and item's solve is its own).
ONE_THREAD_BELOW_NNZ = 50_000


def _threads(matrix: sp.spmatrix) -> int:
    """implicit's num_threads for fitting on `matrix`: 1 for a small one, else 0 (one per core)."""
    return 1 if matrix.nnz < ONE_THREAD_BELOW_NNZ else 0


class ItemKnnModel(NeighbourModel):
    """implicit's CosineRecommender or BM25Recommender: the top `neighbours` items per item."""

    kind = "knn"

    def __init__(self, measure: str = "cosine", neighbours: int = 100, weighting: str = "binary",
                 k1: float = 1.2, b: float = 0.75) -> None:
        super().__init__()
        if measure not in ("cosine", "bm25"):
            raise InputError(f"item-item measure {measure!r}: expected cosine or bm25")
        self.measure, self.neighbours, self.weighting, self.k1, self.b = measure, neighbours, weighting, k1, b

    def params(self) -> dict[str, Any]:
        return {"measure": self.measure, "neighbours": self.neighbours, "weighting": self.weighting,
                "k1": self.k1, "b": self.b}

    def fit(self, interactions: Interactions) -> ItemKnnModel:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        x = weigh(interactions.matrix, self.weighting)
        k = self.neighbours + 1  # implicit keeps each item itself among its neighbours
        threads = _threads(x)
        model = (CosineRecommender(K=k, num_threads=threads) if self.measure == "cosine" else
                 BM25Recommender(K=k, K1=self.k1, B=self.b, num_threads=threads))
        with warnings.catch_warnings():  # implicit's own transpose hands itself a COO matrix
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(x, show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.setdiag(0.0)
        self.similarity = top_n_per_row(similarity, self.neighbours)
        self.item_ids = interactions.item_ids
        self.popularity = popularity_scores(interactions)
        return self


class AlsModel(NeighbourModel):
    """implicit's AlternatingLeastSquares. Neighbours: top-N cosine of item factors; users: fold-in."""

    kind = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, neighbours: int = 100, weighting: str = "binary",
                 seed: int = 0) -> None:
        super().__init__()
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.neighbours, self.weighting, self.seed = iterations, neighbours, weighting, seed
        self.item_factors = np.zeros((0, factors), np.float32)
        self._fold: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations, "neighbours": self.neighbours, "weighting": self.weighting,
                "seed": self.seed}

    def fit(self, interactions: Interactions) -> AlsModel:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        x = weigh(interactions.matrix, self.weighting)
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads would fight it
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            random_state=self.seed, num_threads=_threads(x))
            model.fit(x, show_progress=False)
        factors = np.asarray(model.item_factors, dtype=np.float32)
        factors[np.diff(x.tocsc().indptr) == 0] = 0.0  # an item nobody touched has no behaviour
        self.item_factors = factors
        self.similarity = factor_neighbours(factors, self.neighbours)
        self.item_ids = interactions.item_ids
        self.popularity = popularity_scores(interactions)
        self._fold = None
        return self

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        """Fold each history into the factor space (ridge against the item factors), then dot."""
        if self._fold is None:
            y = self.item_factors.astype(np.float64)
            gram = y.T @ y + self.regularization * np.eye(y.shape[1])
            self._fold = np.linalg.solve(gram, y.T).astype(np.float32)  # (factors, items)
        h = weigh(histories, self.weighting) if self.weighting != "raw" else sp.csr_matrix(histories)
        users = np.asarray((h @ self._fold.T), dtype=np.float32)
        return self.with_tie_break(users @ self.item_factors.T)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "item_factors": self.item_factors}

    def _restore(self, data: Any) -> None:
        super()._restore(data)
        self.item_factors = data["item_factors"]


def factor_neighbours(factors: np.ndarray, n: int, batch: int = 2048) -> sp.csr_matrix:
    """Each item's top-`n` items by cosine of factors (exact, in blocks; zero rows stay empty)."""
    norms = np.linalg.norm(factors, axis=1)
    unit = np.where(norms[:, None] > 0, factors / np.maximum(norms[:, None], 1e-12), 0.0).astype(np.float32)
    n_items = len(factors)
    k = min(n, n_items - 1)
    if k <= 0:  # no neighbours asked for (or none to have): nothing to compare
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    blocks = []
    for start in range(0, n_items, batch):
        sims = unit[start:start + batch] @ unit.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = 0.0
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, top, axis=1)
        block = sp.csr_matrix((vals.ravel(), (np.repeat(rows, k), top.ravel())), shape=sims.shape)
        block.eliminate_zeros()
        blocks.append(block)
    return sp.vstack(blocks, format="csr").astype(np.float32)
