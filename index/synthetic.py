"""Synthetic embedding sets for tests and benchmarks (no neural network needed).

Vectors are clustered with a low intrinsic dimension, like real image embeddings: a mixture of
Gaussian centres in a small latent space, projected to `dim` dimensions, plus isotropic noise,
then L2-normalised (the generator NOTES.md's FAISS figures were measured on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from embeddings.embedding_set import CATALOG, MANIFEST, atomic_write_table, merge_failures, write_part
from embeddings.files import atomic_write_json


def clustered_vectors(n: int, dim: int = 256, latent: int = 32, clusters: int = 1000, noise: float = 0.1,
                      seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float32 unit vectors from a latent mixture; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    clusters = max(1, min(clusters, n))
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    spread = rng.uniform(0.3, 1.0, clusters).astype(np.float32)
    projection = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, clusters, m)
        z = centres[which] + spread[which, None] * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ projection + noise * rng.standard_normal((m, dim), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_embedding_set(out_dir: str | Path, item_ids: list[str], vectors: np.ndarray,
                        catalog: pd.DataFrame | None = None, model_id: str = "synthetic-v1",
                        part_size: int = 50_000) -> Path:
    """A complete embedding set folder (parts, failures, catalog, manifest) holding these vectors."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(item_ids), part_size)):
        ids = list(item_ids[start:start + part_size])
        write_part(out, part, ids, vectors[start:start + part_size], ["0" * 64] * len(ids), [])
    merge_failures(out)
    if catalog is None:
        catalog = pd.DataFrame({"item_id": list(item_ids), "image": [f"/images/{i}.jpg" for i in item_ids]})
    atomic_write_table(pa.Table.from_pandas(catalog, preserve_index=False), out / CATALOG)
    n = len(item_ids)
    manifest = {
        "dim": int(vectors.shape[1]),
        "model": {"spec": "synthetic", "id": model_id, "preprocessing": {"input_size": [3, 224, 224]}},
        "counts": {"total": n, "computed": n, "reused": 0, "failed": 0},
    }
    atomic_write_json(manifest, out / MANIFEST)
    return out
