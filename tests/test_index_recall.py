"""Recall measurement: tie-aware against exact search (items sharing one picture are ties)."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd

from index.build import BuildOptions, build_version
from index.evaluate import evaluate
from index.ids import stable_ids
from index.store import load_version
from index.synthetic import clustered_vectors, write_embedding_set
from index.tuning import sample_queries, tune, tune_held_out


def with_placeholders(n: int, dim: int, groups: int, copies: int, seed: int = 0) -> np.ndarray:
    """Clustered vectors where `groups` pictures are each shared by `copies` items (placeholders)."""
    vectors = clustered_vectors(n, dim, latent=8, clusters=20, seed=seed)
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)[: groups * copies].reshape(groups, copies)
    for group in rows:
        vectors[group] = vectors[group[0]]
    return vectors


def flat_index(vectors: np.ndarray, fids: np.ndarray) -> faiss.Index:
    index = faiss.index_factory(vectors.shape[1], "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(vectors, fids)
    return index


def test_an_exact_index_over_duplicates_measures_recall_one() -> None:
    vectors = with_placeholders(1000, 16, groups=8, copies=25)
    fids = stable_ids([f"i{i}" for i in range(len(vectors))])
    index = flat_index(vectors, fids)
    sample = sample_queries(vectors, fids, 10, 1000)
    assert sample.recall(index.search(sample.xq, 11)[1]) == 1.0
    assert tune(index, vectors, fids, 0.95).recall == 1.0
    held = np.arange(0, 1000, 5)
    part = flat_index(vectors[np.setdiff1d(np.arange(1000), held)], fids[np.setdiff1d(np.arange(1000), held)])
    assert tune_held_out(part, vectors, fids, held, 0.95).recall == 1.0


def test_ties_count_but_worse_ids_do_not() -> None:
    from index.tuning import ExactTruth

    # query e0; scores: a 0.9, b 0.8 and c 0.8 (a tie at the 2nd place), d 0.1
    vectors = np.array([[1, 0], [0.9, np.sqrt(1 - 0.81)], [0.8, 0.6], [0.8, -0.6], [0.1, np.sqrt(0.99)]],
                       dtype=np.float32)
    fids = np.arange(5, dtype=np.int64) + 100
    xq = vectors[:1]
    truth = ExactTruth(xq, np.array([[101, 102]]), vectors, fids)
    assert truth.recall(np.array([[101, 103]])) == 1.0  # c ties b
    assert truth.recall(np.array([[102, 103]])) == 1.0  # b and c both tie the 2nd score
    assert truth.recall(np.array([[101, 104]])) == 0.5  # d is worse
    assert truth.recall(np.array([[101, -1]])) == 0.5  # nothing found
    assert truth.recall(np.array([[101, 999]])) == 0.5  # an id not in the set
    assert truth.recall(np.array([[104, 103]])) == 0.5


def test_a_catalogue_sharing_a_placeholder_picture_publishes(tmp_path) -> None:
    n = 1500
    vectors = with_placeholders(n, 16, groups=4, copies=25, seed=2)
    ids = [f"p{i}" for i in range(n)]
    set_dir = write_embedding_set(tmp_path / "set", ids, vectors, pd.DataFrame({"item_id": ids}))
    version = build_version(set_dir, tmp_path / "store", "auto", target_recall=0.999,
                            options=BuildOptions(tune_queries=300))
    loaded = load_version(tmp_path / "store")
    assert loaded.version == version and loaded.meta["factory"] == "Flat"
    assert loaded.meta["recall@10"] == 1.0
    # eval measures against the stored float16 vectors: near-ties may reorder, exact ties do not
    assert evaluate(loaded, 10, 1500)["recall@10"] >= 0.99
