"""Sparse helpers shared by the neighbour models."""

from __future__ import annotations

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


def row_max_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row so that its largest absolute value is 1 (empty rows stay empty)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    peak = np.zeros(matrix.shape[0], dtype=np.float32)
    counts = np.diff(matrix.indptr)
    nonempty = counts > 0
    if nonempty.any():
        peak[nonempty] = np.maximum.reduceat(np.abs(matrix.data), matrix.indptr[:-1][nonempty])
    scale = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
    matrix.data *= np.repeat(scale, counts)
    return matrix


def row_min_max_normalise(matrix: sp.csr_matrix, floor: float = 0.01) -> sp.csr_matrix:
    """Map each row's stored values onto [floor, 1]: its weakest kept neighbour `floor`, its best 1.

    Visual cosines of one catalogue sit in a narrow band (say 0.6 to 0.9); stretching them makes
    them comparable with behaviour scores before blending.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    counts = np.diff(matrix.indptr)
    nonempty = counts > 0
    low = np.zeros(matrix.shape[0], dtype=np.float32)
    high = np.zeros(matrix.shape[0], dtype=np.float32)
    if nonempty.any():
        starts = matrix.indptr[:-1][nonempty]
        low[nonempty] = np.minimum.reduceat(matrix.data, starts)
        high[nonempty] = np.maximum.reduceat(matrix.data, starts)
    span = high - low
    row_low = np.repeat(low, counts)
    row_span = np.repeat(span, counts)
    scaled = np.where(row_span > 1e-9, (matrix.data - row_low) / np.maximum(row_span, 1e-9), 1.0)
    matrix.data = floor + (1.0 - floor) * scaled  # > 0, so the weakest neighbour stays in the row
    matrix.data = matrix.data.astype(np.float32)
    return matrix


def csr_arrays(prefix: str, matrix: sp.spmatrix) -> dict[str, np.ndarray]:
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.array(matrix.shape, dtype=np.int64),
    }


def csr_from(data, prefix: str) -> sp.csr_matrix:  # noqa: ANN001 - an NpzFile
    return sp.csr_matrix(
        (data[f"{prefix}_data"], data[f"{prefix}_indices"], data[f"{prefix}_indptr"]),
        shape=tuple(int(x) for x in data[f"{prefix}_shape"]),
    )
