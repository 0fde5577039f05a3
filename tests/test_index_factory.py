"""The auto factory rule and each index type it picks, built for real on small sets."""

from __future__ import annotations

import json
import math

import faiss
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.build import BuildOptions, build_version
from index.errors import InputError
from index.evaluate import evaluate
from index.factory import FLAT_MAX_COST, choose_factory, estimate_memory, ivf_lists, parse_size
from index.store import load_version
from index.synthetic import clustered_vectors, write_embedding_set
from index.tuning import hnsw_of

GiB = 1 << 30


def test_choose_factory_by_size_and_budget() -> None:
    assert choose_factory(10_000, 256, 16 * GiB)[0] == "Flat"
    assert choose_factory(1_000_000, 256, 16 * GiB)[0] == "HNSW32,Flat"
    # the full vectors fit but not the graph: IVF over flat vectors
    n, dim = 10_000_000, 256
    between = (estimate_memory("ivf_flat", n, dim) + estimate_memory("hnsw", n, dim)) // 2
    factory, reason = choose_factory(n, dim, between)
    assert factory == f"IVF{ivf_lists(n)},Flat" and "HNSW" in reason
    # the vectors do not fit: OPQ + IVF + PQ codes, as many bytes as the budget allows
    factory, _ = choose_factory(100_000_000, 256, 8 * GiB)
    assert factory.startswith("OPQ64_256,IVF") and factory.endswith(",PQ64np")
    assert choose_factory(100_000_000, 256, 2 * GiB)[0].endswith(",PQ8np")
    with pytest.raises(InputError, match="memory-budget"):
        choose_factory(100_000_000, 256, 100 << 20)


def test_ivf_lists_are_sized_to_the_set() -> None:
    for n in (100_000, 1_000_000, 100_000_000):
        assert 4 * math.sqrt(n) / 2 <= ivf_lists(n) <= 16 * math.sqrt(n)
    assert ivf_lists(1000) <= 1000 // 39  # enough training points per list


def test_parse_size() -> None:
    assert parse_size("512M") == 512 << 20
    assert parse_size("1.5g") == int(1.5 * GiB)
    assert parse_size("2GiB") == 2 * GiB
    assert parse_size(None) is None
    with pytest.raises(InputError, match="memory-budget"):
        parse_size("lots")


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory):
    n, dim = 3000, 32
    vectors = clustered_vectors(n, dim, latent=8, clusters=60, seed=3)
    ids = [f"sku-{i}" for i in range(n)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"/img/{i}.jpg" for i in ids],
                            "category": [("shoes", "bags", "hats")[i % 3] for i in range(n)]})
    return write_embedding_set(tmp_path_factory.mktemp("set"), ids, vectors, catalog), vectors


OPTS = BuildOptions(tune_queries=300)


