"""Hybrid: behaviour neighbours blended with visual neighbours; cold-start items fall back to visual.

Both sources are normalised per row first (behaviour: divided by the row's largest weight; visual:
the row's weakest kept cosine maps to 0.01 and its best to 1), then

    hybrid[i, j] = w * behaviour[i, j] + (1 - w) * visual[i, j]     when i and j both have behaviour
    hybrid[i, j] = c * visual[i, j]                                   when i or j has none (cold)

so an item nobody has touched yet still gets (and appears among) neighbours by image. The cold
weight c (default 1) says how hard new items are pushed against proven ones.
The blend is computed from the two sparse matrices at query time; nothing items^2 is stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.models.base import ItemModel, NeighbourModel
from recsys.sparse_ops import row_max_normalise, row_min_max_normalise


class HybridModel(ItemModel):
    kind = "hybrid"

    def __init__(self, weight: float = 0.5, cold_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise InputError(f"hybrid weight {weight}: must lie in [0, 1]")
        if not 0.0 < cold_weight <= 1.0:
            raise InputError(f"hybrid cold weight {cold_weight}: must lie in (0, 1]")
        self.weight = weight
        self.cold_weight = cold_weight
        self.behaviour_part = sp.csr_matrix((0, 0), dtype=np.float32)
        self.visual_part = sp.csr_matrix((0, 0), dtype=np.float32)
        self.warm = np.zeros(0, dtype=bool)

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight, "cold_weight": self.cold_weight}

    def build(self, behaviour: NeighbourModel, visual: NeighbourModel) -> HybridModel:
        if not np.array_equal(behaviour.item_ids, visual.item_ids):
            raise InputError("hybrid: behaviour and visual models must share one item space")
        self.item_ids = behaviour.item_ids
        self.popularity = behaviour.popularity
        self.behaviour_part = row_max_normalise(behaviour.similarity)
        self.visual_part = row_min_max_normalise(visual.similarity)
        self.warm = behaviour.has_neighbours()
        return self

    def fit(self, interactions: Any) -> HybridModel:
        raise TypeError("HybridModel is built from fitted models: use HybridModel(w).build(b, v)")

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        w = self.weight
        histories = sp.csr_matrix(histories, dtype=np.float32)
        cold_rows = sp.diags((~self.warm).astype(np.float32))
        warm_rows = sp.diags(self.warm.astype(np.float32))
        behaviour = _dense(histories @ self.behaviour_part)
        from_warm = _dense(histories @ warm_rows @ self.visual_part)
        from_cold = _dense(histories @ cold_rows @ self.visual_part)
        cold_cols = ~self.warm
        c = self.cold_weight
        visual = from_warm * np.where(cold_cols, c, 1.0 - w)[None, :] + c * from_cold
        return self.with_tie_break(w * behaviour + visual)

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        row = self._row_blend(self.item_position(item_id))  # sparse: O(neighbours), not O(items)
        keep = row.data > 0
        indices, data = row.indices[keep], row.data[keep]
        order = np.argsort(-data, kind="stable")[:k]
        return self.item_ids[indices[order]], data[order].astype(np.float32)

    def _row_blend(self, position: int) -> sp.csr_matrix:
        visual = self.visual_part.getrow(position)
        w, c = self.weight, self.cold_weight
        if not self.warm[position]:
            return sp.csr_matrix(c * visual)
        behaviour = self.behaviour_part.getrow(position)
        cold_neighbours = visual.copy()
        cold_neighbours.data = cold_neighbours.data * (~self.warm[cold_neighbours.indices])
        return sp.csr_matrix(w * behaviour + (1 - w) * visual + (c - (1 - w)) * cold_neighbours)


def _dense(matrix: sp.spmatrix) -> np.ndarray:
    return np.asarray(matrix.todense(), dtype=np.float32)
