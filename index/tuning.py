"""Recall measurement against exact search, and search-parameter tuning to a target recall.

Recall@k of an approximate search is the share of the exact top-k it returns, tie-aware: a found
id whose exact score ties the k-th exact score (within TIE_TOLERANCE) is a hit, as in FAISS contrib's
range-based evaluation. Without that, a catalogue where 25 items share one picture measures an
exact index at recall 0.81: which of the tied ids make the top k is arbitrary. Queries are a random
sample of the indexed items themselves, each searched with its own id left out of both lists: that
is exactly what `similar` does with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

HNSW_EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
HNSW_EF_SEARCH_WIDE = HNSW_EF_SEARCH + (1536, 2048, 3072, 4096)  # `--factory auto` escalating
IVF_NPROBE = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
# Exact scores this close to the k-th one count as ties (float32 sums of unit vectors differ in the
# last bits depending on how they were computed).
TIE_TOLERANCE = 1e-5


def exact_knn(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of xq over xb (FAISS's blocked brute force; xb is not copied)."""
    return faiss.knn(np.ascontiguousarray(xq, dtype=np.float32),
                     np.ascontiguousarray(xb, dtype=np.float32), k, metric=faiss.METRIC_INNER_PRODUCT)


def drop_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    """Each row's first k ids other than its own (rows were searched with k + 1)."""
    out = np.full((len(ids), k), -1, dtype=ids.dtype)
    for r, (row, own) in enumerate(zip(ids, self_ids, strict=True)):
        kept = row[row != own][:k]
        out[r, : len(kept)] = kept
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the exact ids (truth, -1 ignored) present in the found rows (not tie-aware: for
    data without exact ties, such as the benchmark's; the index's own measures use ExactTruth)."""
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f, t))
        total += len(t)
    return hits / total if total else 1.0


class ExactTruth:
    """Queries with their exact top-k ids, measuring found ids by tie-aware recall@k.

    Each query's exact k-th score is its threshold; a found id is a hit when its own exact score
    (recomputed from `vectors`) reaches the threshold less TIE_TOLERANCE. A query's hits are
    capped at the number of its exact neighbours (fewer than k only in tiny sets).
    """

    def __init__(self, xq: np.ndarray, truth: np.ndarray, vectors: np.ndarray, fids: np.ndarray) -> None:
        self.xq = xq
        self.truth = truth
        self._vectors = vectors
        self._order = np.argsort(fids, kind="stable")
        self._sorted = fids[self._order]
        self.size = (truth >= 0).sum(axis=1)
        scores = self.scores(truth)
        self.threshold = np.where(self.size > 0, np.min(scores, axis=1, initial=np.inf), np.inf)

    def scores(self, ids: np.ndarray) -> np.ndarray:
        """Exact inner products of each query with its row of ids (-inf for -1 or unknown ids)."""
        if ids.shape[1] == 0:
            return np.empty(ids.shape, dtype=np.float32)
        pos = np.clip(np.searchsorted(self._sorted, ids), 0, len(self._sorted) - 1)
        known = (ids >= 0) & (self._sorted[pos] == ids)
        rows = self._order[pos]
        vectors = np.asarray(self._vectors[rows.reshape(-1)], dtype=np.float32).reshape(*ids.shape, -1)
        scores = np.einsum("qd,qkd->qk", self.xq, vectors)
        return np.where(known, scores, -np.inf)

    def recall(self, found: np.ndarray) -> float:
        """Tie-aware recall@k of `found` (one row of at most k ids a query, -1 padded)."""
        total = int(self.size.sum())
        if total == 0:
            return 1.0
        ties = self.scores(found) >= self.threshold[:, None] - TIE_TOLERANCE
        return float(np.minimum(ties.sum(axis=1), self.size).sum()) / total


def tunable_parameter(index: faiss.Index, wide: bool = False,
                      exhaustive: bool = True) -> tuple[str, tuple[int, ...]] | None:
    """The search parameter that trades speed for recall on this index, with its candidate values
    (efSearch up to 4096 when `wide`; nprobe up to nlist when `exhaustive`, else below it)."""
    if faiss.try_extract_index_ivf(index) is not None:
        nlist = faiss.extract_index_ivf(index).nlist
        below = tuple(p for p in IVF_NPROBE if p < nlist)
        return "nprobe", below + (nlist,) if exhaustive or not below else below
    if hnsw_of(index) is not None:
        return "efSearch", HNSW_EF_SEARCH_WIDE if wide else HNSW_EF_SEARCH
    return None


def hnsw_of(index: faiss.Index) -> faiss.Index | None:
    """The HNSW index inside an IDMap wrapper (or the index itself), else None."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    return inner if hasattr(inner, "hnsw") else None


def apply_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)


@dataclass
class TuneResult:
    params: dict[str, int]
    recall: float
    met: bool
    curve: list[tuple[int, float]] = field(default_factory=list)  # (parameter value, recall@k)


