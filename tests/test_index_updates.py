"""In-place updates: add, remove and replace where the index type allows it; HNSW cannot remove."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from index.build import BuildOptions, build_version, update_version
from index.errors import InputError, UpdateNotSupported
from index.store import load_version
from index.synthetic import clustered_vectors, write_embedding_set

OPTS = BuildOptions(tune_queries=200)


def make_set(path, ids, vectors, model_id="synthetic-v1"):
    catalog = pd.DataFrame({"item_id": ids, "image": [f"/img/{i}.jpg" for i in ids]})
    return write_embedding_set(path, list(ids), vectors, catalog, model_id=model_id)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("updates")
    vectors = clustered_vectors(1300, 16, latent=6, clusters=30, seed=21)
    ids = np.array([f"u{i}" for i in range(1300)])
    old = make_set(root / "old", ids[:1000], vectors[:1000])
    # the next night: 50 items gone, 30 with new images, 300 new items
    keep = np.arange(50, 1000)
    changed = keep[:30]
    new_vectors = vectors.copy()
    new_vectors[changed] = clustered_vectors(30, 16, latent=6, clusters=30, seed=99)
    rows = np.concatenate([keep, np.arange(1000, 1300)])
    new = make_set(root / "new", ids[rows], new_vectors[rows])
    grow = make_set(root / "grow", ids[:1300], vectors[:1300])
    return root, ids, vectors, new_vectors, rows, changed, old, new, grow


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_add_remove_replace_in_place(sets, tmp_path, factory) -> None:
    _, ids, _, new_vectors, rows, changed, old, new, _ = sets
    v1 = build_version(old, tmp_path, factory, options=OPTS)
    v2 = update_version(new, tmp_path, options=OPTS)
    index = load_version(tmp_path)
    assert index.version == v2
    assert index.meta["parent"] == v1 and index.meta["factory"] == factory
    assert index.meta["update"] == {"added": 300, "removed": 50, "replaced": 30,
                                    "seconds": index.meta["update"]["seconds"]}
    assert len(index) == index.index.ntotal == len(rows) == 1250
    assert not index.has_item("u0") and index.has_item("u1299")
    assert np.allclose(index.vector(ids[changed[0]]), new_vectors[changed[0]], atol=2e-3)
    # the updated index answers like a fresh exact search over the new set
    for row in (0, 500, 1200):
        item = ids[rows[row]]
        scores = new_vectors[rows] @ new_vectors[rows[row]]
        expect = [ids[rows[i]] for i in np.argsort(-scores, kind="stable") if i != row][:5]
        got = [i for i, _ in index.similar(item, 5)]
        assert len(set(got) & set(expect)) >= (5 if factory == "Flat" else 4)
    assert index.meta["recall@10"] >= 0.95


def test_hnsw_adds_but_cannot_remove(sets, tmp_path) -> None:
    _, _, _, _, _, _, old, new, grow = sets
    build_version(old, tmp_path, "HNSW16,Flat", options=OPTS)
    version = update_version(grow, tmp_path, options=OPTS)
    index = load_version(tmp_path)
    assert index.version == version and len(index) == 1300 and index.meta["update"]["added"] == 300
    assert index.meta["supports_remove"] is False
    with pytest.raises(UpdateNotSupported, match="HNSW cannot remove items.*removes 50 and replaces 30"):
        update_version(new, tmp_path, options=OPTS)
    assert load_version(tmp_path).version == version  # nothing published


def test_update_refuses_another_model(sets, tmp_path) -> None:
    root, ids, vectors, *_ = sets
    old = sets[6]
    build_version(old, tmp_path, "Flat", options=OPTS)
    other = make_set(root / "other-model", ids[:10], vectors[:10], model_id="another-model")
    with pytest.raises(InputError, match="another-model.*full build"):
        update_version(other, tmp_path, options=OPTS)
