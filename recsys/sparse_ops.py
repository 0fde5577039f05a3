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
    """The matrix `csr_arrays` wrote, checked whole (scipy's own check misses a decreasing index
    pointer): ValueError naming `prefix` when its arrays do not make one."""
    values, indices, indptr, shape = (data[f"{prefix}_{part}"]
                                      for part in ("data", "indices", "indptr", "shape"))
    if values.dtype.kind not in "fiu" or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" \
            or shape.dtype.kind not in "iu":
        raise ValueError(f"{prefix}: expected real values and integer indices, index pointer and shape, "
                         f"got {values.dtype}, {indices.dtype}, {indptr.dtype} and {shape.dtype}")
    if shape.shape != (2,) or shape.min() < 0:
        raise ValueError(f"{prefix}_shape: expected 2 sizes, got {shape.tolist()}")
    rows, cols = (int(x) for x in shape)
    if values.ndim != 1 or values.shape != indices.shape:
        raise ValueError(f"{prefix}: {values.shape} values for {indices.shape} column indices")
    if indptr.shape != (rows + 1,) or indptr[0] != 0 or indptr[-1] != len(indices) \
            or (np.diff(indptr) < 0).any():
        raise ValueError(f"{prefix}_indptr: not {rows + 1} non-decreasing offsets from 0 to {len(indices)}")
    if len(indices) and (indices.min() < 0 or indices.max() >= cols):
        raise ValueError(f"{prefix}_indices: column indices outside 0..{cols - 1}")
    if not np.isfinite(values).all():
        raise ValueError(f"{prefix}_data: holds values that are not finite")
    return sp.csr_matrix((values, indices, indptr), shape=(rows, cols))
