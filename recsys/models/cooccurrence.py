"""Item-item co-occurrence: cosine of item columns, top-N neighbours per item, built in blocks.

Scales to a million items and a hundred million events on one machine: the item x user matrix is
multiplied by the user x item matrix one block of items at a time, and each block keeps only its
top-N neighbours per item before the next block starts, so memory follows N x items, not items^2.
Blocks are cut by cost, not by count: an item's product row has at most the summed history lengths
of its users as non-zeros, and a block holds items until that bound reaches `block_pairs`, so a
block of best-sellers is small and a block of rarely seen items is large.
Weights are damped with log1p so that one heavy user does not dominate a pair.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.interactions import Interactions
from recsys.models.base import NeighbourModel, popularity_scores
from recsys.sparse_ops import top_n_per_row

log = logging.getLogger(__name__)


class CooccurrenceModel(NeighbourModel):
    kind = "cooc"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, block_items: int = 4096,
                 block_pairs: int = 20_000_000) -> None:
        super().__init__()
        self.neighbours = neighbours
        self.shrink = shrink  # cosine * n / (n + shrink): pairs seen together rarely count less
        self.block_items = block_items  # at most this many items per block
        self.block_pairs = block_pairs  # and at most about this many candidate pairs per block

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrink": self.shrink, "block_items": self.block_items,
                "block_pairs": self.block_pairs}

    def fit(self, interactions: Interactions) -> CooccurrenceModel:
        x = interactions.matrix.astype(np.float32).tocsr()
        x.data = np.log1p(x.data)
        binary = x.copy()
        binary.data[:] = 1.0
        xt = x.T.tocsr()
        bt = binary.T.tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        n_items = x.shape[1]
        history = np.diff(binary.indptr).astype(np.float64)  # items per user
        cost = bt @ history  # per item: an upper bound on its product row's non-zeros
        bounds = self._blocks(cost)
        log.info("co-occurrence: %d users x %d items, %d non-zeros, %d blocks, about %.0f M pairs",
                 x.shape[0], n_items, x.nnz, len(bounds), cost.sum() / 1e6)
        blocks = []
        for start, stop in bounds:
            dots = (xt[start:stop] @ x).tocsr()  # (block, n_items)
            together = (bt[start:stop] @ binary).tocsr()
            cosine = sp.diags(inv[start:stop]) @ dots @ sp.diags(inv)
            if self.shrink > 0:
                together.data = together.data / (together.data + self.shrink)
                cosine = cosine.multiply(together)
            blocks.append(top_n_per_row(_drop_self(sp.csr_matrix(cosine), start), self.neighbours))
        self.similarity = sp.vstack(blocks, format="csr").astype(np.float32) if blocks else sp.csr_matrix(
            (0, 0), dtype=np.float32)
        self.item_ids = interactions.item_ids
        self.popularity = popularity_scores(interactions)
        return self

    def _blocks(self, cost: np.ndarray) -> list[tuple[int, int]]:
        bounds, start, total = [], 0, 0.0
        for item, c in enumerate(cost):
            if item > start and (total + c > self.block_pairs or item - start >= self.block_items):
                bounds.append((start, item))
                start, total = item, 0.0
            total += c
        if len(cost):
            bounds.append((start, len(cost)))
        return bounds


def _drop_self(block: sp.csr_matrix, start: int) -> sp.csr_matrix:
    """Remove each item's similarity to itself (row r of the block is item start + r)."""
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    block.data[block.indices == rows + start] = 0.0
    block.eliminate_zeros()
    return block
