"""Answers over a real index store: new versions from `behaviour fit`, hybrid cold-start
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
from jobs.cli.query import result_rows
from recsys.answers import K_MAX, Answers, Constraints
from recsys.behaviour_store import FitOptions, fit_behaviour, write_version
from recsys.errors import InputError, UnknownItem
from recsys.events import EVENT_COLUMNS

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


def _colour(item_id: str) -> str:
    return "red" if int(item_id[2:]) % 2 == 0 else "blue"


def test_modes_and_cold_start_fallback(fitted: tuple[Path, str, str]) -> None:
    answers = Answers.load(fitted[0])
    assert answers.version == fitted[2] and answers.behaviour is not None
    visual = answers.similar(COLD, 5, "visual", Constraints(in_stock=True))
    hybrid = answers.similar(COLD, 5, "hybrid")
    assert hybrid.ids() == visual.ids() and hybrid.mode == "hybrid"  # no behaviour: visual
    assert answers.similar(COLD, 5, "behaviour").rows == []
    warm = answers.similar("it00", 5, "behaviour")
    assert len(warm.rows) == 5 and {_colour(i) for i in warm.ids()} == {"red"}
    scores = [score for _, score in warm.rows]
    assert scores == sorted(scores, reverse=True)
    rows = result_rows(warm, answers.index)  # the command line's edge joins the metadata
    assert [r["item_id"] for r in rows] == warm.ids()
    assert {"item_id", "score", "category", "in_stock"} <= set(rows[0])
    with pytest.raises(UnknownItem):
        answers.similar("nope", 3)
    with pytest.raises(InputError):
        answers.similar("it00", 3, "magic")
    with pytest.raises(InputError):
        answers.similar("it00", K_MAX + 1, "visual")


@pytest.mark.parametrize("mode", ["hybrid", "visual", "behaviour"])
def test_filters(fitted: tuple[Path, str, str], mode: str) -> None:
    answers = Answers.load(fitted[0])
    constraints = Constraints.of(["it04", "it00", "it04"], "red", in_stock=True)
    assert constraints.exclude == ("it00", "it04")
    ids = answers.similar("it02", 8, mode, constraints).ids()
    assert len(ids) == 8 and {_colour(i) for i in ids} == {"red"}
    assert not {"it00", "it04", "it02", SOLD_OUT} & set(ids)
    if mode != "behaviour":  # no user mixes colours, so behaviour knows no blue neighbours of it02
        blue = answers.similar("it02", 3, mode, Constraints(category="blue")).ids()
        assert {_colour(i) for i in blue} == {"blue"}
    everything = answers.similar("it00", N, mode).ids()
    # visual answers are pure image similarity; behaviour and hybrid ones hold items in stock only
    assert (SOLD_OUT in everything) == (mode == "visual")
    assert SOLD_OUT not in answers.similar("it00", N, mode, Constraints(in_stock=True)).ids()


def test_stored_lists_answer_like_a_search(fitted: tuple[Path, str, str]) -> None:
    answers = Answers.load(fitted[0])
    stored = answers.stored_similar("it05", 7, "visual")
    assert stored is not None and stored.rows == answers.similar("it05", 7, "visual").rows
    assert answers.stored_similar("it05", 7, "hybrid") is None  # blended: not a lookup
    exact = np.asarray(answers.index.vectors) @ answers.index.vector("it05")
    best = np.sort(np.delete(exact, answers.row_of["it05"]))[::-1][:7]
    np.testing.assert_allclose([score for _, score in stored.rows], best, atol=1e-3)  # codes are compressed


def test_user_recommendations(fitted: tuple[Path, str, str], store: Path) -> None:
    answers = Answers.load(fitted[0])
    events = pd.read_csv(store / "events.csv")
    seen = set(events[events.user_id == "u4"].item_id)
    mine = answers.recommend("u4", 5)
    assert len(mine.rows) == 5 and [e["source"] for e in mine.extras] == ["personal"] * 5
    assert not seen & set(mine.ids())
    assert sum(_colour(i) == "red" for i in mine.ids()) >= 4  # u4 likes red (even) items
    popular = answers.recommend("stranger", 3)
    assert [e["source"] for e in popular.extras] == ["popular"] * 3
    assert _colour(answers.recommend("u4", 3, Constraints(category="blue")).ids()[0]) == "blue"
    assert SOLD_OUT not in answers.recommend("stranger", N).ids()


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
