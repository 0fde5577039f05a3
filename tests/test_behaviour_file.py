"""`fit_behaviour_file`: a small file fits exactly as the whole frame does; a large one is fitted on
every event as codes, its settings chosen on a sample of users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from index.build import build_version
from index.store import IndexStore, load_version
from index.synthetic import write_embedding_set
from recsys.behaviour_store import FitOptions, fit_behaviour, fit_behaviour_file
from recsys.cleaning import clean_events
from recsys.events import load_events
from recsys.interactions import from_events
from tests.test_event_codes import assert_same

N = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bfile")
    rng = np.random.default_rng(0)
    ids = [f"it{i:02d}" for i in range(N)]
    vectors = rng.standard_normal((N, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_embedding_set(root / "emb", ids, vectors)
    build_version(root / "emb", root / "store")
    rows = []
    for u in range(60):
        pool = [i for i in range(N - 1) if i % 3 == u % 3]
        for t, i in enumerate(rng.choice(pool, 6, replace=False)):
            rows.append((f"u{u}", ids[i], 1_700_000_000 + 3600 * (u * 10 + t), "click"))
    rows.append(("u1", "not_in_catalogue", 1_700_000_000, "view"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    events.to_parquet(root / "events.parquet")
    return root


def loaded(store: Path):
    st = IndexStore(store / "store")
    return load_version(st.root, st.current_version())


def test_a_small_file_fits_as_the_whole_frame(store: Path) -> None:
    path = store / "events.parquet"
    whole = fit_behaviour(load_events(path), loaded(store), FitOptions())
    streamed = fit_behaviour_file(path, loaded(store), FitOptions(), batch_rows=50)
    assert streamed.manifest == whole.manifest
    assert (streamed.model.similarity != whole.model.similarity).nnz == 0
    assert_same(streamed.interactions, whole.interactions)


def test_a_large_file_is_fitted_on_every_event_as_codes(store: Path) -> None:
    path = store / "events.parquet"
    options = FitOptions(model="cosine", hybrid_weight=0.5)
    behaviour = fit_behaviour_file(path, loaded(store), options, validation_events=150, batch_rows=50)
    cleaned = clean_events(load_events(path))
    manifest = behaviour.manifest
    assert manifest["counts"]["events"] == len(cleaned) == 361
    assert manifest["counts"]["users"] == 60 and manifest["counts"]["items"] == N + 1
    assert_same(behaviour.interactions, from_events(cleaned, behaviour.interactions.item_ids[:N],
                                                    manifest["recency_half_life_days"] or None))
    assert behaviour.interactions.item_ids[-1] == "not_in_catalogue"
    assert manifest["model"] == "cosine" and manifest["hybrid_weight"] == 0.5
    assert behaviour.model.has_neighbours()[:N - 1].all()
