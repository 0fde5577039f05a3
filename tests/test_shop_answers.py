"""Shop-grade answers (DESIGN.md "Shop-grade parameters") on a catalogue small enough to answer by
hand: filter, group_by, diversity and `why`, through `recsys.answers`, in every mode, and the
command line's --filter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from index.build import build_version
from index.store import IndexStore, load_version
from index.synthetic import write_embedding_set
from jobs.cli import main
from recsys.answers import Answers, Constraints
from recsys.behaviour_store import FitOptions, fit_behaviour, write_version
from recsys.errors import InputError
from recsys.events import EVENT_COLUMNS, load_events
from recsys.filters import parse_filter

# Items i00..i11 lie on a circle, i at 10*i degrees: the visual neighbours of i00 are i01, i02, ...
# in that order, with cosine cos(10*i degrees).
N = 12
IDS = [f"i{i:02d}" for i in range(N)]
COLOURS = ["red", "blue", "green"]  # i % 3
SOLD_OUT = "i03"


def catalogue() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": IDS, "image": [f"/img/{i}.png" for i in IDS],
        "colour": [COLOURS[i % 3] for i in range(N)], "price": [10.0 * i for i in range(N)],
        "brand": ["a" if i < 6 else "b" for i in range(N)], "product": [f"p{i // 2}" for i in range(N)],
        "in_stock": [i != 3 for i in range(N)]})


def circle() -> np.ndarray:
    angles = np.radians(10.0 * np.arange(N))
    vectors = np.zeros((N, 8), dtype=np.float32)
    vectors[:, 0], vectors[:, 1] = np.cos(angles), np.sin(angles)
    return vectors


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    write_embedding_set(root / "emb", IDS, circle(), catalog=catalogue())
    build_version(root / "emb", root / "store", "Flat")
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", IDS[i], 1_700_000_000 + 60 * (u * 10 + t), "click")
            for u in range(40) for t, i in enumerate(rng.choice(N, 6, replace=False))]
    pd.DataFrame(rows, columns=EVENT_COLUMNS[:4]).to_csv(root / "events.csv", index=False)
    events = load_events(root / "events.csv")
    st = IndexStore(root / "store")
    base = st.current_version()
    write_version(st.root, base, fit_behaviour(events, load_version(st.root, base), FitOptions()), "events")
    return st.root


@pytest.fixture(scope="module")
def answers(store: Path) -> Answers:
    return Answers.load(store, behaviour="required")


def similar(answers: Answers, k: int = 10, mode: str = "visual", **shop) -> list[str]:
    return answers.similar("i00", k, mode, Constraints.of(**shop)).ids()


def test_filter_kinds_by_hand(answers: Answers) -> None:
    # equal; fewer matches (3) than k (5): all of them
    assert similar(answers, 5, filter={"colour": "red"}) == ["i03", "i06", "i09"]
    assert similar(answers, 4, filter={"colour": ["red", "green"]}) == ["i02", "i03", "i05", "i06"]
    assert similar(answers, 10, filter={"price": {"gte": 30, "lt": 70}}) == ["i03", "i04", "i05", "i06"]
    assert similar(answers, 3, filter={"colour": {"ne": "blue"}}) == ["i02", "i03", "i05"]
    assert similar(answers, 10, filter={"brand": "b", "price": {"lte": 80}}) == ["i06", "i07", "i08"]
    assert similar(answers, 10, filter={"in_stock": False}) == ["i03"]
    assert similar(answers, 10, filter={"colour": "purple"}) == []
    # the JSON text and the object are one filter (one cache key)
    assert Constraints.of(filter='{"price": {"lt": 5, "gte": 1}}') == \
        Constraints.of(filter={"price": {"gte": 1, "lt": 5}})
    # scores are the plain cosines
    answer = answers.similar("i00", 2, "visual", Constraints.of(filter={"colour": "red"}))
    assert [s for _, s in answer.rows] == pytest.approx([np.cos(np.radians(30)), np.cos(np.radians(60))])


@pytest.mark.parametrize("mode", ["visual", "behaviour", "hybrid"])
def test_filter_in_every_mode_is_the_unfiltered_ranking_restricted(answers: Answers, mode: str) -> None:
    full = answers.similar("i00", N, mode)
    colour = dict(zip(IDS, [COLOURS[i % 3] for i in range(N)]))
    for wanted, k in [("red", 10), ("green", 2), ("blue", 1)]:
        got = answers.similar("i00", k, mode, Constraints.of(filter={"colour": wanted}))
        expect = [(i, s) for i, s in full.rows if colour[i] == wanted][:k]
        assert got.ids() == [i for i, _ in expect]
        assert [s for _, s in got.rows] == pytest.approx([s for _, s in expect])
        assert all(colour[i] == wanted for i in got.ids())
    if mode != "visual":  # behaviour and hybrid answers hold showable (in stock) items only
        assert SOLD_OUT not in answers.similar("i00", N, mode, Constraints.of(filter={"colour": "red"})).ids()


def test_user_recommendations_take_the_filter(answers: Answers) -> None:
    for user in ["u1", "nobody"]:
        full = answers.recommend(user, N)
        got = answers.recommend(user, 3, Constraints.of(filter={"brand": "b"}))
        assert got.ids() == [i for i in full.ids() if int(i[1:]) >= 6][:3]


def test_bad_filters_name_the_problem(answers: Answers) -> None:
    with pytest.raises(InputError, match="unknown column 'size'"):
        answers.similar("i00", 3, "visual", Constraints.of(filter={"size": 42}))
    with pytest.raises(InputError, match="a range needs a numeric column"):
        answers.similar("i00", 3, "visual", Constraints.of(filter={"colour": {"gt": 1}}))
    with pytest.raises(InputError, match="group_by: unknown column 'shape'"):
        answers.similar("i00", 3, "visual", Constraints.of(group_by="shape"))
    for raw, message in [("{", "not valid JSON"), ("[1]", "a JSON object"),
                         ({"price": {"between": 1}}, "conditions are"),
                         ({"price": {"lt": "x"}}, "finite number"),
                         ({"price": {"lt": 10**400}}, "finite number"),
                         ({"colour": {"ne": "a", "lt": 2}}, "conditions are"),
                         ({"colour": [[1]]}, "not a string"), ({"colour": []}, "any-of list")]:
        with pytest.raises(InputError, match=message):
            parse_filter(raw)
    with pytest.raises(InputError, match="diversity"):
        Constraints.of(diversity=1.5)


@pytest.mark.parametrize("mode", ["visual", "behaviour", "hybrid"])
def test_group_by_keeps_the_best_of_each_value(answers: Answers, mode: str) -> None:
    product = dict(zip(IDS, catalogue()["product"]))
    full = answers.similar("i00", N, mode).ids()
    best: dict[str, str] = {}
    for item in full:
        best.setdefault(product[item], item)
    expect = [i for i in full if best[product[i]] == i]
    assert similar(answers, 3, mode, group_by="product") == expect[:3]
    assert similar(answers, N, mode, group_by="product") == expect
    if mode == "visual":  # by hand: i01 (p0), i02 (p1; i03 dropped), i04 (p2)
        assert expect[:3] == ["i01", "i02", "i04"]
        assert similar(answers, 10, mode, group_by="brand", filter={"price": {"gt": 0}}) == ["i01", "i06"]


def test_diversity_is_maximal_marginal_relevance(answers: Answers) -> None:
    # d = 0.9: after i01, the item least like it wins (0.1 * cos(110) + 0.9 * cos(100) is the best)
    assert similar(answers, 2, diversity=0.9) == ["i01", "i11"]
    assert similar(answers, 4, diversity=0.0) == ["i01", "i02", "i03", "i04"]
    vectors = circle()

    def value(j: int, picked: list[int], d: float) -> float:
        nearest = max((float(vectors[j] @ vectors[p]) for p in picked), default=0.0)
        return (1 - d) * float(vectors[j] @ vectors[0]) - d * nearest

    for d in (0.3, 0.7):
        picked: list[int] = []
        candidates = list(range(1, N))
        for _ in range(4):
            pick = max(candidates, key=lambda j, picked=picked, d=d: value(j, picked, d))
            picked.append(pick)
            candidates.remove(pick)
        assert similar(answers, 4, diversity=d) == [IDS[p] for p in picked]


def test_why_splits_the_score_by_source(answers: Answers) -> None:
    visual = answers.similar("i00", 3, "visual")
    assert [visual.why(n) for n in range(3)] == [{"sources": {"visual": round(s, 6)}} for _, s in visual.rows]
    behaviour = answers.similar("i00", 3, "behaviour")
    assert behaviour.why(0) == {"sources": {"behaviour": round(behaviour.rows[0][1], 6)}}
    hybrid = answers.similar("i00", N, "hybrid")
    # the behaviour part is the behaviour source's own score for the pair, scaled once per query
    raw = answers.hybrid.behaviour.similarity.getrow(answers.model.item_position("i00")).toarray().ravel()
    ratios = []
    for n, (item, score) in enumerate(hybrid.rows):
        parts = hybrid.sources[n]
        assert sum(parts.values()) == pytest.approx(score, abs=1e-6)
        assert set(parts) <= {"visual", "behaviour"}
        own = raw[answers.model.item_position(item)]
        if own > 0:
            ratios.append(parts.get("behaviour", 0.0) / own)
        else:
            assert parts.get("behaviour", 0.0) == pytest.approx(0.0, abs=1e-6)
    assert ratios and max(ratios) == pytest.approx(min(ratios), rel=1e-4)
    personal = answers.recommend("u1", 3)
    for n, (_, score) in enumerate(personal.rows):
        assert sum(personal.sources[n].values()) == pytest.approx(score, abs=1e-6)
    assert answers.recommend("nobody", 1).why(0)["sources"].keys() == {"popularity"}


def test_vector_queries_take_the_shop_parameters(answers: Answers) -> None:
    q = circle()[:1]
    got = answers.similar_to_vectors(q, 3, Constraints.of(filter={"colour": "green"}))[0]
    assert got.ids() == ["i02", "i05", "i08"]
    got = answers.similar_to_vectors(q, 3, Constraints.of(group_by="product"))[0]
    assert got.ids() == ["i00", "i02", "i04"]


def test_cli_filter_group_by_and_bad_filters(store: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["similar", "--store", str(store), "i00", "-k", "5", "--json",
                 "--filter", '{"colour": "red"}']) == 0
    body = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in body["results"]] == ["i03", "i06", "i09"]
    assert body["results"][0]["why"] == {"sources": {"visual": round(float(np.cos(np.radians(30))), 6)}}
    assert main(["similar", "--store", str(store), "i00", "-k", "3", "--json", "--group-by", "product"]) == 0
    assert [r["item_id"] for r in json.loads(capsys.readouterr().out)["results"]] == ["i01", "i02", "i04"]
    assert main(["recommend", "--store", str(store), "u1", "-k", "2", "--json",
                 "--filter", '{"brand": "b"}']) == 0
    assert all(r["brand"] == "b" for r in json.loads(capsys.readouterr().out)["results"])
    assert main(["similar", "--store", str(store), "i00", "--filter", '{"size": 1}']) == 2
    assert "unknown column 'size'" in capsys.readouterr().err
    assert main(["recommend", "--store", str(store), "u1", "--filter", "{nope"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_similar_batch_answers_like_one_at_a_time(store: Path) -> None:
    answers = Answers.load(store, behaviour="none")
    answers.index.neighbours = None  # no stored lists: one FAISS search for the batch
    for constraints in [Constraints(), Constraints.of(filter={"colour": ["red", "blue"]}),
                        Constraints.of(filter={"colour": "green"}, in_stock=True)]:
        batch = answers.similar_batch(IDS, 4, "visual", constraints)
        for item_id, answer in zip(IDS, batch):
            one = answers.similar(item_id, 4, "visual", constraints)
            assert answer.ids() == one.ids() and item_id not in answer.ids()
            assert [s for _, s in answer.rows] == pytest.approx([s for _, s in one.rows], abs=1e-3)


def test_export_writes_every_items_neighbours_and_users(store: Path, answers: Answers, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "export"
    assert main(["export", "--store", str(store), "--out", str(out), "-k", "3", "--mode", "visual",
                 "--batch-size", "5"]) == 0
    similar_items = pd.read_parquet(out / "similar_items.parquet")
    assert list(similar_items.columns) == ["item_id", "rank", "neighbour_id", "score"]
    assert len(similar_items) == 3 * N
    first = similar_items[similar_items["item_id"] == "i00"]
    assert first["neighbour_id"].tolist() == ["i01", "i02", "i03"] and first["rank"].tolist() == [1, 2, 3]
    assert first["score"].tolist() == pytest.approx([np.cos(np.radians(a)) for a in (10, 20, 30)], abs=1e-6)
    assert main(["export", "--store", str(store), "--out", str(out), "-k", "2", "--users",
                 "--filter", '{"colour": "red"}']) == 0
    similar_items = pd.read_parquet(out / "similar_items.parquet")
    for item_id, group in similar_items.groupby("item_id"):
        assert group["neighbour_id"].tolist() == answers.similar(
            item_id, 2, "hybrid", Constraints.of(filter={"colour": "red"})).ids()
    users = pd.read_parquet(out / "user_recommendations.parquet")
    assert list(users.columns) == ["user_id", "rank", "item_id", "score"]
    red = Constraints.of(filter={"colour": "red"})
    # a user who has seen every red item in stock gets none (and has no rows)
    assert set(users["user_id"]) == {f"u{u}" for u in range(40) if answers.recommend(f"u{u}", 2, red).rows}
    u1 = users[users["user_id"] == "u1"]["item_id"].tolist()
    assert u1 == answers.recommend("u1", 2, Constraints.of(filter={"colour": "red"})).ids()
    assert sorted(p.name for p in out.iterdir()) == ["similar_items.parquet", "user_recommendations.parquet"]
    capsys.readouterr()
    assert main(["export", "--store", str(store), "--out", str(out), "--filter", '{"size": 1}']) == 2
    assert "unknown column 'size'" in capsys.readouterr().err


def test_sessions_by_hand(answers: Answers) -> None:
    from recsys.errors import UnknownItem

    # i00 and i02 average to 10 degrees: i01, then i03 (20 degrees off), i04 (30)
    answer = answers.session(["i00", "i02", "nope"], [], 3, "visual")
    assert answer.ids() == ["i01", "i03", "i04"]
    assert [e["because"] for e in answer.extras] == [["i00", "i02"], ["i02", "i00"], ["i02", "i00"]]
    # i05 minus half of i00 points at 79.4 degrees: i08, i07 (9.4 off), i09 (10.6 off)
    assert answers.session(["i05"], ["i00"], 3, "visual").ids() == ["i08", "i07", "i09"]
    assert set(answers.session(["i05"], [], 2, "visual").ids()) == {"i04", "i06"}  # a tie
    assert answers.session(["i05"], [], 2, "visual", Constraints.of(filter={"colour": "red"})).ids() == \
        ["i06", "i03"]
    with pytest.raises(UnknownItem):
        answers.session(["nope"], ["i01"], 3, "visual")
    for mode in ("behaviour", "hybrid"):
        got = answers.session(["i01", "i02"], ["i07"], N, mode, Constraints.of(filter={"brand": "a"}))
        assert got.mode == mode and got.ids()
        assert not {"i01", "i02", "i07"} & set(got.ids()) and all(int(i[1:]) < 6 for i in got.ids())
        assert all(set(e["because"]) <= {"i01", "i02"} for e in got.extras)
        scores = [s for _, s in got.rows]
        assert scores == sorted(scores, reverse=True)
        if mode == "hybrid":
            for n, (_, score) in enumerate(got.rows):
                assert sum(got.sources[n].values()) == pytest.approx(score, abs=1e-6)


RULES = """
[[boost]]
name = "brand b"
filter = {brand = "b"}
factor = 2.0

