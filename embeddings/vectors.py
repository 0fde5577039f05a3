"""Unit vectors: what every runtime returns, and the PCA projection an artifact may apply."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def project(vectors: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Unit vectors through an artifact's `projection.npy` (row 0 the mean, rows 1.. the axes), unit again."""
    return l2_normalize((vectors - projection[0]) @ projection[1:].T)