def held_out_rows(n: int, queries: int, seed: int = 0) -> np.ndarray:
    """Rows to keep out of the index while tuning: up to `queries`, at most a fifth of the set."""
    size = min(queries, max(1, n // 5)) if n > 1 else 0
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def exact_knn_without(xb: np.ndarray, xq: np.ndarray, k: int, without: np.ndarray,
                      block: int = 200_000) -> np.ndarray:
    """Rows of the exact inner-product top-k of xq over xb minus the rows `without` (-1 padded)."""
    best_s = np.full((len(xq), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(xq), k), -1, dtype=np.int64)
    for start in range(0, len(xb), block):
        part = xb[start:start + block]
        scores, rows = exact_knn(part, xq, min(k + len(without), len(part)))
        rows = np.where(rows >= 0, rows + start, -1)
        scores = np.where(np.isin(rows, without) | (rows < 0), -np.inf, scores)
        both_s, both_i = np.hstack([best_s, scores]), np.hstack([best_i, rows])
        top = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
    return np.where(np.isfinite(best_s), best_i, -1)


def tune_held_out(index: faiss.Index, vectors: np.ndarray, fids: np.ndarray, held_out: np.ndarray,
                  target: float, k: int = 10, wide: bool = False, exhaustive: bool = True) -> TuneResult:
    """Tune on vectors that are not (yet) in the index: the `held_out` rows of `vectors`.

    The index holds every other row; the truth is exact search over those. This is the recall a
    query from outside the catalogue (an upload) gets; catalogue items as queries do a little better.
    `wide` and `exhaustive` widen the parameter's range (tunable_parameter).
    """
    kk = min(k, len(vectors) - len(held_out))
    if kk <= 0 or len(held_out) == 0:
        return TuneResult({}, 1.0, True)
    xq = np.ascontiguousarray(vectors[held_out], dtype=np.float32)
    exact_rows = exact_knn_without(vectors, xq, kk, held_out)
    truth = ExactTruth(xq, np.where(exact_rows >= 0, fids[exact_rows], -1), vectors, fids)

    def measure() -> float:
        return truth.recall(index.search(xq, kk)[1])

    return _sweep(index, measure, target, tunable_parameter(index, wide, exhaustive))


@dataclass
class SampledQueries:
    """Sampled indexed items as queries, with their exact top-k neighbours (each item left out)."""

    xq: np.ndarray  # their vectors, float32
    own: np.ndarray  # their ids
    k: int  # min(k, n - 1): an item has at most n - 1 others
    exact: ExactTruth  # each query's exact top-k others

    def recall(self, found: np.ndarray) -> float:
        """Tie-aware recall@k of the ids found by searching `xq` with k + 1 (each query's own id
        is dropped)."""
        return self.exact.recall(drop_self(found, self.own, self.k))


def sample_queries(vectors: np.ndarray, fids: np.ndarray, k: int, queries: int,
                   seed: int = 0) -> SampledQueries:
    """Up to `queries` random rows as queries, with their exact inner-product top-k over `vectors`."""
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
    xq = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    kk = min(k, n - 1)
    own = fids[rows]
    if kk <= 0:
        return SampledQueries(xq, own, 0,
                              ExactTruth(xq, np.empty((len(rows), 0), dtype=np.int64), vectors, fids))
    _, exact_rows = exact_knn(vectors, xq, kk + 1)
    truth = drop_self(np.where(exact_rows >= 0, fids[exact_rows], -1), own, kk)
    return SampledQueries(xq, own, kk, ExactTruth(xq, truth, vectors, fids))


def tune(index: faiss.Index, vectors: np.ndarray, fids: np.ndarray, target: float, k: int = 10,
         queries: int = 1000, seed: int = 0) -> TuneResult:
    """Tune on sampled indexed items as queries, each with itself left out (for updated indexes,
    where nothing can be held out).
    """
    sample = sample_queries(vectors, fids, k, queries, seed)
    if sample.k <= 0:
        return TuneResult({}, 1.0, True)

    def measure() -> float:
        return sample.recall(index.search(sample.xq, sample.k + 1)[1])

    return _sweep(index, measure, target, tunable_parameter(index))


def _sweep(index: faiss.Index, measure, target: float,
           tunable: tuple[str, tuple[int, ...]] | None) -> TuneResult:
    """Smallest value of the tunable parameter whose measured recall reaches `target`.

    With no tunable parameter (Flat) the recall is measured once. If no value reaches the target,
    the best one is kept and `met` is False.
    """
    if tunable is None:
        recall = measure()
        return TuneResult({}, recall, recall >= target)
    name, values = tunable
    curve: list[tuple[int, float]] = []
    for value in values:
        apply_search_params(index, {name: value})
        recall = measure()
        curve.append((value, recall))
        if recall >= target:
            return TuneResult({name: value}, recall, True, curve)
    best_value, best = max(curve, key=lambda c: c[1])
    apply_search_params(index, {name: best_value})
    return TuneResult({name: best_value}, best, False, curve)
