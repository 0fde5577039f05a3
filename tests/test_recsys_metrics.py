"""Metrics against hand-computed values; splits without leaks; the evaluation loop on a tiny case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.demo.data import DemoConfig, generate
from recsys.evaluation import VisualVectors, evaluate, evaluate_model, make_holdout
from recsys.events import EVENT_COLUMNS, load_events
from recsys.metrics import bootstrap_interval, coverage, mrr_at_k, ndcg_at_k, recall_at_k
from recsys.models import PopularityModel
from recsys.split import split_events


def test_metrics_by_hand() -> None:
    ranked, relevant = ["a", "b", "c", "d"], {"b", "d", "e"}
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    # hit at rank 2 only: (1/log2 3) / (1 + 1/log2 3 + 1/log2 4)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at_k(["x", "y"], {"x"}, 2) == pytest.approx(1.0)
    assert mrr_at_k(ranked, relevant, 3) == pytest.approx(0.5)
    assert mrr_at_k(ranked, {"z"}, 4) == 0.0
    assert coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        recall_at_k(ranked, set(), 3)


def events(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame([(u, i, t, "view", 1.0) for u, i, t in rows], columns=EVENT_COLUMNS)


def test_temporal_split_has_one_global_cutoff() -> None:
    rng = np.random.default_rng(0)
    times = rng.integers(0, 10**6, 500)
    frame = events([(f"u{rng.integers(20)}", f"i{rng.integers(30)}", int(t)) for t in times])
    split = split_events(frame, "temporal", 0.2)
    first_test = frame.merge(split.test, on=["user_id", "item_id"]).timestamp.min()
    assert split.train.timestamp.max() < first_test  # nothing from the future in training
    train_pairs = set(zip(split.train.user_id, split.train.item_id))
    assert not train_pairs & set(zip(split.test.user_id, split.test.item_id))


def test_random_split_holds_out_whole_pairs() -> None:
    frame = events([(f"u{u}", f"i{i}", u * 100 + i) for u in range(10) for i in range(10)] * 2)
    split = split_events(frame, "random", 0.2, seed=3)
    assert 0.1 < len(split.test) / 100 < 0.3
    held = set(zip(split.test.user_id, split.test.item_id))
    assert not held & set(zip(split.train.user_id, split.train.item_id))


def test_evaluation_loop_on_a_hand_checked_case() -> None:
    # popularity: c (3 users) > b (2) > a (1); u1 saw a in training and holds out b.
    train = events([("u1", "a", 1), ("u2", "b", 2), ("u3", "b", 3), ("u2", "c", 4), ("u3", "c", 5),
                    ("u4", "c", 6)])
    from recsys.split import Split

    test = pd.DataFrame({"user_id": ["u1", "u4"], "item_id": ["b", "d"]})
    holdout = make_holdout(Split("random", train, test, 2), ["a", "b", "c", "d"], None)
    overall, cold = evaluate_model(PopularityModel().fit(holdout.train), holdout, k=2)
    # u1 gets [c, b]: b at rank 2. u4 gets [b, a] (c seen): d (cold, no training events) missed.
    assert overall["recall@2"] == pytest.approx(0.5)
    assert overall["mrr@2"] == pytest.approx(0.25)
    assert overall["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert overall["coverage"] == pytest.approx(3 / 4)
    assert cold["users"] == 1 and cold["recall@2"] == 0.0
    lo, hi = overall["recall@2_ci95"]
    assert 0.0 <= lo <= overall["recall@2"] <= hi <= 1.0


def test_evaluation_ranks_only_what_the_service_may_show() -> None:
    from dataclasses import replace

    from recsys.split import Split

    train = events([("u1", "a", 1), ("u2", "b", 2), ("u3", "b", 3), ("u2", "c", 4), ("u3", "c", 5),
                    ("u4", "c", 6), ("u5", "e", 7)])
    test = pd.DataFrame({"user_id": ["u1"], "item_id": ["b"]})
    vectors = VisualVectors(np.array(["a", "b", "c", "d"]), np.eye(4, dtype=np.float32),
                            np.array([True, True, False, True]))  # c is out of stock; e has no picture
    assert list(vectors.showable(np.array(["a", "b", "c", "d", "e"]))) == [True, True, False, True, False]
    holdout = make_holdout(Split("random", train, test, 1), ["a", "b", "c", "d", "e"], None)
    shown = replace(holdout, showable=vectors.showable(holdout.train.item_ids))
    model = PopularityModel().fit(holdout.train)
    assert evaluate_model(model, holdout, k=1)[0]["recall@1"] == 0.0  # u1 gets c, the most popular
    assert evaluate_model(model, shown, k=1)[0]["recall@1"] == 1.0  # as served: c is out, b first


def test_items_made_new_in_validation_have_no_past_users() -> None:
    from recsys.evaluation import first_fans, make_new, rank_users
    from recsys.split import Split

    # b is made new: u1 and u2 had it before the window; u3 meets it in the window.
    train = events([("u1", "b", 0), ("u1", "a", 1), ("u2", "b", 2), ("u2", "c", 3), ("u3", "a", 4),
                    ("u3", "c", 5), ("u4", "c", 90)])
    test = pd.DataFrame({"user_id": ["u3", "u1"], "item_id": ["b", "c"]})
    holdout = make_holdout(Split("temporal", train, test, 2), ["a", "b", "c"], None)
    new = make_new(holdout, np.array([1]))
    assert new.cold[1] and new.train.item_counts()[1] == 0 and new.train.recent[:, 1].nnz == 0
    u1 = list(new.users).index(new.train.user_index()["u1"])
    assert new.seen[new.users[u1], 1] > 0  # u1 had b: it is never shown to u1, so never a miss there
    from recsys.models import VisualModel

    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]], np.float32)  # b looks like a, c not
    model = VisualModel(2).build(new.train.item_ids, np.array(["a", "b", "c"]), vectors)
    assert model.score_histories(new.train.recent[new.users[u1]])[0].argmax() == 1  # b first
    assert rank_users(model, new, k=1)[u1][0] == 2  # but a and b are out: c
    # made new with the demand of its own first days: b's first 2 s on sale saw u1 (t=0), not u2 (t=2)
    fans = first_fans(train, holdout, np.array([1]), window=2.0)
    assert fans == [(new.train.user_index()["u1"], 1)]
    again = make_new(holdout, np.array([1]), fans)
    users = {again.train.user_ids[u]: rel for u, rel in zip(again.users, again.relevant)}
    assert users["u1"] == {1, 2}  # u1 meets b in the window now (and still holds out c)
    assert "u3" not in users  # u3 met b later in its life: no longer held out, and not shown
    index = again.train.user_index()
    assert again.seen[index["u1"], 1] == 0 and again.seen[index["u3"], 1] > 0
    assert len(first_fans(train, holdout, np.array([1]), window=10.0)) == 2


def test_bootstrap_interval_covers_the_mean_and_narrows_with_users() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.random(20), rng.random(2000)
    lo, hi = bootstrap_interval(few)
    assert lo < few.mean() < hi
    lo2, hi2 = bootstrap_interval(many)
    assert lo2 < many.mean() < hi2 and hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)


def demo_shop(tmp_path: Path) -> tuple[pd.DataFrame, VisualVectors]:
    """A small generated shop; item vectors from its hidden attributes (one-hot plus noise), no CNN."""
    data = generate(tmp_path, DemoConfig(n_items=60, n_users=80, days=30, late_days=8, looks=0.5, seed=4))
    attributes = pd.read_csv(data.attributes)
    onehot = pd.get_dummies(attributes[["shape", "colour", "pattern"]]).to_numpy(np.float32)
    vectors = onehot + 0.3 * np.random.default_rng(0).standard_normal(onehot.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return load_events(data.events), VisualVectors(attributes.item_id.to_numpy(str), vectors)


def test_poisoned_test_split_leaves_every_validation_choice_unchanged(tmp_path: Path) -> None:
    events, vectors = demo_shop(tmp_path)
    clean = evaluate(events, vectors, split="temporal", behaviour_names=("cosine", "ease", "als"))
    cutoff = np.quantile(events.timestamp.to_numpy(), 0.8, method="higher")
    later = events.timestamp >= cutoff
    rng = np.random.default_rng(1)
    poisoned = events.copy()  # every test event's user and item replaced at random
    poisoned.loc[later, "item_id"] = rng.choice(vectors.item_ids, int(later.sum()))
    poisoned.loc[later, "user_id"] = rng.permutation(poisoned.loc[later, "user_id"].to_numpy())
    dirty = evaluate(poisoned, vectors, split="temporal", behaviour_names=("cosine", "ease", "als"))
    assert dirty["settings"] == clean["settings"]  # choices and every validation recall
    assert dirty["models"]["hybrid"]["recall@10"] != clean["models"]["hybrid"]["recall@10"]  # test changed
    s = clean["settings"]
    assert s["behaviour_model"] in ("cosine", "ease", "als")
    assert s["recency_half_life_days"] in (0.0, 7.0, 30.0)
    assert s["cold"] in ("none", "visual", "projection", "factors") and 0 <= s["hybrid_weight"] <= 1
    assert len(s["validation"]["behaviour"]) == 7 * 3 and len(s["validation"]["hybrid_weight"]) == 11 * 2
    assert len(s["validation"]["hybrid"]) == 20


def test_second_stage_falls_back_to_the_informative_source_when_pictures_are_noise(tmp_path: Path) -> None:
    """Taste has nothing to do with looks and the vectors are random: whatever serves (blend or the
    LightGBM ranker, chosen on held-out validation users) keeps behaviour's quality."""
    data = generate(tmp_path, DemoConfig(n_items=150, n_users=200, days=30, late_days=8, looks=0.0, seed=5))
    items = pd.read_csv(data.attributes).item_id.to_numpy(str)
    noise = np.random.default_rng(0).standard_normal((len(items), 16)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    report = evaluate(load_events(data.events), VisualVectors(items, noise), split="temporal",
                      behaviour_names=("cosine", "ease"))
    recall = {name: m["recall@10"] for name, m in report["models"].items()}
    best_behaviour = max(recall["behaviour_cosine"], recall["behaviour_ease"])
    assert recall["hybrid"] >= 0.95 * best_behaviour
    assert recall["hybrid"] > 1.5 * recall["visual"]  # the noise source did not drag it down
    stage = report["second_stage"]
    gain = report["settings"]["validation"]["second_stage"]["gain_ci95"]
    assert stage["chosen_on_validation"] == ("ranker" if gain[0] > 0 else "blend")
    chosen = stage["ranker"]["recall@10"] if stage["chosen_on_validation"] == "ranker" else recall["hybrid"]
    assert chosen >= 0.95 * best_behaviour
    assert set(report["models"]) == {"popularity", "behaviour_cosine", "behaviour_ease", "visual", "hybrid"}


def test_validation_ranks_at_most_a_seeded_sample_of_users() -> None:
    """Validation ranks at most VALIDATION_USERS users per setting: a seeded sample, each kept with
    its own held-out items; fewer users are kept whole."""
    from recsys.evaluation import VALIDATION_USERS, Holdout, _at_most

    users = np.arange(100, dtype=np.int64) * 3
    holdout = Holdout(train=None, users=users, relevant=[{int(u)} for u in users],  # type: ignore[arg-type]
                      cold=np.zeros(0, bool))
    sample = _at_most(holdout, 10)
    assert len(sample.users) == 10 and len(set(sample.users)) == 10
    assert all(rel == {int(u)} for u, rel in zip(sample.users, sample.relevant))
    assert np.array_equal(_at_most(holdout, 10).users, sample.users)  # seeded
    assert _at_most(holdout, 100) is holdout and VALIDATION_USERS >= 1000