@pytest.mark.parametrize(
    ("budget", "flat_max_cost", "expect", "target"),
    [
        (None, 4_000_000, "Flat", 0.95),
        (None, 0, "HNSW32,Flat", 0.95),
        # budget between IVF-Flat and HNSW: IVF lists over full vectors
        ((estimate_memory("ivf_flat", 3000, 32) + estimate_memory("hnsw", 3000, 32)) // 2, 0, "IVF", 0.95),
        # budget below the full vectors: PQ codes, whose recall is lower (so a lower target)
        (estimate_memory("ivf_pq", 3000, 32, 8) + 1, 0, "IVF", 0.5),
    ],
)
def test_each_auto_choice_builds_tunes_and_loads(embeddings, tmp_path, budget, flat_max_cost, expect,
                                                target) -> None:
    set_dir, vectors = embeddings
    opts = BuildOptions(tune_queries=300, flat_max_cost=flat_max_cost)
    version = build_version(set_dir, tmp_path, "auto", budget, target, options=opts)
    loaded = load_version(tmp_path)
    assert loaded.version == version
    assert loaded.meta["factory"].startswith(expect)
    assert ("PQ" in loaded.meta["factory"]) == (target < 0.9)
    if target < 0.9:
        assert loaded.meta["factory"].endswith(",PQ8np")
    assert loaded.meta["recall@10"] >= target
    assert loaded.meta["count"] == len(loaded) == 3000
    assert loaded.meta["model"]["id"] == "synthetic-v1" and loaded.meta["model"]["preprocessing"]
    # the tuned parameter is applied when the version loads
    params = loaded.meta["search"]
    if expect == "Flat":
        assert params == {} and loaded.meta["recall@10"] == 1.0
    else:
        assert_loader_applies_meta_search(tmp_path, loaded, params)
    # an independent measurement agrees with what meta.json promises
    assert evaluate(loaded, 10, 300, seed=7)["recall@10"] >= target - 0.03
    # and the nearest item is found by vector search
    scores, ids = loaded.search(vectors[:5], 3)
    assert list(ids[:, 0]) == [f"sku-{i}" for i in range(5)]
    assert np.all(scores[:, 0] > 0.99)


def search_parameter(index: faiss.Index, name: str) -> int:
    if name == "efSearch":
        return hnsw_of(index).hnsw.efSearch
    return faiss.extract_index_ivf(index).nprobe


def assert_loader_applies_meta_search(store, loaded, params: dict[str, int]) -> None:
    """FAISS saves efSearch and nprobe in index.faiss too, so the version is loaded again with
    meta.json naming another value than the file holds: the loaded index must use meta.json's."""
    ((name, tuned),) = params.items()
    assert search_parameter(loaded.index, name) == tuned
    meta_path = loaded.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["search"] = {name: tuned + 3}
    meta_path.write_text(json.dumps(meta))
    in_file = faiss.read_index(str(loaded.path / "index.faiss"))
    assert search_parameter(in_file, name) == tuned
    assert search_parameter(load_version(store).index, name) == tuned + 3
    meta_path.write_text(json.dumps({**meta, "search": params}))


def test_any_factory_string_and_a_bad_one(embeddings, tmp_path) -> None:
    set_dir, _ = embeddings
    version = build_version(set_dir, tmp_path, "HNSW16,SQ8", target_recall=0.9, options=OPTS)
    assert load_version(tmp_path, version).meta["factory"] == "HNSW16,SQ8"
    with pytest.raises(InputError, match="Bogus7"):
        build_version(set_dir, tmp_path, "Bogus7", options=OPTS)


def kind_of(factory: str) -> str:
    if factory == "Flat":
        return "flat"
    if factory.startswith("HNSW"):
        return "hnsw"
    return "ivf_pq" if "PQ" in factory else "ivf_flat"


def check_auto_choice(n: int, dim: int, budget: int, flat_max_cost: int) -> str | None:
    """The choice (None when refused with a reason), constructible by FAISS and within the budget."""
    try:
        factory, reason = choose_factory(n, dim, budget, flat_max_cost)
    except InputError as exc:
        assert "--memory-budget" in str(exc) and str(dim) in str(exc)
        return None
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    assert index.d == dim and reason
    pq_bytes = int(factory.rsplit("PQ", 1)[1].removesuffix("np")) if "PQ" in factory else 0
    assert estimate_memory(kind_of(factory), n, dim, pq_bytes) <= budget
    return factory


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 10**9), dim=st.integers(1, 4096), budget_log2=st.floats(10, 45),
       flat_max_cost=st.sampled_from([0, FLAT_MAX_COST]))
def test_every_auto_choice_is_constructible_and_fits_or_says_why(n, dim, budget_log2, flat_max_cost) -> None:
    check_auto_choice(n, dim, int(2 ** budget_log2), flat_max_cost)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 1500), dim=st.integers(1, 64), budget_fraction=st.floats(0.01, 2.0),
       flat_max_cost=st.sampled_from([0, FLAT_MAX_COST]))
def test_every_small_auto_choice_trains_adds_and_searches(n, dim, budget_fraction, flat_max_cost) -> None:
    budget = int(budget_fraction * estimate_memory("ivf_flat", n, dim))
    factory = check_auto_choice(n, dim, budget, flat_max_cost)
    if factory is None:
        return
    x = np.random.default_rng(n * 7 + dim).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    _, found = index.search(x[:3], 1)
    assert index.ntotal == n and found.shape == (min(n, 3), 1)


def test_pq_choices_fit_the_dimension() -> None:
    # 100 dimensions: neither 64 nor 32 divides them, so the vectors are padded by a rotation
    factory, _ = choose_factory(5000, 100, estimate_memory("ivf_pq", 5000, 100, 64), flat_max_cost=0)
    assert factory == f"RR128,IVF{ivf_lists(5000)},PQ64np"
    assert choose_factory(5000, 128, estimate_memory("ivf_pq", 5000, 128, 64), 0)[0].startswith("IVF")
    # fewer vectors than PQ needs to train, and the budget too small for them in full
    with pytest.raises(InputError, match="at least 256 vectors"):
        choose_factory(200, 64, estimate_memory("ivf_pq", 200, 64, 8), flat_max_cost=0)
    # a budget too small for Flat's vectors is no longer ignored for small sets
    assert choose_factory(5000, 100, estimate_memory("ivf_pq", 5000, 100, 64))[0] != "Flat"
