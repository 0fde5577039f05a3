"""Visual neighbours as a model: each item's top-N cosine neighbours among the item vectors.

Built with one batched exact FAISS search (inner product on unit vectors) over numpy vectors, or
from any `search(xq, k) -> (D, I)` such as a loaded index version's. Items without a vector get
an empty row. Scores are cosine similarities, clipped at 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.interactions import Interactions
from recsys.models.base import NeighbourModel

log = logging.getLogger(__name__)

# (xq (n, dim) float32, k) -> (D (n, k) scores, I (n, k) positions into the vectors; -1 for none)
SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def exact_search(vectors: np.ndarray) -> SearchFn:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index.search


class VisualModel(NeighbourModel):
    kind = "visual"

    def __init__(self, neighbours: int = 50) -> None:
        super().__init__()
        self.neighbours = neighbours

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours}

    def fit(self, interactions: Interactions) -> VisualModel:  # visual needs no behaviour
        raise TypeError("VisualModel is built from vectors: use VisualModel.build(...)")

    def build(self, item_space: np.ndarray, vector_ids: np.ndarray, vectors: np.ndarray,
              search: SearchFn | None = None, batch: int = 4096) -> VisualModel:
        """Neighbours over `item_space` for the items of `vector_ids` (rows of `vectors`)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(vector_ids):
            raise InputError(f"visual vectors: expected ({len(vector_ids)}, dim), got {vectors.shape}")
        search = search or exact_search(vectors)
        space = {item: i for i, item in enumerate(item_space)}
        to_space = np.array([space.get(item, -1) for item in vector_ids], dtype=np.int64)
        k = min(self.neighbours + 1, len(vectors))
        rows, cols, vals = [], [], []
        for start in range(0, len(vectors), batch):
            scores, hits = search(vectors[start:start + batch], k)
            src = np.repeat(np.arange(start, start + len(hits)), hits.shape[1])
            dst = hits.ravel()
            val = scores.ravel()
            ok = (dst >= 0) & (dst != src)
            src, dst, val = src[ok], dst[ok], val[ok]
            rows.append(to_space[src])
            cols.append(to_space[dst])
            vals.append(np.maximum(val, 0.0))
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        val = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        ok = (row >= 0) & (col >= 0)
        n = len(item_space)
        similarity = sp.csr_matrix((val[ok].astype(np.float32), (row[ok], col[ok])), shape=(n, n))
        # an item whose duplicate image sits before it keeps at most `neighbours` entries
        from recsys.sparse_ops import top_n_per_row

        self.similarity = top_n_per_row(similarity, self.neighbours)
        self.item_ids = np.asarray(item_space, dtype=str)
        log.info("visual neighbours: %d of %d items have vectors, %d per item", ok.any() and len(vectors),
                 n, self.neighbours)
        return self
