"""PCA projection of unit vectors to fewer dimensions, stored as `projection.npy` in an artifact.

The layout is row 0 the centring mean, rows 1.. the principal axes (`embeddings.artifact`);
`embeddings.vectors.project` applies it.
"""

from __future__ import annotations

import numpy as np

from embeddings.errors import InputError


def fit_projection(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Fit PCA on (n, d) unit vectors; returns the (1 + dim, d) float32 projection array."""
    n, d = vectors.shape
    if not 1 <= dim < d:
        raise InputError(f"--dim {dim}: must be between 1 and the model's {d} dimensions")
    if n < dim:
        raise InputError(f"--dim {dim}: PCA needs at least {dim} catalogue images, got {n}")
    mean = vectors.mean(axis=0)
    # SVD of the centred data: the rows of vt are the principal axes, strongest first.
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return np.vstack([mean[None, :], vt[:dim]]).astype(np.float32)


def explained_variance(vectors: np.ndarray, projection: np.ndarray) -> float:
    centred = vectors - projection[0]
    kept = centred @ projection[1:].T
    return float((kept**2).sum() / max((centred**2).sum(), 1e-12))
