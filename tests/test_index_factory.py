"""The auto factory rule and each index type it picks, built for real on small sets."""

from __future__ import annotations

import json
import math

import faiss
import numpy as np
import pandas as pd
import pytest

from index.build import BuildOptions, build_version
from index.errors import InputError
from index.evaluate import evaluate
from index.factory import choose_factory, estimate_memory, ivf_lists, parse_size
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
