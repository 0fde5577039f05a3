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
from index.tuning import sample_queries


def evaluate(loaded: LoadedIndex, k: int = 10, queries: int = 1000, seed: int = 0) -> dict[str, Any]:
    n = len(loaded)
    vectors = np.asarray(loaded.vectors, dtype=np.float32)
    with threads.threads(threads.build_threads()):
        sample = sample_queries(vectors, loaded.fids, k, queries, seed)
        xq, kk = sample.xq, sample.k
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
        f"recall@{kk}": round(sample.recall(found), 4),
        "recorded_recall@10": loaded.meta.get("recall@10"),
        "qps_single_thread": round(len(xq) / single_s, 1),
        "qps_batched": round(len(xq) / batched_s, 1),
        "batched_threads": threads.build_threads(),
    }
