"""`recsys index eval`: recall@k and queries per second of a stored version.

Recall is measured against exact search over the version's own vectors (vectors.npy), with sampled
items as queries and each query's own item left out, as in the build's tuning. Single-thread QPS
asks one query per call on one FAISS thread (a server's situation); batched QPS sends all
queries in one call on the build threads.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from index import threads
from index.loaded import LoadedIndex
from index.tuning import drop_self, exact_knn, recall_at_k


def evaluate(loaded: LoadedIndex, k: int = 10, queries: int = 1000, seed: int = 0) -> dict[str, Any]:
    n = len(loaded)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    kk = min(k, n - 1)
    vectors = np.asarray(loaded.vectors, dtype=np.float32)
    xq = np.ascontiguousarray(vectors[rows])
    own = loaded.fids[rows]
    with threads.threads(threads.build_threads()):
        _, exact = exact_knn(vectors, xq, kk + 1)
        truth = drop_self(loaded.fids[exact], own, kk)
        started = time.perf_counter()
        _, found = loaded.index.search(xq, kk + 1)
        batched_s = time.perf_counter() - started
    with threads.threads(1):
        started = time.perf_counter()
        for i in range(len(xq)):
            loaded.index.search(xq[i:i + 1], kk + 1)
        single_s = time.perf_counter() - started
    return {
        "version": loaded.version,
        "factory": loaded.meta.get("factory"),
        "count": n,
        "k": kk,
        "queries": len(xq),
        "search": loaded.meta.get("search", {}),
        f"recall@{kk}": round(recall_at_k(drop_self(found, own, kk), truth), 4),
        "recorded_recall@10": loaded.meta.get("recall@10"),
        "qps_single_thread": round(len(xq) / single_s, 1),
        "qps_batched": round(len(xq) / batched_s, 1),
        "batched_threads": threads.build_threads(),
    }
