"""Events to a sparse user x item matrix over a fixed item space (scipy.sparse, float32).

`matrix` sums the (weighted) events of each user and item and feeds the behaviour models;
`recent` weights each event again by its recency within the user's own timeline and feeds the
user's candidate gathering, so that what a user did last counts most.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.cleaning import decay
from recsys.errors import InputError
from recsys.npz import read_npz
from recsys.sparse_ops import csr_arrays, csr_from


@dataclass
class Interactions:
    user_ids: np.ndarray  # (n_users,) str
    item_ids: np.ndarray  # (n_items,) str: the item space every model scores over
    matrix: sp.csr_matrix  # (n_users, n_items) summed event weights
    recent: sp.csr_matrix  # (n_users, n_items) weights decayed by age within the user's timeline
    trending: np.ndarray  # (n_items,) summed weights decayed by age before the newest event

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def user_index(self) -> dict[str, int]:
        return {user: i for i, user in enumerate(self.user_ids)}

    def item_counts(self) -> np.ndarray:
        """How many users interacted with each item."""
        return np.diff(self.matrix.tocsc().indptr)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            user_ids=self.user_ids.astype(str),
            item_ids=self.item_ids.astype(str),
            **csr_arrays("matrix", self.matrix),
            **csr_arrays("recent", self.recent),
            trending=self.trending,
        )

    @classmethod
    def load(cls, path: str | Path) -> Interactions:
        data = read_npz(path)
        return cls(
            user_ids=data["user_ids"],
            item_ids=data["item_ids"],
            matrix=csr_from(data, "matrix"),
            recent=csr_from(data, "recent"),
            trending=data["trending"],
        )


def from_events(
    events: pd.DataFrame,
    item_ids: np.ndarray | list[str] | None = None,
    recency_half_life_days: float | None = 14.0,
    trending_half_life_days: float = 30.0,
) -> Interactions:
    """Build the matrices; `item_ids` fixes the item space (event items it lacks are appended).

    `recency_half_life_days` None or 0 turns recency off (`recent` then equals `matrix`).
    """
    if len(events) == 0:
        raise InputError("no events to fit on")
    known = list(item_ids) if item_ids is not None else []
    seen = set(known)
    extra = [item for item in pd.unique(events.item_id) if item not in seen]
    items = np.array(known + extra, dtype=str)
    item_codes = pd.Index(items).get_indexer(events.item_id)
    user_codes, users = pd.factorize(events.user_id, sort=False)
    return from_codes(user_codes, np.asarray(users, dtype=str), item_codes, items,
                      events.weight.to_numpy(np.float64), events.timestamp.to_numpy(),
                      recency_half_life_days, trending_half_life_days)


def from_codes(
    user_codes: np.ndarray,
    users: np.ndarray,
    item_codes: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    recency_half_life_days: float | None = 14.0,
    trending_half_life_days: float = 30.0,
) -> Interactions:
    """The matrices from events given as codes: event e is user `users[user_codes[e]]` on item
    `items[item_codes[e]]` (float64 `weights`, int64 epoch-second `timestamps`); what `from_events`
    and the chunked reader (recsys.event_codes) both build with."""
    if len(weights) == 0:
        raise InputError("no events to fit on")
    weights = np.asarray(weights, dtype=np.float64)
    last = np.full(len(users), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, user_codes, timestamps)  # each user's newest event
    recency = weights * decay(timestamps, last[user_codes], recency_half_life_days) \
        if recency_half_life_days else weights
    shape = (len(users), len(items))
    matrix = sp.csr_matrix((weights, (user_codes, item_codes)), shape=shape, dtype=np.float64)
    recent = sp.csr_matrix((recency, (user_codes, item_codes)), shape=shape, dtype=np.float64)
    newest = int(timestamps.max())
    trending = np.bincount(item_codes, weights * decay(timestamps, newest, trending_half_life_days),
                           minlength=len(items))
    for m in (matrix, recent):
        m.sum_duplicates()
        m.eliminate_zeros()
    return Interactions(users, items, matrix.astype(np.float32), recent.astype(np.float32),
                        trending.astype(np.float32))
