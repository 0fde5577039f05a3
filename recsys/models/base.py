"""One small interface for every recommender source (behaviour, visual, hybrid).

After the `implicit` library: `fit`, `similar_items`, `recommend`, `save`, `load`; queries return
`(ids, scores)`. Every model scores over one fixed item space (`item_ids`), so that sources can be
blended and evaluated side by side. `score_histories` is the batch primitive: user histories in
(a sparse users x items matrix), one score per catalogue item out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError, UnknownItem
from recsys.interactions import Interactions
from recsys.npz import read_npz
from recsys.sparse_ops import csr_arrays, csr_from

# Zero-score items are ordered by popularity: small enough never to outrank a real score.
POPULARITY_TIE_BREAK = 1e-6
# Where users x items (or items x items) dense scores are built, rows go in batches of at most this
# many cells (32 MB a float32 array): at 100,000 items, 80 users.
BATCH_CELLS = 8_000_000

MODEL_TYPES: dict[str, type[ItemModel]] = {}


class ItemModel:
    """Base: an item space, optional popularity (the fallback), and the query methods."""

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.item_ids: np.ndarray = np.zeros(0, dtype=str)
        self.popularity: np.ndarray | None = None  # (n_items,) in [0, 1]
        self._index: dict[str, int] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            MODEL_TYPES[cls.kind] = cls

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, interactions: Interactions) -> ItemModel:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    # -- queries -----------------------------------------------------------------------------
    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        """(n_users, n_items) history weights to (n_users, n_items) float32 scores."""
        raise NotImplementedError

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def recommend(self, history: dict[str, float], k: int = 10,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top `k` items for a user given `{item_id: weight}` of what they did (unknown ids ignored)."""
        row = self.history_row(history)
        scores = self.score_histories(row)[0]
        if exclude_seen:
            scores[row.indices] = -np.inf
        return self._top(scores, k)

    # -- helpers -----------------------------------------------------------------------------
    def item_position(self, item_id: str) -> int:
        if self._index is None:
            self._index = {item: i for i, item in enumerate(self.item_ids)}
        position = self._index.get(item_id)
        if position is None:
            raise UnknownItem(item_id)
        return position

    def history_row(self, history: dict[str, float]) -> sp.csr_matrix:
        positions, weights = [], []
        for item_id, weight in history.items():
            try:
                positions.append(self.item_position(item_id))
            except UnknownItem:
                continue
            weights.append(weight)
        return sp.csr_matrix((np.asarray(weights, np.float32), (np.zeros(len(positions), int), positions)),
                             shape=(1, len(self.item_ids)))

    def _top(self, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        finite = np.flatnonzero(np.isfinite(scores))
        k = min(k, finite.size)
        if k == 0:
            return np.zeros(0, dtype=str), np.zeros(0, np.float32)
        part = finite[np.argpartition(-scores[finite], k - 1)[:k]]
        order = part[np.argsort(-scores[part], kind="stable")]
        return self.item_ids[order], scores[order].astype(np.float32)

    def with_tie_break(self, scores: np.ndarray) -> np.ndarray:
        if self.popularity is not None:
            scores = scores + POPULARITY_TIE_BREAK * self.popularity[None, :]
        return scores

    # -- persistence -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, data: Any) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """A `.npz` of plain arrays (no pickles): kind, params, item ids and the model's arrays."""
        arrays = {
            "kind": np.array(self.kind),
            "params": np.array(json.dumps(self.params(), sort_keys=True)),
            "item_ids": self.item_ids.astype(str),
            **self._arrays(),
        }
        if self.popularity is not None:
            arrays["popularity"] = self.popularity.astype(np.float32)
        np.savez_compressed(path, **arrays)

    @staticmethod
    def load(path: str | Path) -> ItemModel:
        """Any saved model; the class comes from the file's `kind`."""
        try:
            data = read_npz(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a saved model ({exc})") from None
        kind = str(data["kind"])
        if kind not in MODEL_TYPES:
            raise InputError(f"{path}: unknown model kind {kind!r}")
        try:
            model = MODEL_TYPES[kind](**json.loads(str(data["params"])))
        except (ValueError, TypeError) as exc:  # not JSON, not an object, or not this kind's settings
            raise InputError(f"{path}: key 'params' is not a {kind} model's settings ({exc})") from None
        model.item_ids = data["item_ids"]
        model.popularity = data.get("popularity")
        model._restore(data)
        return model


class NeighbourModel(ItemModel):
    """A model given by a sparse item x item matrix: row i holds item i's neighbours and weights."""

    def __init__(self) -> None:
        super().__init__()
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray((histories @ self.similarity).todense(), dtype=np.float32)
        return self.with_tie_break(scores)

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        row = self.similarity.getrow(self.item_position(item_id))
        order = np.argsort(-row.data, kind="stable")[:k]
        return self.item_ids[row.indices[order]], row.data[order].astype(np.float32)

    def has_neighbours(self) -> np.ndarray:
        """(n_items,) bool: which items have a non-empty row."""
        return np.diff(self.similarity.indptr) > 0

    def _arrays(self) -> dict[str, np.ndarray]:
        return csr_arrays("similarity", self.similarity)

    def _restore(self, data: Any) -> None:
        self.similarity = csr_from(data, "similarity")


def popularity_scores(interactions: Interactions) -> np.ndarray:
    """Per item: recency-weighted event weights (`trending`), scaled to [0, 1]."""
    counts = interactions.trending.astype(np.float64)
    peak = counts.max(initial=0.0)
    return (counts / peak if peak > 0 else counts).astype(np.float32)


def row_batches(n_rows: int, n_columns: int, most: int = 512) -> list[tuple[int, int]]:
    """(start, stop) of each batch of rows (users, say) to score at once against `n_columns` columns
    (items): at most `most` rows and about BATCH_CELLS cells each. No batch holds a single row
    unless all do: numpy and BLAS sum a lone row in another order than a row among others (the
    last bits of a score)."""
    size = max(2, min(most, BATCH_CELLS // max(n_columns, 1)))
    starts = list(range(0, n_rows, size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n_rows]))


def zscores(scores: np.ndarray) -> np.ndarray:
    """Each row (one query's scores over items) shifted by its mean and divided by its spread; rows
    without spread are 0. How scores from different sources are made comparable per query."""
    std = scores.std(axis=1, keepdims=True)
    mean = scores.mean(axis=1, keepdims=True)
    return np.where(std > 1e-12, (scores - mean) / np.maximum(std, 1e-12), 0.0).astype(np.float32)
