"""Item-item co-occurrence counted per shard of users on Ray and summed: behaviour past one machine.

The count C = B^T B of the binary user x item matrix B (C[i, j]: how many users touched both i and
j; the diagonal, each item's own user count) is a sum over users, so B splits by rows into shards
of users, each worker counts its shard's B_s^T B_s with scipy's sparse product, and the sums of
the shards' sparse results are the whole count, exactly. A worker holds only its shard and its
shard's pairs; the driver holds the running sum. (Past the memory of one driver, the same split by
blocks of item columns gives each block's rows on their own; docs/scaling.md.)

Ray is an optional dependency (the `ray` extra): it is imported when called, and a Ray cluster is
joined or, without one, started locally (`ray.init`), as the embed engine does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """1 wherever a user touched an item (float32)."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def shard_counts(shard: sp.csr_matrix) -> sp.csr_matrix:
    """One shard of users' co-occurrence counts (items x items, float32 holding whole numbers)."""
    b = binary(shard)
    return (b.T.tocsr() @ b).tocsr()


def cooccurrence_counts(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The whole count in this process: what the sharded count must equal."""
    return shard_counts(sp.csr_matrix(matrix))


def user_shards(matrix: sp.spmatrix, shards: int) -> list[sp.csr_matrix]:
    """Row shards of about equal numbers of events (users stay whole)."""
    matrix = sp.csr_matrix(matrix)
    shards = max(1, min(shards, matrix.shape[0]))
    cuts = np.searchsorted(matrix.indptr, np.linspace(0, matrix.nnz, shards + 1)[1:-1])
    bounds = [0, *sorted(set(int(c) for c in cuts)), matrix.shape[0]]
    return [matrix[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]


def cooccurrence_counts_ray(matrix: sp.spmatrix, shards: int = 8) -> sp.csr_matrix:
    """The count, each shard of users counted by a Ray task, the results summed as they arrive."""
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    count = ray.remote(shard_counts)
    n_items = matrix.shape[1]
    pending = [count.remote(ray.put(shard)) for shard in user_shards(matrix, shards)]
    total = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        total = total + ray.get(done[0])
    total.sum_duplicates()
    return total
