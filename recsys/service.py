"""The recommender as the API and the command line use it: one object per store version.

    rec = Recommender.load(store_dir, version=None)            # CURRENT by default
    rec.similar(item_id, k=10, mode="hybrid", exclude=(), category=None) -> [{item_id, score, **metadata}]
    rec.recommend(user_id, k=10, category=None) -> [{item_id, score, source, **metadata}]

Answers hold catalogue items only (those in the index) and, where the catalogue has an `in_stock`
column, only items in stock. Visual answers come from the index (cosine scores), behaviour answers
from the behaviour model, hybrid answers from the blend (hybrid.py); an item that has no behaviour
yet is answered by its visual neighbours. An unknown user gets the popular items.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.behaviour_store import Behaviour, load_behaviour
from recsys.errors import InputError, UnknownItem

log = logging.getLogger(__name__)

MODES = ("hybrid", "visual", "behaviour")
CANDIDATES = 200  # hybrid and behaviour rows are cut to this many before filtering


class Recommender:
    def __init__(self, index: Any, behaviour: Behaviour) -> None:
        self.index = index  # index.loaded.LoadedIndex
        self.version = str(index.version)
        self.behaviour = behaviour
        self.model = behaviour.model
        self.hybrid = behaviour.hybrid()
        self.hybrid_weight = self.hybrid.weight
        items = index.items.reset_index(drop=True)
        self._meta = items.set_index(items["item_id"].astype(str), drop=False)
        space = self.model.item_ids
        # per position in the model's item space: is it a catalogue item one may show?
        in_catalogue = pd.Index(space).isin(self._meta.index)
        if "in_stock" in items.columns:
            stock = self._meta["in_stock"].reindex(space).fillna(False).astype(bool).to_numpy()
            in_catalogue &= stock
        self._showable = in_catalogue
        self._categories = (self._meta["category"].reindex(space).astype(str).to_numpy()
                            if "category" in items.columns else None)
        self._users = behaviour.interactions.user_index()

    @classmethod
    def load(cls, store_dir: str | Path, version: str | None = None, index: Any = None) -> Recommender:
        """The version's index (or the given loaded one) and its behaviour/ data.

        Raises InputError when the version holds no behaviour data."""
        if index is None:
            from index.store import load_version

            index = load_version(store_dir, version)
        return cls(index, load_behaviour(Path(index.path)))

    # -- similar items -------------------------------------------------------------------------
    def similar(self, item_id: str, k: int = 10, mode: str = "hybrid", exclude: Collection[str] = (),
                category: str | None = None) -> list[dict[str, Any]]:
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: expected one of {list(MODES)}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        in_index = self.index.has_item(item_id)
        try:
            position = self.model.item_position(item_id)
        except UnknownItem:
            position = None
        if not in_index and position is None:
            raise UnknownItem(item_id)
        if mode == "visual" or (mode == "hybrid" and position is None):
            return self._visual(item_id, k, exclude, category) if in_index else []
        source = self.hybrid if mode == "hybrid" else self.model
        ids, scores = source.similar_items(item_id, CANDIDATES)
        pairs = self._filter(ids, scores, k, set(exclude) | {item_id}, category)
        if mode == "hybrid" and len(pairs) < k and in_index:
            # the blended lists ran dry under the filters: top up with visual neighbours, ranked after
            have = {p[0] for p in pairs} | set(exclude)
            extra = [(i, s * 1e-3) for i, s in self.index.similar(item_id, k + len(have), exclude=have,
                                                                   where=self._where(category))]
            pairs += extra[: k - len(pairs)]
        return [self._row(i, s) for i, s in pairs]

    def _visual(self, item_id: str, k: int, exclude: Collection[str], category: str | None) -> list[dict]:
        pairs = self.index.similar(item_id, k, exclude=tuple(exclude), where=self._where(category))
        return [self._row(i, s) for i, s in pairs]

    def _where(self, category: str | None):  # noqa: ANN202 - a filter over the index's items
        has_stock = "in_stock" in self.index.items.columns
        if category is None and not has_stock:
            return None

        def where(items: pd.DataFrame) -> pd.Series:
            mask = pd.Series(True, index=items.index)
            if category is not None:
                mask &= items["category"].astype(str) == category if "category" in items else False
            if has_stock:
                mask &= items["in_stock"].fillna(False).astype(bool)
            return mask

        return where

    # -- users ---------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, category: str | None = None) -> list[dict[str, Any]]:
        """Personal items for a known user (seen and bought ones dropped); popular ones otherwise."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        user = self._users.get(user_id)
        interactions = self.behaviour.interactions
        if user is None:
            scores = self.hybrid.popularity.astype(np.float32).copy() if self.hybrid.popularity is not None \
                else np.zeros(len(self.model.item_ids), np.float32)
            source = "popular"
        else:
            scores = self.hybrid.score_histories(interactions.recent[user])[0]
            scores[interactions.matrix[user].indices] = -np.inf
            source = "personal"
        ids, top = self.hybrid._top(self._mask(scores, category), k)
        return [self._row(i, s, source=source) for i, s in zip(ids, top)]

    # -- helpers -------------------------------------------------------------------------------
    def _mask(self, scores: np.ndarray, category: str | None) -> np.ndarray:
        scores = scores.copy()
        scores[~self._showable] = -np.inf
        if category is not None and self._categories is not None:
            scores[self._categories != category] = -np.inf
        return scores

    def _filter(self, ids: np.ndarray, scores: np.ndarray, k: int, banned: set[str],
                category: str | None) -> list[tuple[str, float]]:
        out = []
        for item_id, score in zip(ids, scores):
            position = self.model.item_position(str(item_id))
            if item_id in banned or not self._showable[position]:
                continue
            if category is not None and (self._categories is None or self._categories[position] != category):
                continue
            out.append((str(item_id), float(score)))
            if len(out) == k:
                break
        return out

    def _row(self, item_id: str, score: float, **extra: Any) -> dict[str, Any]:
        row = {"item_id": str(item_id), "score": round(float(score), 6), **extra}
        if item_id in self._meta.index:
            for key, value in self.index.metadata(str(item_id)).items():
                row.setdefault(key, value)
        return row
