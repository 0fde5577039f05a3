"""EASE (Steck 2019): a closed-form linear item-item model for catalogues up to a few 10k items.

B = I - P / diag(P) with P = (X^T X + lambda I)^-1, diag(B) = 0. It needs a dense items x items
matrix, so it refuses catalogues over `max_items`. The learned weights are kept as a sparse top-N
matrix so that they save, load and serve like the co-occurrence model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.interactions import Interactions
from recsys.models.base import NeighbourModel, popularity_scores
from recsys.sparse_ops import top_n_per_row

log = logging.getLogger(__name__)


class EaseModel(NeighbourModel):
    kind = "ease"

    def __init__(self, l2: float = 200.0, neighbours: int = 2000, max_items: int = 30000) -> None:
        super().__init__()
        self.l2 = l2
        self.neighbours = neighbours
        self.max_items = max_items

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, "neighbours": self.neighbours, "max_items": self.max_items}

    def fit(self, interactions: Interactions) -> EaseModel:
        n_items = interactions.shape[1]
        if n_items > self.max_items:
            raise InputError(
                f"EASE needs a dense {n_items} x {n_items} matrix; over max_items={self.max_items}: "
                "use the co-occurrence model (--model cooc)"
            )
        log.info("EASE: %d items, %.1f MB dense Gram matrix", n_items, n_items * n_items * 8 / 1e6)
        x = interactions.matrix.astype(np.float64).tocsr()
        x.data = np.log1p(x.data)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n_items)] += self.l2
        precision = np.linalg.inv(gram)
        weights = precision / (-np.diag(precision))
        weights[np.diag_indices(n_items)] = 0.0
        weights[np.abs(weights) < 1e-7] = 0.0
        self.similarity = top_n_per_row(sp.csr_matrix(weights.astype(np.float32)), self.neighbours)
        self.item_ids = interactions.item_ids
        self.popularity = popularity_scores(interactions)
        return self
