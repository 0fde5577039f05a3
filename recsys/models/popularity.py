"""Popularity with recency: the fallback for unknown users and items without neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.interactions import Interactions
from recsys.models.base import ItemModel, popularity_scores


class PopularityModel(ItemModel):
    kind = "popularity"

    def fit(self, interactions: Interactions) -> PopularityModel:
        self.item_ids = interactions.item_ids
        self.popularity = popularity_scores(interactions)
        return self

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        assert self.popularity is not None, "fit first"
        return np.broadcast_to(self.popularity, (histories.shape[0], len(self.item_ids))).copy()

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        assert self.popularity is not None, "fit first"
        scores = self.popularity.copy()
        scores[self.item_position(item_id)] = -np.inf
        return self._top(scores, k)

    def params(self) -> dict[str, Any]:
        return {}
