"""Recall measurement against exact search, and search-parameter tuning to a target recall.

Recall@k of an approximate search is the share of the exact top-k ids it returns (FAISS
contrib's definition). Queries are a random sample of the indexed items themselves, each searched
with its own id left out of both lists: that is exactly what `similar` does with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

HNSW_EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
IVF_NPROBE = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)


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
    """Share of the exact ids (truth, -1 ignored) present in the found rows."""
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f, t))
        total += len(t)
    return hits / total if total else 1.0


def tunable_parameter(index: faiss.Index) -> tuple[str, tuple[int, ...]] | None:
    """The search parameter that trades speed for recall on this index, with its candidate values."""
    if faiss.try_extract_index_ivf(index) is not None:
        nlist = faiss.extract_index_ivf(index).nlist
        return "nprobe", tuple(p for p in IVF_NPROBE if p < nlist) + (nlist,)
    if hnsw_of(index) is not None:
        return "efSearch", HNSW_EF_SEARCH
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


def tune(index: faiss.Index, vectors: np.ndarray, fids: np.ndarray, target: float, k: int = 10,
         queries: int = 1000, seed: int = 0) -> TuneResult:
    """Smallest parameter value reaching `target` recall@k (vectors/fids are the indexed items).

    With no tunable parameter (Flat) the recall is measured once. If no value reaches the target,
    the best one is kept and `met` is False.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    xq = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    kk = min(k, n - 1)
    if kk <= 0:
        return TuneResult({}, 1.0, True)
    _, exact_rows = exact_knn(vectors, xq, kk + 1)
    truth = drop_self(np.where(exact_rows >= 0, fids[exact_rows], -1), fids[rows], kk)

    def measure() -> float:
        _, found = index.search(xq, kk + 1)
        return recall_at_k(drop_self(found, fids[rows], kk), truth)

    tunable = tunable_parameter(index)
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
