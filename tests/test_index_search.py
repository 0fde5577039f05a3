"""LoadedIndex: similar (lookup, filters, exclusions), search, vectors, metadata, mmap, threads."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from index import loaded as loaded_module
from index.build import BuildOptions, build_version
from index.errors import InputError
from index.store import load_version
from index.synthetic import clustered_vectors, write_embedding_set

N, DIM = 1500, 24


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("search")
    vectors = clustered_vectors(N, DIM, latent=6, clusters=40, seed=11)
    ids = [f"p{i:04d}" for i in range(N)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"/img/{i}.jpg" for i in ids],
                            "category": [("shoes", "bags", "hats")[i % 3] for i in range(N)],
                            "price": np.arange(N) * 1.5})
    emb = write_embedding_set(root / "set", ids, vectors, catalog)
    flat = build_version(emb, root / "flat", "Flat", options=BuildOptions(tune_queries=200))
    hnsw = build_version(emb, root / "hnsw", "HNSW32,Flat", options=BuildOptions(tune_queries=200))
    return root, ids, vectors, catalog, flat, hnsw


def exact(vectors, ids, row, k, allowed=None):
    scores = vectors @ vectors[row]
    order = [i for i in np.argsort(-scores, kind="stable") if i != row and (allowed is None or allowed[i])]
    return [ids[i] for i in order[:k]]


def test_similar_is_exact_for_flat_and_never_the_item_itself(built) -> None:
    root, ids, vectors, _, _, _ = built
    index = load_version(root / "flat")
    assert index.neighbours is not None  # small set: neighbour lists are stored
    for row in (0, 17, 999):
        got = index.similar(ids[row], 10)
        assert [i for i, _ in got] == exact(vectors, ids, row, 10)
        assert ids[row] not in [i for i, _ in got]
        scores = [s for _, s in got]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == pytest.approx(float(vectors[row] @ vectors[ids.index(got[0][0])]), abs=1e-4)


def test_lookup_and_live_search_agree(built) -> None:
    root, ids, _, _, _, _ = built
    index = load_version(root / "hnsw")
    looked_up = [index.similar(i, 10) for i in ids[:50]]
    index.neighbours = None  # force live search
    searched = [index.similar(i, 10) for i in ids[:50]]
    same = np.mean([len({a for a, _ in x} & {b for b, _ in y}) / 10 for x, y in zip(looked_up, searched)])
    assert same >= 0.95
    # k beyond the stored lists falls back to search and still excludes the item
    index = load_version(root / "hnsw")
    many = index.similar(ids[3], 200)
    assert len(many) == 200 and ids[3] not in [i for i, _ in many]


def test_exclude_and_where_filters(built) -> None:
    root, ids, vectors, catalog, _, _ = built
    index = load_version(root / "flat")
    first = [i for i, _ in index.similar(ids[5], 5)]
    got = [i for i, _ in index.similar(ids[5], 5, exclude=first[:2])]
    assert got[:3] == first[2:] and not set(first[:2]) & set(got)
    shoes = catalog["category"].eq("shoes").to_numpy()
    got = index.similar(ids[5], 8, where=lambda items: items["category"] == "shoes")
    assert [i for i, _ in got] == exact(vectors, ids, 5, 8, shoes)
    # a broad filter takes the index-search path; results still obey it
    loaded_module_max = loaded_module.BRUTE_FORCE_MAX
    try:
        loaded_module.BRUTE_FORCE_MAX = 0
        hnsw = load_version(root / "hnsw")
        got = hnsw.similar(ids[5], 8, where=lambda items: items["price"] > 100)
        assert len(got) == 8 and all(float(i[1:]) * 1.5 > 100 for i, _ in got)
        expect = exact(vectors, ids, 5, 8, catalog["price"].to_numpy() > 100)
        assert len({i for i, _ in got} & set(expect)) >= 7
    finally:
        loaded_module.BRUTE_FORCE_MAX = loaded_module_max
    assert index.similar(ids[5], 3, where=lambda items: items["category"] == "none") == []
    with pytest.raises(KeyError):
        index.similar("no-such-item", 3)


def test_search_vectors_metadata_and_padding(built) -> None:
    root, ids, vectors, _, version, _ = built
    index = load_version(root / "flat")
    assert index.version == version and len(index) == N and index.dim == DIM
    D, found = index.search(vectors[[3, 4]] * 7.0, 5)  # scores are cosines whatever the query's norm
    assert list(found[:, 0]) == ["p0003", "p0004"]
    assert D.dtype == np.float32 and D[0, 0] == pytest.approx(1.0, abs=1e-5)
    D, found = index.search(vectors[:1], N + 5)
    assert list(found[0, N:]) == [""] * 5 and np.all(np.isnan(D[0, N:]))
    assert np.allclose(index.vector("p0007"), vectors[7], atol=2e-3)
    assert index.metadata("p0007") == {"item_id": "p0007", "image": "/img/p0007.jpg", "category": "bags",
                                       "price": 10.5}
    assert index.has_item("p0007") and not index.has_item("p9999")
    assert list(index.items.columns) == ["item_id", "image", "category", "price"]
    with pytest.raises(InputError, match=f"shape \\(n, {DIM}\\)"):
        index.search(np.ones((1, DIM + 1)), 3)
    with pytest.raises(InputError, match="non-zero"):
        index.search(np.zeros((1, DIM)), 3)


def test_memory_mapped_load_answers_the_same(built) -> None:
    root, ids, _, _, _, _ = built
    plain = load_version(root / "hnsw", mmap=False)
    mapped = load_version(root / "hnsw", mmap=True)
    plain.neighbours = mapped.neighbours = None
    assert [plain.similar(i, 10) for i in ids[:20]] == [mapped.similar(i, 10) for i in ids[:20]]


def test_loading_sets_search_threads(built, monkeypatch) -> None:
    root = built[0]
    faiss.omp_set_num_threads(2)
    load_version(root / "flat")
    assert faiss.omp_get_max_threads() == 1
    monkeypatch.setenv("RECSYS_FAISS_SEARCH_THREADS", "2")
    load_version(root / "flat")
    assert faiss.omp_get_max_threads() == 2


@pytest.mark.parametrize("factory", ["HNSW32,Flat", "IVF16,Flat"])
def test_filtered_search_through_an_id_selector_is_never_short(built, tmp_path, monkeypatch, factory) -> None:
    root, ids, vectors, catalog, _, _ = built
    version = build_version(root / "set", tmp_path / "store", factory,
                            options=BuildOptions(tune_queries=200))
    index = load_version(tmp_path / "store", version)
    index.neighbours = None
    monkeypatch.setattr(loaded_module, "EXACT_MAX_FLOATS", 0)  # no exact shortcut: the selector answers
    monkeypatch.setattr(loaded_module, "BRUTE_FORCE_MAX", 0)
    used = []
    selected = loaded_module.LoadedIndex._selector_params
    monkeypatch.setattr(loaded_module.LoadedIndex, "_selector_params",
                        lambda self, *a: used.append(1) or selected(self, *a))
    for share in (0.3, 0.02):
        allowed = np.zeros(N, dtype=bool)
        allowed[np.random.default_rng(1).choice(N, int(share * N), replace=False)] = True
        for row in (5, 700):
            got = index.similar(ids[row], 10, allowed=allowed)
            assert len(got) == 10 and all(allowed[int(i[1:])] for i, _ in got)
            overlap = len({i for i, _ in got} & set(exact(vectors, ids, row, 10, allowed)))
            assert overlap >= 7
        if share == 0.3:  # the batched form: one search for both queries, the same quality
            for row, got in zip((5, 700), index.nearest_many(vectors[[5, 700]], 10, allowed)):
                assert len(got) == 10 and all(allowed[int(i[1:])] for i, _ in got)
                assert len({i for i, _ in got} & set(exact(vectors, ids, row, 11, allowed))) >= 7
    assert used
    # fewer allowed items than k: all of them, exactly ranked
    few = np.zeros(N, dtype=bool)
    few[[3, 9, 27]] = True
    assert [i for i, _ in index.similar(ids[5], 10, allowed=few)] == exact(vectors, ids, 5, 10, few)


def test_read_only_masks_answer_like_writable_ones(built) -> None:
    # recsys.filters hands out read-only masks: the index keeps their rows, float32 vectors and
    # search parameters. A writable mask is never kept. Both must give the same answers, bit for
    # bit, whether the stored lists, an exact scan or a selector search answers; and an exact scan
    # the same as scoring the allowed rows' stored vectors one query at a time.
    root, ids, _, _, _, _ = built
    rng = np.random.default_rng(3)
    for store, lists in (("flat", False), ("flat", True), ("hnsw", True), ("hnsw", False)):
        index = load_version(root / store)
        if not lists:
            index.neighbours = None
        for share in (0.01, 0.1, 0.6):
            mask = rng.random(N) < share
            kept = mask.copy()
            kept.flags.writeable = False
            inside = np.flatnonzero(mask)
            for row in [*rng.integers(0, N, 10).tolist(), int(inside[0])]:  # the item itself allowed too
                exclude = [ids[int(r)] for r in inside[1:3]]
                for k in (5, 40):
                    got = index.similar(ids[row], k, exclude, allowed=kept)
                    assert got == index.similar(ids[row], k, exclude, allowed=mask)
                    if store == "flat" and not lists:  # every masked query is an exact scan
                        shown = np.array([r for r in inside if r != row and ids[r] not in exclude])
                        q = np.asarray(index.vectors[row], dtype=np.float32)
                        assert got == index._exact_among(q, shown, k)
        assert len(index._subset_vectors) > 0  # the small masks' vectors were kept
