"""Sparse helpers shared by the neighbour models."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp


def top_n_per_row(matrix: sp.spmatrix, n: int) -> sp.csr_matrix:
    """Keep each row's `n` largest entries.

    Vectorised as one segmented sort: only the rows holding more than `n` entries are sorted, by
    one float64 key `row + rank-of-value-within-[0, 0.5)`, which numpy sorts far faster than a
    two-key lexsort."""
    matrix = sp.csr_matrix(matrix)
    matrix.eliminate_zeros()
    counts = np.diff(matrix.indptr)
    if counts.size == 0 or counts.max(initial=0) <= n:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    long_rows = np.repeat(counts > n, counts)
    keep = ~long_rows
    where = np.flatnonzero(long_rows)
    values = matrix.data[where].astype(np.float64)
    low, high = values.min(), values.max()
    scaled = (high - values) / (high - low) * 0.5 if high > low else np.zeros_like(values)
    order = where[np.argsort(rows[where] + scaled)]  # by row, best value first
    long_counts = counts[counts > n]
    first = np.repeat(np.cumsum(long_counts) - long_counts, long_counts)  # each entry's row start
    keep[order[np.arange(order.size) - first < n]] = True
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], np.concatenate(
        [[0], np.cumsum(np.bincount(rows[keep], minlength=matrix.shape[0]))])), shape=matrix.shape)


def csr_arrays(prefix: str, matrix: sp.spmatrix) -> dict[str, np.ndarray]:
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.array(matrix.shape, dtype=np.int64),
    }


def csr_from(data: Mapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:  # an NpzFile, say
    return sp.csr_matrix(
        (data[f"{prefix}_data"], data[f"{prefix}_indices"], data[f"{prefix}_indptr"]),
        shape=tuple(int(x) for x in data[f"{prefix}_shape"]),
    )
