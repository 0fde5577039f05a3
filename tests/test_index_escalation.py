"""`--factory auto` escalation: plans tried in turn until the target recall holds, or a plain
statement that nothing within the memory budget reaches it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from index.build import BuildOptions, build_version
from index.errors import RecallNotMet
from index.factory import HNSW_M_LARGE, auto_plans, estimate_memory, ivf_lists
from index.store import IndexStore, load_version
from index.synthetic import write_embedding_set


def isotropic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with no structure at all: the hardest legal input for approximate search."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_plans_escalate_within_the_budget() -> None:
    n, dim = 100_000, 256
    roomy = auto_plans(n, dim, 16 << 30)
    assert [p.factory for p in roomy] == ["HNSW32,Flat", f"HNSW{HNSW_M_LARGE},Flat",
                                         f"IVF{ivf_lists(n)},Flat", "Flat"]
    assert roomy[0].wide_search and roomy[1].ef_construction > 80 and not roomy[2].exhaustive
    # HNSW32 fits but HNSW64 does not: no rebuild with larger M
    tight = estimate_memory("hnsw", n, dim) + 1
    assert [p.factory for p in auto_plans(n, dim, tight)][1:] == [f"IVF{ivf_lists(n)},Flat", "Flat"]
    # IVF-Flat alone: its nprobe goes up to nlist, which is exact
    ivf_only = auto_plans(n, dim, estimate_memory("ivf_flat", n, dim) + 1)
    assert len(ivf_only) == 1 and ivf_only[0].factory.startswith("IVF") and ivf_only[0].exhaustive
    # PQ: the most bytes the budget allows, nothing bigger to escalate to
    assert [p.factory for p in auto_plans(n, dim, 50 << 20)] == [f"OPQ64_256,IVF{ivf_lists(n)},PQ64np"]


def write_set(folder, vectors: np.ndarray):
    ids = [f"v{i}" for i in range(len(vectors))]
    return write_embedding_set(folder, ids, vectors, pd.DataFrame({"item_id": ids}))


def test_a_hard_case_escalates_until_the_target_holds(tmp_path) -> None:
    # A graph built far too cheaply (efConstruction 2) over structureless vectors, and a target of
    # exact recall: the first plan cannot reach it at any efSearch, the escalation must. The
    # budget leaves out the rebuild with M 64 (slow here; its place in the order is tested above).
    n, dim = 8000, 64
    set_dir = write_set(tmp_path / "set", isotropic(n, dim))
    opts = BuildOptions(tune_queries=150, flat_max_cost=0, ef_construction=2)
    budget = estimate_memory("hnsw", n, dim) + 1
    version = build_version(set_dir, tmp_path / "store", "auto", budget, target_recall=1.0, options=opts)
    meta = load_version(tmp_path / "store").meta
    assert IndexStore(tmp_path / "store").current_version() == version
    attempts = meta["auto"]["attempts"]
    assert len(attempts) >= 2 and attempts[0]["factory"] == "HNSW32,Flat" and not attempts[0]["met"]
    assert attempts[0]["search"] == {"efSearch": 4096}  # the wider range was tried first
    assert attempts[-1]["met"] and attempts[-1]["factory"] == meta["factory"]
    assert [a["met"] for a in attempts] == [False] * (len(attempts) - 1) + [True]
    assert meta["recall@10"] == 1.0 and meta["recall"]["met"]


def test_nothing_within_the_budget_says_so(tmp_path) -> None:
    n, dim = 1500, 32
    set_dir = write_set(tmp_path / "set", isotropic(n, dim))
    budget = estimate_memory("ivf_pq", n, dim, 8) + 1  # 8-byte PQ codes over 32 structureless dims
    with pytest.raises(RecallNotMet) as caught:
        build_version(set_dir, tmp_path / "store", "auto", budget, 0.99,
                      options=BuildOptions(tune_queries=300, flat_max_cost=0))
    message = str(caught.value)
    assert "--factory auto tried" in message and "PQ8np" in message and "memory budget" in message
    assert IndexStore(tmp_path / "store").current_version() is None