[[bury]]
filter = {colour = "green"}

[[block]]
items = ["i01"]
"""


def test_rules_round_trip_and_move_answers_by_hand(store: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    before = IndexStore(copy).current_version()
    (tmp_path / "rules.toml").write_text(RULES)
    assert main(["rules", "set", "--store", str(copy), str(tmp_path / "rules.toml")]) == 0
    version = IndexStore(copy).current_version()
    assert version != before and "3 rules, published" in capsys.readouterr().out
    assert main(["rules", "show", "--store", str(copy)]) == 0
    assert 'name = "brand b"' in capsys.readouterr().out
    # the new version links the base's files and keeps its behaviour data
    ruled = Answers.load(copy, behaviour="required")
    assert ruled.version == version and len(ruled.rules.rules) == 3
    # by hand: i01 blocked; brand b (i06..) doubled: i06 1.0, i03 .866, i04 .766, i07 .684, i09 0,
    # i10 -.087; green buried after everything: i02 .940, i05 .643
    answer = ruled.similar("i00", 8, "visual")
    assert answer.ids() == ["i06", "i03", "i04", "i07", "i09", "i10", "i02", "i05"]
    assert answer.rows[0][1] == pytest.approx(1.0, abs=1e-5)
    assert answer.why(0) == {"sources": {"visual": 1.0}, "rule": "brand b"}
    assert "rule" not in answer.why(1) and answer.why(6)["rule"] == "bury 1"
    assert ruled.stored_similar("i00", 5, "visual") is None  # the fast path leaves rules to the route
    for mode in ("behaviour", "hybrid"):
        got = ruled.similar("i00", N, mode)
        assert "i01" not in got.ids()
        buried = [int(i[1:]) % 3 == 2 for i in got.ids()]
        assert buried == sorted(buried)  # green ones last
        for n, (_item_id, score) in enumerate(got.rows):
            assert sum(got.why(n)["sources"].values()) == pytest.approx(score, abs=1e-5)
    assert "i01" not in ruled.recommend("u1", N).ids() and "i01" not in ruled.session(["i00"], [], N).ids()
    assert main(["similar", "--store", str(copy), "i00", "-k", "2", "--json"]) == 0
    assert [r["item_id"] for r in json.loads(capsys.readouterr().out)["results"]] == ["i06", "i03"]


def test_block_only_rules_keep_the_stored_lists_and_bad_rules_name_the_field(store: Path,
                                                                            tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (tmp_path / "block.toml").write_text('[[block]]\nfilter = {colour = "red"}\n')
    assert main(["rules", "set", "--store", str(copy), str(tmp_path / "block.toml")]) == 0
    ruled = Answers.load(copy, behaviour="none")
    stored = ruled.stored_similar("i00", 3, "visual")
    assert stored is not None and stored.ids() == ["i01", "i02", "i04"]
    for text, words in [('[[boost]]\nfilter = {brand = "a"}\n', "factor"),
                        ('[[boost]]\nfilter = {size = 1}\nfactor = 2\n', "unknown column 'size'"),
                        ("[[block]]\nname = 'x'\n", "give a filter or items"),
                        ("[[lift]]\nitems = ['i01']\n", "unknown section 'lift'"),
                        ("[[bury]]\nitems = ['i01']\nfactor = 2\n", "unknown field 'factor'"),
                        ("[[bury\n", "not valid TOML")]:
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(InputError, match=words):
            from recsys.rules import write_rules_version

            write_rules_version(copy, tmp_path / "bad.toml")
    assert main(["rules", "set", "--store", str(copy), str(tmp_path / "bad.toml")]) == 2


def test_user_answers_say_because(answers: Answers) -> None:
    interactions = answers.behaviour.interactions
    user = interactions.user_index()["u1"]
    history = {str(answers.model.item_ids[p]) for p in interactions.recent[user].indices}
    got = answers.recommend("u1", 5)
    assert all(e["source"] == "personal" and set(e["because"]) <= history and len(e["because"]) <= 3
               for e in got.extras)
    assert any(e["because"] for e in got.extras)
    # the first reason is the history item whose own score for the result is highest
    for (item_id, _), extra in zip(got.rows, got.extras):
        if extra["because"]:
            own = {h: answers.hybrid.score_histories(answers.model.history_row({h: 1.0}))[0][
                answers.model.item_position(item_id)] for h in history}
            assert own[extra["because"][0]] == pytest.approx(max(own.values()))
    assert answers.recommend("nobody", 2).extras[0]["because"] == []
