"""Hybrid: behaviour and visual scores, each calibrated, blended; items without events borrow.

Calibration: every query (a user's history, or one item) gets a score per catalogue item from each
source; each source's scores are divided by their standard deviation over the whole catalogue
(a z-score without the shift, which is the same for every item and so changes no ranking), then

    hybrid = w * behaviour / std(behaviour) + (1 - w) * visual / std(visual)

Visual scores stay raw cosines summed over the history: a weak best neighbour stays weak.

Cold start: an item with no events has no behaviour column. It borrows one: its behaviour score is
`cold_weight` times the average of the behaviour scores of its `donors` donors, warm items chosen either
by image similarity (`cold="visual"`) or by a projection of its image into the behaviour space
(`cold="projection"`, projection.py), weighted by similarity; `cold="none"` leaves it at zero, so
only its visual part speaks for it. `cold="factors"` (projection.py, `ColdFactors`) scores a cold item
for a user directly: the user's history folded into ALS factor space, dotted with the factors its
picture projects to, rescaled to the spread of the user's warm behaviour scores (times
`cold_weight`); its item page still borrows from projected donors.

Taste (`taste`): for users, the visual part is either the history's summed image cosines (`cosine`)
or (`projected`) the user's folded history dotted with every item's projected factors: the image
directions that behaviour says matter (colour, say) count, the ones it ignores (a studio's backdrop)
do not. Item pages always use image cosines. The donors are a sparse items x
items matrix (rows: cold items). Nothing items^2 is stored; the blend is computed at query time.

Cold entry (`cold_from`): a borrowed score is a smoothed guess and almost never outranks a warm
item's own, so cold items would never reach a short list, whatever their weight (a larger weight
instead floods the list). With `cold_from = s`, the cold items, in the order of their own blended
scores, interleave one for one with the warm items from the warm item ranked s (0-based) onwards:
a list of 10 then holds (11 - s) // 2 cold items. None: no interleaving (plain scores). Validation chooses s
on a window where items are made new (recsys.evaluation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.interactions import Interactions
from recsys.models.base import ItemModel, NeighbourModel, zscores
from recsys.models.projection import ColdFactors
from recsys.sparse_ops import top_n_per_row

COLD_MODES = ("none", "visual", "projection", "factors")
TASTES = ("cosine", "projected")  # the visual part for users: image cosines, or projected factors
DONORS = 20  # warm items a cold item borrows from
MAX_COLD_WEIGHT = 10.0


class HybridModel(ItemModel):
    kind = "hybrid"

    def __init__(self, weight: float = 0.5, cold_weight: float = 1.0, cold: str = "visual",
                 donors: int = DONORS, cold_from: int | None = None, taste: str = "cosine") -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise InputError(f"hybrid weight {weight}: must lie in [0, 1]")
        if not 0.0 < cold_weight <= MAX_COLD_WEIGHT:
            raise InputError(f"hybrid cold weight {cold_weight}: must lie in (0, {MAX_COLD_WEIGHT:g}]")
        if cold not in COLD_MODES:
            raise InputError(f"hybrid cold handling {cold!r}: expected one of {list(COLD_MODES)}")
        self.weight = weight
        self.cold_weight = cold_weight
        self.cold = cold
        self.n_donors = donors
        if cold_from is not None and cold_from < 0:
            raise InputError(f"hybrid cold_from {cold_from}: must be >= 0 or None")
        self.cold_from = cold_from
        if taste not in TASTES:
            raise InputError(f"hybrid taste {taste!r}: expected one of {list(TASTES)}")
        self.taste = taste
        self.behaviour: NeighbourModel | None = None
        self.visual: NeighbourModel | None = None
        self.donors = sp.csr_matrix((0, 0), dtype=np.float32)
        self.cold_factors: ColdFactors | None = None
        self.warm = np.zeros(0, dtype=bool)

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight, "cold_weight": self.cold_weight, "cold": self.cold,
                "donors": self.n_donors, "cold_from": self.cold_from, "taste": self.taste}

    def build(self, behaviour: NeighbourModel, visual: NeighbourModel,
              projected_donors: sp.csr_matrix | None = None,
              cold_factors: ColdFactors | None = None) -> HybridModel:
        """`projected_donors` (rows: cold items) is needed for `cold="projection"` and `"factors"`;
        without them the projection falls back to visual donors. `cold_factors`: for `cold="factors"`
        (without them it borrows from projected donors alone) and `taste="projected"` (without them
        the visual part stays cosine)."""
        if not np.array_equal(behaviour.item_ids, visual.item_ids):
            raise InputError("hybrid: behaviour and visual models must share one item space")
        self.behaviour, self.visual = behaviour, visual
        self.item_ids = behaviour.item_ids
        self.popularity = behaviour.popularity
        self.warm = behaviour.has_neighbours()
        n = len(self.item_ids)
        if self.cold == "none":
            donors = sp.csr_matrix((n, n), dtype=np.float32)
        elif self.cold in ("projection", "factors") and projected_donors is not None:
            donors = sp.csr_matrix(projected_donors, dtype=np.float32)
        else:
            donors = visual_donors(visual.similarity, self.warm)
        donors = _normalise_rows(top_n_per_row(donors, self.n_donors))  # the closest few lend
        self.donors = _rows(donors, ~self.warm) * np.float32(self.cold_weight)
        self.cold_factors = cold_factors
        return self

    def fit(self, interactions: Interactions) -> HybridModel:
        raise TypeError("HybridModel is built from fitted models: use HybridModel(w).build(b, v)")

    # -- users -------------------------------------------------------------------------------
    def score_histories(self, histories: sp.csr_matrix, exclude: sp.csr_matrix | None = None,
                        reach: int | None = None) -> np.ndarray:
        """`exclude` (users x items, nonzero: never shown; default the histories themselves) tells
        the cold entry which items take no place in a list. `reach`: only each list's first `reach`
        places are read (`interleave`)."""
        histories = sp.csr_matrix(histories, dtype=np.float32)
        return self.scores_from_parts(self.history_parts(histories), histories, exclude, reach)

    def scores_from_parts(self, parts: dict[str, np.ndarray], histories: sp.csr_matrix,
                          exclude: sp.csr_matrix | None = None, reach: int | None = None) -> np.ndarray:
        """`score_histories` from the `history_parts` of `histories` already computed (the answer
        path reuses them for `why`): their sum, the popularity tie-break, any cold entry."""
        exclude = sp.csr_matrix(histories if exclude is None else exclude)
        scores = np.zeros(histories.shape, np.float32)
        for part in parts.values():
            scores += part
        scores = self.with_tie_break(scores)
        if self.cold_from is not None:
            for u in range(scores.shape[0]):
                seen = exclude.indices[exclude.indptr[u]:exclude.indptr[u + 1]]
                scores[u] = interleave(scores[u], ~self.warm, self.cold_from, seen, reach)
        return scores

    def history_parts(self, histories: sp.csr_matrix) -> dict[str, np.ndarray]:
        """Each source's part of the blended scores (users x items, its weight included): what
        `score_histories` sums before the popularity tie-break and any cold entry; the API's `why`."""
        assert self.behaviour is not None and self.visual is not None, "build first"
        histories = sp.csr_matrix(histories, dtype=np.float32)
        w = self.weight
        parts = {}
        if w > 0:
            behaviour = self.behaviour.score_histories(histories)
            if self.cold == "factors" and self.cold_factors is not None:
                behaviour = self._with_cold_factors(behaviour, histories)
            elif self.donors.nnz:
                behaviour = behaviour + np.asarray((self.donors @ behaviour.T).T, dtype=np.float32)
            parts["behaviour"] = _scaled(behaviour, w)
        if w < 1:
            if self.taste == "projected" and self.cold_factors is not None:
                visual = self.cold_factors.score(histories)  # the user's taste in projected factors
            else:
                visual = np.asarray((histories @ self.visual.similarity).todense(), dtype=np.float32)
            parts["visual"] = _scaled(visual, 1 - w)
        return parts

    def _with_cold_factors(self, behaviour: np.ndarray, histories: sp.csr_matrix) -> np.ndarray:
        """`behaviour` with each cold item's column replaced by its factor score for the user,
        shifted and scaled so that its spread over the cold items matches that of the user's warm
        scores (times `cold_weight`): comparable, not a guess mapped onto the best warm score."""
        assert self.cold_factors is not None
        cold = ~self.warm
        if not cold.any() or not self.warm.any():
            return behaviour
        z = zscores(self.cold_factors.score(histories)[:, cold])
        warm = behaviour[:, self.warm]
        out = behaviour.copy()
        centre, scale = warm.mean(axis=1, keepdims=True), warm.std(axis=1, keepdims=True)
        out[:, cold] = centre + self.cold_weight * z * scale
        return out

    # -- items -------------------------------------------------------------------------------
    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Sparse: O(neighbours), not O(items). The scaling is the same as for users, computed over
        the row's stored entries (the rest of the catalogue scores 0)."""
        position = self.item_position(item_id)
        return self.similar_from_parts(position, self.item_parts(position), k)

    def similar_from_parts(self, position: int, parts: dict[str, sp.csr_matrix],
                           k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """`similar_items` from the item's `item_parts` already computed (the answer path reuses
        them for `why`)."""
        row = sp.csr_matrix(sum(parts.values(), sp.csr_matrix((1, len(self.item_ids)), dtype=np.float32)))
        row.eliminate_zeros()
        indices, data = row.indices, row.data.astype(np.float32)
        if self.cold_from is not None and len(indices):
            data = interleave(data, ~self.warm[indices], self.cold_from, np.flatnonzero(indices == position))
        order = np.argsort(-data, kind="stable")
        indices, data = indices[order], data[order]
        keep = indices != position
        return self.item_ids[indices[keep][:k]], data[keep][:k].astype(np.float32)

    def item_parts(self, position: int) -> dict[str, sp.csr_matrix]:
        """Each source's part (1 x items, its weight included) of the item's blended row: what
        `similar_items` sums before any cold entry; the API's `why`."""
        assert self.behaviour is not None and self.visual is not None, "build first"
        n = len(self.item_ids)
        w = self.weight
        behaviour = self.behaviour.similarity.getrow(position)
        if not self.warm[position] and self.donors.nnz:  # a cold item: its donors' neighbours
            behaviour = self.donors.getrow(position) @ self.behaviour.similarity
        if self.donors.nnz:
            behaviour = behaviour + (behaviour @ self.donors.T)
        visual = self.visual.similarity.getrow(position)
        return {"behaviour": sp.csr_matrix(w * _scaled_row(sp.csr_matrix(behaviour), n), dtype=np.float32),
                "visual": sp.csr_matrix((1 - w) * _scaled_row(visual, n), dtype=np.float32)}


def interleave(scores: np.ndarray, cold: np.ndarray, start: int,
               skip: np.ndarray | None = None, reach: int | None = None) -> np.ndarray:
    """`scores` (one query's, over items) re-scored so that, ranked, the cold items (in their own
    order) interleave one for one with the warm ones from warm rank `start` onwards: cold item j
    scores midway between warm items `start + j - 1` and `start + j` (below the last warm item when
    there are fewer).
    `skip`: positions that take no rank (what the user has already had; shown to nobody).
    `reach`: only the first `reach` places of the list are read (validation's top K). The cold items
    past the first `reach` in their own order cannot take one (as many cold items rank above each)
    and score -inf, unsorted; the first `reach` places hold what they hold without `reach`. Only the
    warm ranks a cold item can reach are sorted either way."""
    out = np.asarray(scores, np.float32).copy()
    ranked = np.isfinite(out)
    if skip is not None and len(skip):
        ranked[skip] = False
    warm_pos = np.flatnonzero(ranked & ~cold)
    cold_pos = np.flatnonzero(ranked & cold)
    n = len(warm_pos)
    if not len(cold_pos) or n == 0:
        return out
    order = _descending(out[cold_pos], reach)
    if len(order) < len(cold_pos):
        out[cold_pos] = -np.inf
    cold_pos = cold_pos[order]
    slots = start + np.arange(len(cold_pos))
    # the warm scores the slots fall between, best first (all of them only when the slots pass the
    # last), and the lowest
    warm = out[warm_pos].astype(np.float64)
    m = min(n, start + len(cold_pos))
    warm_scores = np.sort(warm if m == n else np.partition(warm, n - m)[n - m:])[::-1]
    lowest = warm.min()
    # cold item j sits midway between warm items start + j - 1 and start + j; past the warm items'
    # end, below the last one, one step apart
    upper = np.concatenate([[warm_scores[0] + 1.0], warm_scores])  # upper[r]: warm rank r - 1
    inside = slots < n
    mid = (upper[np.minimum(slots, m - 1)] + warm_scores[np.minimum(slots, m - 1)]) / 2
    step = max(abs(lowest), 1.0) * 1e-3
    out[cold_pos] = np.where(inside, mid, lowest - step * (1 + slots - n)).astype(np.float32)
    return out


def _descending(values: np.ndarray, first: int | None = None) -> np.ndarray:
    """Positions of `values` best first, ties in position order (a stable argsort of -values);
    with `first`, only the first `first` of them (a partition, then a sort of those alone)."""
    if first is None or first >= len(values):
        return np.argsort(-values, kind="stable")
    first = max(first, 1)
    nth = np.partition(values, len(values) - first)[len(values) - first]  # the first-th best value
    above = np.flatnonzero(values > nth)
    chosen = np.concatenate([above, np.flatnonzero(values == nth)[:first - len(above)]])
    chosen.sort()
    return chosen[np.argsort(-values[chosen], kind="stable")]


def visual_donors(visual: sp.csr_matrix, warm: np.ndarray, n: int = DONORS) -> sp.csr_matrix:
    """Per item: its `n` most similar warm items by image, weights summing to 1."""
    visual = sp.csr_matrix(visual, dtype=np.float32)
    to_warm = visual @ sp.diags(warm.astype(np.float32))
    return _normalise_rows(top_n_per_row(sp.csr_matrix(to_warm), n))


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    matrix.data = np.maximum(matrix.data, 0.0)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.where(sums > 0, 1.0 / np.maximum(sums, 1e-12), 0.0).astype(np.float32)
    out = sp.csr_matrix(sp.diags(scale) @ matrix)
    out.eliminate_zeros()
    return out


def _rows(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """`matrix` with the rows not in `keep` emptied."""
    return sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ sp.csr_matrix(matrix), dtype=np.float32)


def _scaled(scores: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """`weight` times each row divided by its standard deviation over the catalogue (rows with none
    stay 0), as float32; one new array (users x items is the largest thing validation holds)."""
    std = scores.std(axis=1, keepdims=True)
    out = (scores / np.maximum(std, 1e-12)).astype(np.float32, copy=False)
    out[~(std > 1e-12).ravel()] = 0.0
    out *= weight
    return out


def _scaled_row(row: sp.csr_matrix, n: int) -> sp.csr_matrix:
    if row.nnz == 0 or n == 0:
        return sp.csr_matrix((1, n), dtype=np.float32)
    data = row.data.astype(np.float64)
    mean = data.sum() / n
    std = np.sqrt(max((data * data).sum() / n - mean * mean, 0.0))
    return sp.csr_matrix(row * (1.0 / std if std > 1e-12 else 0.0), dtype=np.float32)
