"""Ranking metrics, pure and per user: Recall@K, NDCG@K, MRR@K, and catalogue coverage.

Recall@K = hits in the top K / number of relevant items. NDCG@K uses binary gains and
1 / log2(rank + 1) discounts, normalised by the best possible ranking of min(K, relevant) hits.
MRR@K = 1 / rank of the first hit within the top K, else 0.
`bootstrap_interval`: a 95% interval of a per-user mean, resampling users with replacement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def recall_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("ndcg needs at least one relevant item")
    dcg = sum(1.0 / np.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return float(dcg / ideal)


def mrr_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    for rank, item in enumerate(ranked[:k]):
        if item in relevant:
            return 1.0 / (rank + 1)
    return 0.0


def coverage(top_lists: Iterable[Sequence], n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-K list."""
    shown: set = set()
    for ranked in top_lists:
        shown.update(ranked)
    return len(shown) / n_items if n_items else 0.0


def bootstrap_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """The `level` percentile interval of the mean of `values` over `resamples` bootstrap draws."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))
