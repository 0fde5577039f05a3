"""The visible-taste ceiling of a generated shop: how far any blend of behaviour with what the
pictures show could go, if it knew exactly what they show.

The demo generator records each shopper's tastes (`shoppers.csv`) and each item's drawn attributes
(`attributes.csv`); the recommender never reads them. Here they give every (user, item) pair its
true visible match (shape 1, colour 1, pattern 0.5: the visible part of taste, jobs/demo/data.py).
That match stands in for a perfect visual model: blended with the chosen behaviour model's scores
(each z-scored per user, weight 0 to 1 by 0.1) and ordering the new items that interleave from a
warm rank (hybrid.py's cold entry), every combination is scored on the TEST split and the best kept.
Chosen on the test itself, it is an upper bound for such blends, not a result; no served setting
comes from it. Where it stays under a target, no picture model can reach that target this way.

`estimated`: the same, but each shopper's visible taste estimated from their training history
alone while every item's drawn attributes are known exactly (per attribute, the log-lift of each
value in the history over the whole event log, both counted in event weights, Laplace-smoothed):
what a perfect picture model could give a hybrid that must still learn each shopper's taste from
what they did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation import WEIGHT_GRID, Holdout, score_rankings
from recsys.models import make_behaviour_model
from recsys.models.base import zscores
from recsys.models.hybrid import interleave

ENTRIES = (None, 9, 7, 5, 3)
K = 10


def visible_match(shoppers: Path, attributes: Path, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """(users, items): each pair's true visible match; 0 for items without drawn attributes."""
    tastes = pd.read_csv(shoppers).set_index("user_id").reindex(user_ids)
    items = pd.read_csv(attributes).set_index("item_id").reindex(item_ids)
    match = np.zeros((len(user_ids), len(item_ids)), np.float32)
    for column, weight in (("shape", 1.0), ("colour", 1.0), ("pattern", 0.5)):
        match += weight * (tastes[column].to_numpy()[:, None] == items[column].to_numpy()[None, :])
    return match


def estimated_match(attributes: Path, holdout: Holdout) -> np.ndarray:
    """(evaluated users, items): the visible match with each user's taste estimated from history."""
    train = holdout.train
    items = pd.read_csv(attributes).set_index("item_id").reindex(train.item_ids)
    had = sp.csr_matrix(train.matrix)  # event weights: clicks and purchases say more about taste
    match = np.zeros((len(holdout.users), len(train.item_ids)), np.float64)
    for column in ("shape", "colour", "pattern"):
        onehot = pd.get_dummies(items[column]).to_numpy(np.float64)  # (items, values)
        overall = np.asarray(had.sum(axis=0)).ravel() @ onehot
        mine = np.asarray(had[holdout.users] @ onehot)
        lift = (mine + 1) / (mine.sum(axis=1, keepdims=True) + onehot.shape[1]) / (overall / overall.sum())
        match += np.log(lift) @ onehot.T
    return match.astype(np.float32)


def ceilings(holdout: Holdout, settings: dict, shoppers: Path, attributes: Path) -> dict:
    """{"known": the true visible taste's ceiling, "estimated": the history-estimated one}."""
    behaviour = make_behaviour_model(settings["behaviour_model"], **settings["behaviour_params"])
    b = zscores(behaviour.fit(holdout.train).score_histories(holdout.train.recent[holdout.users]))
    train = holdout.train
    true = visible_match(shoppers, attributes, train.user_ids[holdout.users], train.item_ids)
    estimated = estimated_match(attributes, holdout)
    return {"known": ceiling(holdout, b, zscores(true)), "estimated": ceiling(holdout, b, zscores(estimated))}


def ceiling(holdout: Holdout, b: np.ndarray, seen: np.ndarray) -> dict:
    """The best Recall@K over weights and cold entries of `b` (behaviour, z-scored) blended with
    `seen` (a visible match, z-scored), on `holdout` (the test split, ranked as the service may show)."""
    train = holdout.train
    hidden = train.matrix[holdout.users].toarray() > 0
    if holdout.showable is not None:
        hidden |= ~holdout.showable[None, :]
    best = {"recall@10": -1.0}
    for w in WEIGHT_GRID:
        blend = w * b + (1 - w) * seen
        for entry in ENTRIES:
            scores = blend.copy()
            if entry is not None:  # new items ordered by their true visible match, interleaved
                scores[:, holdout.cold] = seen[:, holdout.cold]
                for row in range(len(scores)):
                    scores[row] = interleave(scores[row], holdout.cold, entry, np.flatnonzero(hidden[row]))
            scores[hidden] = -np.inf
            top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
            result = score_rankings(top, holdout.relevant, K, len(train.item_ids))
            if result["recall@10"] > best["recall@10"]:
                best = {**result, "weight": w, "cold_from": entry}
    return best
