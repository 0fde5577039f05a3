"""The Recommender over a real index store: new versions from `behaviour fit`, hybrid cold-start
fallback, category / in-stock / exclude filters, personal and popular recommendations, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from index.build import build_version
from index.store import IndexStore, load_version, read_meta, verify_checksums
from index.synthetic import write_embedding_set
from jobs.cli import main
from recsys.behaviour_store import FitOptions, fit_behaviour, write_version
from recsys.errors import InputError, UnknownItem
from recsys.events import EVENT_COLUMNS
from recsys.service import Recommender

N = 40  # items it0..it39: even ones are "red" (category), odd ones "blue"; it39 is cold, it38 sold out
COLD, SOLD_OUT = "it39", "it38"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recsvc")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 32))
    ids = [f"it{i:02d}" for i in range(N)]
    vectors = np.stack([centres[i % 2] + 0.5 * rng.standard_normal(32) for i in range(N)]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = pd.DataFrame({"item_id": ids, "image": [f"/img/{i}.png" for i in ids],
                            "category": ["red" if i % 2 == 0 else "blue" for i in range(N)],
                            "in_stock": [i != 38 for i in range(N)]})
    write_embedding_set(root / "emb", ids, vectors, catalog=catalog)
    build_version(root / "emb", root / "store")
    rows = []
    for u in range(30):  # users stick to one colour; nobody touches the cold item
        pool = [i for i in range(N - 1) if i % 2 == u % 2]
        for t, i in enumerate(rng.choice(pool, 6, replace=False)):
            rows.append((f"u{u}", ids[i], 1_700_000_000 + 3600 * (u * 10 + t), "click"))
    pd.DataFrame(rows, columns=EVENT_COLUMNS[:4]).to_csv(root / "events.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fitted(store: Path) -> tuple[Path, str, str]:
    from recsys.events import load_events

    st = IndexStore(store / "store")
    base = st.current_version()
    behaviour = fit_behaviour(load_events(store / "events.csv"), load_version(st.root, base), FitOptions())
    version = write_version(st.root, base, behaviour, "events.csv")
    return st.root, base, version


def test_fit_writes_a_new_published_version(fitted: tuple[Path, str, str]) -> None:
    root, base, version = fitted
    st = IndexStore(root)
    assert version != base and st.current_version() == version
    assert not (st.version_dir(base) / "behaviour").exists()  # the base version is untouched
    meta = read_meta(st.version_dir(version))
    verify_checksums(st.version_dir(version), meta)
    assert meta["base_version"] == base and "behaviour/model.npz" in meta["checksums"]
    assert meta["behaviour"]["model"] in ("cooc", "cosine", "bm25", "ease", "als")
    assert 0 <= meta["behaviour"]["hybrid_weight"] <= 1


def test_modes_and_cold_start_fallback(fitted: tuple[Path, str, str]) -> None:
    rec = Recommender.load(fitted[0])
    assert rec.version == fitted[2]
    visual = rec.similar(COLD, k=5, mode="visual")
    hybrid = rec.similar(COLD, k=5, mode="hybrid")
    assert [r["item_id"] for r in hybrid] == [r["item_id"] for r in visual]  # no behaviour: visual
    assert rec.similar(COLD, k=5, mode="behaviour") == []
    warm = rec.similar("it00", k=5, mode="behaviour")
    assert len(warm) == 5 and all(r["category"] == "red" for r in warm)
    assert {"item_id", "score", "category", "in_stock"} <= set(warm[0])
    with pytest.raises(UnknownItem):
        rec.similar("nope", k=3)
    with pytest.raises(InputError):
        rec.similar("it00", k=3, mode="magic")


@pytest.mark.parametrize("mode", ["hybrid", "visual", "behaviour"])
def test_filters(fitted: tuple[Path, str, str], mode: str) -> None:
    rec = Recommender.load(fitted[0])
    rows = rec.similar("it02", k=8, mode=mode, category="red", exclude=("it00", "it04"))
    ids = [r["item_id"] for r in rows]
    assert len(rows) == 8 and all(r["category"] == "red" for r in rows)
    assert not {"it00", "it04", "it02", SOLD_OUT} & set(ids)
    if mode != "behaviour":  # no user mixes colours, so behaviour knows no blue neighbours of it02
        assert {r["category"] for r in rec.similar("it02", k=3, mode=mode, category="blue")} == {"blue"}
    everything = rec.similar("it00", k=N, mode=mode)
    assert SOLD_OUT not in {r["item_id"] for r in everything}


def test_user_recommendations(fitted: tuple[Path, str, str], store: Path) -> None:
    rec = Recommender.load(fitted[0])
    events = pd.read_csv(store / "events.csv")
    seen = set(events[events.user_id == "u4"].item_id)
    rows = rec.recommend("u4", k=5)
    assert len(rows) == 5 and all(r["source"] == "personal" for r in rows)
    assert not seen & {r["item_id"] for r in rows}
    assert sum(r["category"] == "red" for r in rows) >= 4  # u4 likes red (even) items
    popular = rec.recommend("stranger", k=3)
    assert [r["source"] for r in popular] == ["popular"] * 3
    assert rec.recommend("u4", k=3, category="blue")[0]["category"] == "blue"


def test_cli_fit_recommend_evaluate(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "store"
    shutil.copytree(store / "store", root)
    assert main(["behaviour", "fit", "--events", str(store / "events.csv"), "--store", str(root),
                 "--model", "cooc", "--hybrid-weight", "0.5"]) == 0
    version = capsys.readouterr().out.strip().splitlines()[-1]
    assert IndexStore(root).current_version() == version
    assert main(["recommend", "--store", str(root), "u1", "-k", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["version"] == version and len(body["results"]) == 3
    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--events", str(store / "events.csv"), "--store", str(root),
                 "--split", "temporal", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {"popularity", "behaviour_cosine", "behaviour_bm25", "behaviour_ease", "behaviour_als", "visual",
            "hybrid"} == set(report["models"])
    assert set(report["cold_start"]) == set(report["models"])
    assert "recall@10" in report["models"]["hybrid"] and report["split"] == "temporal"
    assert report["settings"]["behaviour_model"] in ("cosine", "bm25", "ease", "als")
    assert "behaviour_bm25" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp,event\nu,a,1,view\nu,b,2,zap\n")
    assert main(["evaluate", "--events", str(bad)]) == 2
    assert "row 2, column 'event'" in capsys.readouterr().err


def test_cli_similar_in_each_mode(fitted: tuple[Path, str, str], capsys: pytest.CaptureFixture) -> None:
    root, _, version = fitted
    answers = {}
    for mode in ("visual", "behaviour", "hybrid"):
        assert main(["similar", "--store", str(root), "it00", "-k", "5", "--mode", mode, "--json"]) == 0
        answers[mode] = json.loads(capsys.readouterr().out)
        assert answers[mode]["mode"] == mode and answers[mode]["version"] == version
    assert all(len(answer["results"]) == 5 for answer in answers.values())
    # Users stick to one colour: behaviour neighbours of a red item are red items.
    assert {r["category"] for r in answers["behaviour"]["results"]} == {"red"}
    assert "it00" not in [r["item_id"] for r in answers["hybrid"]["results"]]
    assert main(["similar", "--store", str(root), COLD, "-k", "5", "--mode", "hybrid", "--json"]) == 0
    cold = json.loads(capsys.readouterr().out)["results"]  # no behaviour: visual neighbours
    assert len(cold) == 5 and COLD not in [r["item_id"] for r in cold]
