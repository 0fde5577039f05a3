"""Offline evaluation: popularity, behaviour models, visual and hybrid side by side, and the
choice of every setting that changes results on a validation window.

Full-catalogue ranking (no sampled negatives): every user's scores cover the whole item space
(events and catalogue), the user's training items are removed, and the top K is compared with
the held-out items. The cold-start slice keeps only held-out items that have no training events.
Every Recall@K carries a bootstrap 95% interval over users.

Validation (`choose_settings`): 20% of the TRAINING events is held out for validation, the test
split is never read: the last 20% by time (a temporal window, as serving predicts the future) or,
when the test split itself is random, a random 20% of the training pairs (to measure what the test
measures). On it are chosen, in two stages, (1) each
behaviour model's settings (BEHAVIOUR_GRID) and the recency half-life of the histories (including
off), and the best behaviour model; (2) the hybrid's blend weight (on the window as it is), then
on the window with items made new (below) its cold-start handling (none, donors by image, donors by
projection, at several weights) and where cold items enter a list (hybrid.py, `cold_from`; taken
only when it wins beyond doubt), then the LightGBM second stage.

Stage 2 needs new items in the window, as the test has: a window carved by time holds almost none
(in a shop most items were on sale long before it), so as many items as the catalogue has without
events are made new (`make_new`): the models and histories lose their events, nobody who had them is
shown them (a new item has no past users), and what is held out for them is the demand of their own
first days on sale (`first_fans`), not the leftovers of a long life: a new item's fans are all still to
come, an old item's have mostly had it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.cleaning import CleaningConfig, clean_events
from recsys.interactions import Interactions, from_events
from recsys.metrics import bootstrap_interval, coverage, mrr_at_k, ndcg_at_k, recall_at_k
from recsys.models import (
    BEHAVIOUR_GRID,
    DEFAULT_BEHAVIOUR_MODELS,
    TASTES,
    HybridModel,
    ItemModel,
    PopularityModel,
    VisualModel,
    make_behaviour_model,
    usable_behaviour_models,
)
from recsys.models.projection import fit_cold_factors, projected_donors
from recsys.models.ranker import RankerModel, item_age_days
from recsys.split import Split, split_events

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RECENCY_GRID = (0.0, 7.0, 30.0)  # history half-life in days; 0: off
# cold handling: (where donors come from, weight of what they lend, how many lend)
COLD_GRID = (("none", 1.0, 1),) + tuple((mode, c, n) for mode in ("visual", "projection")
                                        for c in (0.5, 1.0, 2.0, 4.0) for n in (3, 20)) \
    + tuple(("factors", c, 20) for c in (0.5, 1.0, 2.0))
# where cold items enter a list (hybrid.py, `cold_from`): None never, else from that warm rank on;
# tried with each way of ordering the cold items among themselves
COLD_FROM_GRID = (None, 9, 7, 5, 3)  # in a list of 10: 0, 1, 2, 3, 4 cold items
# (ordering by "none" is not tried: at blend weight 1 it orders new items by nothing at all)
COLD_ORDER_GRID = (("visual", 3), ("visual", 20), ("projection", 3), ("projection", 20), ("factors", 20))
VALIDATION_FRAC = 0.2
VALIDATION_USERS = 5_000  # users each setting is ranked for on validation (a seeded sample beyond)


@dataclass
class Settings:
    """Everything validation chose (or the caller fixed), as recorded in reports and behaviour.json."""

    behaviour_model: str
    behaviour_params: dict[str, Any]
    recency_half_life_days: float  # 0: off
    hybrid_weight: float | None = None
    cold: str = "visual"
    cold_weight: float = 1.0
    donors: int = 20
    cold_from: int | None = None  # warm rank from which cold items interleave (None: never)
    taste: str = "cosine"  # the hybrid's visual part for users (hybrid.py, TASTES)
    second_stage: str = "blend"  # blend: the calibrated blend serves; ranker: the learned second stage
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its best params
    validation: dict[str, Any] = field(default_factory=dict)  # recall per setting tried
    ranker: Any = None  # the second stage's booster, trained on the validation window

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(replace(self, ranker=None)).items() if key != "ranker"}


@dataclass
class VisualVectors:
    item_ids: np.ndarray  # (n,) str
    vectors: np.ndarray  # (n, dim) float32, unit length
    in_stock: np.ndarray | None = None  # (n,) bool, from the catalogue's in_stock column (None: all)

    def showable(self, item_space: np.ndarray) -> np.ndarray:
        """Per item of `item_space`: may the service show it? Catalogue items in stock, as
        recsys.answers recommends (items known only from events are never shown)."""
        shown = self.item_ids if self.in_stock is None else self.item_ids[self.in_stock]
        return pd.Index(item_space).isin(shown)  # hashed: np.isin compares object ids pair by pair

    @classmethod
    def from_store(cls, store: str | Path, version: str | None = None) -> VisualVectors:
        """The item vectors of a store version (CURRENT by default)."""
        from index.store import load_version

        return cls.from_loaded(load_version(store, version))

    @classmethod
    def from_loaded(cls, loaded: LoadedIndex) -> VisualVectors:
        """The item vectors of a loaded version, with its catalogue's stock."""
        items = loaded.items
        item_ids = items["item_id"].astype(str).to_numpy()
        in_stock = items["in_stock"].fillna(False).astype(bool).to_numpy() if "in_stock" in items else None
        return cls(item_ids, np.asarray(loaded.vectors, dtype=np.float32), in_stock)


@dataclass
class Holdout:
    """A split turned into matrices over one item space."""

    train: Interactions
    users: np.ndarray  # positions (into train.user_ids) of the evaluated users
    relevant: list[set[int]]  # per evaluated user: held-out item positions
    cold: np.ndarray  # (n_items,) bool: no training events
    seen: sp.csr_matrix | None = None  # what each user may not be shown (None: train.matrix)
    showable: np.ndarray | None = None  # (n_items,) bool: what the service may show (None: all)


def make_holdout(split: Split, item_space: Sequence[str],
                 recency_half_life_days: float | None = 0.0) -> Holdout:
    train = from_events(split.train, np.asarray(item_space, dtype=str), recency_half_life_days or None)
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


def served_holdout(split: Split, item_space: Sequence[str], recency_half_life_days: float | None,
                   vectors: VisualVectors | None) -> Holdout:
    """The holdout ranked as the service answers: with vectors, catalogue items in stock only."""
    holdout = make_holdout(split, item_space, recency_half_life_days)
    if vectors is None:
        return holdout
    return replace(holdout, showable=vectors.showable(np.asarray(item_space, dtype=str)))


def with_recency(holdout: Holdout, events: pd.DataFrame, half_life_days: float) -> Holdout:
    """The same holdout with the histories re-weighted by another recency half-life (0: off)."""
    again = from_events(events, holdout.train.item_ids, half_life_days or None)
    train = Interactions(again.user_ids, again.item_ids, again.matrix, again.recent, again.trending)
    return replace(holdout, train=train)


def rank_users(model: ItemModel, holdout: Holdout, k: int, batch: int = 512) -> np.ndarray:
    """(n_users, k) item positions: each evaluated user's top K, training items removed. Users go in
    batches of `batch` whatever the catalogue's size: BLAS products (projected factors) round the
    last bit differently for another number of rows, so smaller batches would change scores."""
    k = min(k, len(holdout.train.item_ids))
    out = []
    for start in range(0, len(holdout.users), batch):
        users = holdout.users[start:start + batch]
        seen = (holdout.train.matrix if holdout.seen is None else holdout.seen)[users]
        if isinstance(model, HybridModel):  # the cold entry counts only the items a list may hold
            hidden = seen if holdout.showable is None else seen + _columns(seen.shape, ~holdout.showable)
            scores = model.score_histories(holdout.train.recent[users], exclude=hidden, reach=k)
        else:
            scores = model.score_histories(holdout.train.recent[users])
        seen = seen.tocoo()
        scores[seen.row, seen.col] = -np.inf
        if holdout.showable is not None:
            scores[:, ~holdout.showable] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def _columns(shape: tuple[int, int], columns: np.ndarray) -> sp.csr_matrix:
    """A sparse (rows, items) matrix with ones in the `columns` (bool, per item) of every row."""
    on = np.flatnonzero(columns)
    return sp.csr_matrix((np.ones(shape[0] * len(on), np.float32), np.tile(on, shape[0]),
                          np.arange(shape[0] + 1) * len(on)), shape=shape)


def score_rankings(ranked: np.ndarray, relevant: list[set[int]], k: int, n_items: int) -> dict:
    if not relevant:
        return {f"recall@{k}": 0.0, f"recall@{k}_ci95": [0.0, 0.0], f"ndcg@{k}": 0.0, f"mrr@{k}": 0.0,
                "coverage": 0.0, "users": 0}
    lists = [list(row) for row in ranked]
    recalls = [recall_at_k(r, rel, k) for r, rel in zip(lists, relevant)]
    return {
        f"recall@{k}": float(np.mean(recalls)),
        f"recall@{k}_ci95": list(bootstrap_interval(recalls)),
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


def recalls_of(model: ItemModel, holdout: Holdout, k: int) -> np.ndarray:
    """Per evaluated user: Recall@K."""
    ranked = rank_users(model, holdout, k)
    return np.array([recall_at_k(list(r), rel, k) for r, rel in zip(ranked, holdout.relevant)])


def recall_of(model: ItemModel, holdout: Holdout, k: int) -> float:
    """Recall@K alone (no intervals): what validation compares."""
    return float(recalls_of(model, holdout, k).mean()) if holdout.relevant else 0.0


def build_visual(vectors: VisualVectors, item_space: np.ndarray, neighbours: int = 50) -> VisualModel:
    return VisualModel(neighbours).build(item_space, vectors.item_ids, vectors.vectors)


def validation_split(train_events: pd.DataFrame, kind: str = "temporal") -> Split:
    """VALIDATION_FRAC of the training events held out for choosing settings (temporal: the last ones)."""
    return split_events(train_events, kind, VALIDATION_FRAC, seed=1)


def choose_settings(train_events: pd.DataFrame, item_space: np.ndarray, behaviour_names: Sequence[str],
                    k: int, vectors: VisualVectors | None = None, hybrid_weight: float | None = None,
                    recency_half_life_days: float | None = None, kind: str = "temporal",
                    visual: VisualModel | None = None) -> Settings:
    """Every setting that changes results, chosen on a validation window of `train_events` alone.

    `hybrid_weight` or `recency_half_life_days` given: that setting is fixed, the rest chosen.
    `visual`: the visual neighbours over `item_space` the service will have (default: exact, from
    `vectors`).
    Raises InputError when the events are too few to carve a validation window from."""
    inner = validation_split(train_events, kind)
    recencies = RECENCY_GRID if recency_half_life_days is None else (recency_half_life_days,)
    shown = vectors.showable(item_space) if vectors is not None else None  # what the service may show
    holdouts = {r: _at_most(replace(with_recency(make_holdout(inner, item_space), inner.train, r),
                                    showable=shown), VALIDATION_USERS) for r in recencies}
    first = holdouts[recencies[0]]
    grid: dict[str, float] = {}
    best_by_name: dict[str, tuple[float, dict[str, Any], float]] = {}
    for name in behaviour_names:
        for params in BEHAVIOUR_GRID.get(name, [{}]):
            model = make_behaviour_model(name, **params).fit(first.train)
            for r, holdout in holdouts.items():
                recall = recall_of(model, holdout, k)
                grid[f"{name} {_label(params)} recency={r:g}"] = round(recall, 6)
                if recall > best_by_name.get(name, (-1.0,))[0]:
                    best_by_name[name] = (recall, params, r)
    name = max(best_by_name, key=lambda n: best_by_name[n][0])  # first best in the given order
    _, params, recency = best_by_name[name]
    settings = Settings(name, params, recency, per_model={n: p for n, (_, p, _) in best_by_name.items()},
                        validation={"window": _window(inner), "behaviour": grid})
    log.info("validation picks %s %s, recency half-life %g days (recall@%d %.4f)", name, _label(params),
             recency, k, best_by_name[name][0])
    if vectors is None:
        return settings
    # Stage 2 sees as many new items as the shop has now: the share of catalogue items without
    # training events, made new in the validation window by hiding their earlier events.
    catalogue = pd.Index(item_space).isin(vectors.item_ids)
    trained = set(pd.unique(train_events.item_id))
    new_share = float(np.mean([item not in trained for item in item_space[catalogue]])) \
        if catalogue.any() else 0.0
    base = holdouts[recency] if recency in holdouts else _at_most(replace(
        with_recency(make_holdout(inner, item_space), inner.train, recency), showable=shown),
        VALIDATION_USERS)
    hidden = _new_items(inner, item_space, new_share, seed=0)
    window = float(train_events.timestamp.max() - inner.train.timestamp.max())
    holdout = _at_most(make_new(base, hidden, first_fans(inner.train, base, hidden, window)),
                       VALIDATION_USERS)
    item_ages = ages(inner.train, item_space)
    item_ages[hidden] = -1.0
    settings.validation["new_item_share"] = round(new_share, 4)
    visual = visual if visual is not None else build_visual(vectors, item_space)
    # 2a: the blend weight, on the window as it is (the weight ranks the items that have events)
    # and the user's visual taste: image cosines or projected factors (hybrid.py, `taste`)
    weights = WEIGHT_GRID if hybrid_weight is None else (hybrid_weight,)
    warm_behaviour = make_behaviour_model(name, **params).fit(base.train)
    warm_factors = fit_cold_factors(base.train, vectors.item_ids, vectors.vectors)
    weight_grid = {(w, taste): recall_of(HybridModel(w, 1.0, "none", 1, taste=taste).build(
        warm_behaviour, visual, None, warm_factors), base, k) for taste in TASTES for w in weights}
    settings.hybrid_weight, settings.taste = max(weight_grid, key=lambda key: weight_grid[key])  # first best
    settings.validation["hybrid_weight"] = {
        f"w={w:g}" + ("" if taste == "cosine" else f" taste={taste}"): round(r, 6)
        for (w, taste), r in weight_grid.items()}
    # 2b: cold handling at that weight, on the window with items made new
    behaviour = make_behaviour_model(name, **params).fit(holdout.train)
    donors = projected_donors(holdout.train, vectors.item_ids, vectors.vectors)
    factors = fit_cold_factors(holdout.train, vectors.item_ids, vectors.vectors)
    best, hybrid_grid = (-1.0, settings.hybrid_weight, "visual", 1.0, 20), {}
    for cold, cold_weight, n_donors in COLD_GRID:
        hybrid = HybridModel(settings.hybrid_weight, cold_weight, cold, n_donors, taste=settings.taste)
        recall = recall_of(hybrid.build(behaviour, visual, donors, factors), holdout, k)
        hybrid_grid[f"cold={cold}x{cold_weight:g} donors={n_donors}"] = round(recall, 6)
        if recall > best[0]:
            best = (recall, settings.hybrid_weight, cold, cold_weight, n_donors)
    # lending to cold items is taken only where it beats lending nothing beyond doubt (the bootstrap
    # 95% interval of the per-user gain above 0), as the cold entry and the ranker are
    nothing = HybridModel(settings.hybrid_weight, 1.0, "none", 1, taste=settings.taste).build(
        behaviour, visual, donors, factors)
    lend = HybridModel(settings.hybrid_weight, best[3], best[2], best[4], taste=settings.taste).build(
        behaviour, visual, donors, factors)
    gain = bootstrap_interval(recalls_of(lend, holdout, k) - recalls_of(nothing, holdout, k)) \
        if best[2] != "none" else (0.0, 0.0)
    settings.validation["cold_gain_ci95"] = [round(g, 6) for g in gain]
    if gain[0] <= 0:
        best = (recall_of(nothing, holdout, k), settings.hybrid_weight, "none", 1.0, 1)
    settings.cold, settings.cold_weight, settings.donors = best[2:]
    # where cold items enter the lists, and in what order among themselves (at the chosen weight);
    # taken only where it beats the plain blend beyond doubt (bootstrap 95% interval of the per-user
    # gain above 0), as the ranker is
    entry_grid: dict[str, float] = {}
    best_entry: tuple[float, int | None, str, int] = (-1.0, None, settings.cold, settings.donors)
    for cold, n_donors in COLD_ORDER_GRID:
        for cold_from in COLD_FROM_GRID[1:]:
            hybrid = HybridModel(settings.hybrid_weight, 1.0, cold, n_donors, cold_from,
                                 settings.taste).build(behaviour, visual, donors, factors)
            recall = recall_of(hybrid, holdout, k)
            entry_grid[f"cold={cold} donors={n_donors} from={cold_from}"] = round(recall, 6)
            if recall > best_entry[0]:
                best_entry = (recall, cold_from, cold, n_donors)
    if best_entry[0] > best[0]:
        plain = HybridModel(settings.hybrid_weight, settings.cold_weight, settings.cold, settings.donors,
                            taste=settings.taste)
        entry = HybridModel(settings.hybrid_weight, 1.0, best_entry[2], best_entry[3], best_entry[1],
                            settings.taste)
        gain = bootstrap_interval(recalls_of(entry.build(behaviour, visual, donors, factors), holdout, k)
                                  - recalls_of(plain.build(behaviour, visual, donors, factors), holdout, k))
        settings.validation["cold_entry_gain_ci95"] = [round(g, 6) for g in gain]
        if gain[0] > 0:
            settings.cold_from, settings.cold, settings.donors = best_entry[1:]
            settings.cold_weight = 1.0
    settings.validation["hybrid"] = hybrid_grid
    settings.validation["cold_entry"] = entry_grid
    # The second stage: trained on half of the validation users and compared with the blend on the
    # other half; it serves only where it wins there beyond doubt (the bootstrap 95% interval of the
    # per-user difference above 0). Then retrained on all of them.
    blend = HybridModel(settings.hybrid_weight, settings.cold_weight, settings.cold, settings.donors,
                        settings.cold_from, settings.taste).build(behaviour, visual, donors, factors)
    ranker = RankerModel().build(behaviour, visual, donors, item_ages, factors)
    first_half, second_half = _halves(holdout, seed=0)
    ranker.train(holdout.train.recent[first_half.users], first_half.relevant)
    blend_recalls = recalls_of(blend, second_half, k)
    ranker_recalls = recalls_of(ranker, second_half, k) if ranker.booster is not None else blend_recalls * 0
    ranker_recall, blend_recall = float(ranker_recalls.mean()), float(blend_recalls.mean())
    gain = bootstrap_interval(ranker_recalls - blend_recalls)
    wins = ranker.booster is not None and gain[0] > 0
    settings.second_stage = "ranker" if wins else "blend"
    settings.validation["second_stage"] = {"ranker": round(ranker_recall, 6), "blend": round(blend_recall, 6),
                                           "gain_ci95": [round(g, 6) for g in gain],
                                           "users": len(second_half.users)}
    settings.ranker = ranker.train(holdout.train.recent[holdout.users], holdout.relevant).booster
    log.info("validation picks the %s as second stage (ranker %.4f, blend %.4f on held-out users)",
             settings.second_stage, ranker_recall, blend_recall)
    log.info("validation picks hybrid weight %.2f, cold %s x %.2f from rank %s (recall@%d %.4f)",
             settings.hybrid_weight, settings.cold, settings.cold_weight, settings.cold_from, k, best[0])
    return settings


def _at_most(holdout: Holdout, n: int, seed: int = 0) -> Holdout:
    """`holdout` with at most `n` evaluated users, a seeded random sample: ranking every user over a
    large catalogue once per setting tried is what validation spends its time on."""
    if len(holdout.users) <= n:
        return holdout
    rows = np.sort(np.random.default_rng(seed).choice(len(holdout.users), n, replace=False))
    return replace(holdout, users=holdout.users[rows], relevant=[holdout.relevant[r] for r in rows])


def _new_items(split: Split, item_space: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Positions of the items to make new in the validation window: a random `share` of the items
    held out in it, less any that would leave no training events at all. (Items that first appear
    inside the window are new there already.)"""
    items = pd.unique(split.test.item_id)
    rng = np.random.default_rng(seed)
    hidden = set(items[rng.random(len(items)) < share])
    if split.train.item_id.isin(hidden).all():
        return np.zeros(0, np.int64)
    return np.flatnonzero(pd.Index(item_space).isin(hidden))  # hashed, as in VisualVectors.showable


def make_new(holdout: Holdout, items: np.ndarray, first_fans: Sequence[tuple[int, int]] = ()) -> Holdout:
    """`holdout` with `items` (positions) made new, as if they had just arrived at the window's start:
    neither the models nor the histories hold any of their events, and nobody is shown them who had
    them (a new item has no past users, so none of them may count as a miss or take a place in a
    list). With `first_fans` ((user position, item position) pairs, see `first_fans`) the items'
    demand in the window is that of their own first days: those pairs are what is held out for them,
    in place of the pairs they really had in the window."""
    n_items = len(holdout.train.item_ids)
    keep = sp.diags(np.where(np.isin(np.arange(n_items), items), 0.0, 1.0))

    def without(matrix: sp.csr_matrix) -> sp.csr_matrix:
        out = sp.csr_matrix(matrix @ keep, dtype=np.float32)
        out.eliminate_zeros()
        return out

    train = holdout.train
    hidden = Interactions(train.user_ids, train.item_ids, without(train.matrix), without(train.recent),
                          (train.trending * keep.diagonal()).astype(np.float32))
    cold = holdout.cold.copy()
    cold[items] = True
    if not len(first_fans):
        return replace(holdout, train=hidden, cold=cold, seen=train.matrix)
    made_new = set(int(i) for i in items)
    seen = sp.lil_matrix(train.matrix)
    relevant: dict[int, set[int]] = {}
    for user, rel in zip(holdout.users, holdout.relevant):
        for item in rel & made_new:
            seen[user, item] = 1.0  # met it later in its life: not shown, not held out
        if rel - made_new:
            relevant[int(user)] = rel - made_new
    for user, item in first_fans:
        seen[user, item] = 0.0
        relevant.setdefault(int(user), set()).add(int(item))
    seen = sp.csr_matrix(seen, dtype=np.float32)
    seen.eliminate_zeros()
    users = sorted(relevant)
    return replace(holdout, train=hidden, users=np.array(users, dtype=np.int64),
                   relevant=[relevant[u] for u in users], cold=cold, seen=seen)


def first_fans(train: pd.DataFrame, holdout: Holdout, items: np.ndarray,
               window: float) -> list[tuple[int, int]]:
    """For items made new in a validation window: the (user, item) pairs of each item's first `window`
    seconds on sale (from its first event): a new item's demand in the window, measured on the item
    itself when it was new. `train`: the window's training events."""
    if not len(items):
        return []
    names = set(holdout.train.item_ids[items])
    events = train[train.item_id.isin(names)]
    pairs = events.groupby(["user_id", "item_id"]).timestamp.min().reset_index()
    first = events.groupby("item_id").timestamp.min()
    early = pairs[pairs.timestamp.to_numpy() < first.reindex(pairs.item_id).to_numpy() + window]
    users, positions = holdout.train.user_index(), holdout.train.item_index()
    return [(users[u], positions[i]) for u, i in zip(early.user_id, early.item_id)]


def _halves(holdout: Holdout, seed: int) -> tuple[Holdout, Holdout]:
    """The holdout's evaluated users split at random into two halves."""
    order = np.random.default_rng(seed).permutation(len(holdout.users))
    parts = []
    for rows in (np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])):
        parts.append(replace(holdout, users=holdout.users[rows],
                             relevant=[holdout.relevant[r] for r in rows]))
    return parts[0], parts[1]


def ages(train_events: pd.DataFrame, item_space: np.ndarray) -> np.ndarray:
    """Per item: days from its first event to the last training event; -1 for items without events."""
    first = train_events.groupby("item_id").timestamp.min()
    return item_age_days(first.reindex(item_space).to_numpy(np.float64), float(train_events.timestamp.max()))


_TASTE_LABEL = {"cosine": "image cosines", "projected": "projected factors"}


def _label(params: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(params.items())) or "defaults"


def _window(split: Split) -> dict[str, Any]:
    return {"kind": split.kind, "train_events": len(split.train), "validation_pairs": len(split.test),
            "validation_from": int(split.train.timestamp.max()) if len(split.train) else None}


def item_space_of(events: pd.DataFrame, vectors: VisualVectors | None) -> np.ndarray:
    """Catalogue items first (those with vectors), then event items outside the catalogue."""
    catalogue = list(vectors.item_ids) if vectors is not None else []
    known = set(catalogue)
    return np.array(catalogue + [i for i in pd.unique(events.item_id) if i not in known], dtype=str)


def evaluate(
    events: pd.DataFrame,
    vectors: VisualVectors | None = None,
    split: str = "random",
    test_frac: float = 0.2,
    seed: int = 0,
    k: int = 10,
    behaviour_names: Sequence[str] = DEFAULT_BEHAVIOUR_MODELS,
    hybrid_weight: float | None = None,
    cleaning: CleaningConfig | None = None,
    recency_half_life_days: float | None = None,
) -> dict:
    """The evaluation report (DESIGN.md): one entry per model, overall and on the cold-start slice.

    Settings left None are chosen on a validation window of the training events (`choose_settings`);
    a recency half-life of 0 is off."""
    events = clean_events(events, cleaning or CleaningConfig())
    parts = split_events(events, split, test_frac, seed)
    item_space = item_space_of(events, vectors)
    names = usable_behaviour_models(list(behaviour_names), len(item_space))
    settings = choose_settings(parts.train, item_space, names, k, vectors, hybrid_weight,
                               recency_half_life_days, kind=split)
    holdout = served_holdout(parts, item_space, settings.recency_half_life_days, vectors)
    models: dict[str, ItemModel] = {"popularity": PopularityModel().fit(holdout.train)}
    behaviours = {}
    for name in names:
        behaviours[name] = make_behaviour_model(name, **settings.per_model[name]).fit(holdout.train)
        models[f"behaviour_{name}"] = behaviours[name]
    report: dict = {
        "split": split, "k": k, "recency_half_life_days": settings.recency_half_life_days,
        "test_frac": test_frac, "seed": seed, "test_events": parts.test_events,
        "test_pairs": len(parts.test), "items": len(item_space), "users": len(holdout.users),
        "cold_items_in_test": int(sum(len({i for i in rel if holdout.cold[i]}) for rel in holdout.relevant)),
        "behaviour_model": settings.behaviour_model, "settings": settings.to_dict(),
    }
    if vectors is not None:
        visual = build_visual(vectors, item_space)
        models["visual"] = visual
        donors = projected_donors(holdout.train, vectors.item_ids, vectors.vectors)
        factors = fit_cold_factors(holdout.train, vectors.item_ids, vectors.vectors)
        behaviour = behaviours[settings.behaviour_model]
        models["hybrid"] = HybridModel(settings.hybrid_weight, settings.cold_weight, settings.cold,
                                       settings.donors, settings.cold_from, settings.taste).build(
            behaviour, visual, donors, factors)
        if settings.ranker is not None:  # reported beside the models: serving answers with the blend
            ranker = RankerModel().build(behaviour, visual, donors, ages(parts.train, item_space), factors)
            ranker.booster = settings.ranker
            overall, cold = evaluate_model(ranker, holdout, k)
            report["second_stage"] = {"ranker": overall, "ranker_cold_start": cold,
                                      "chosen_on_validation": settings.second_stage}
        report["hybrid"] = {"behaviour_model": settings.behaviour_model, "weight": settings.hybrid_weight,
                            "taste": settings.taste,
                            "cold": settings.cold, "cold_weight": settings.cold_weight,
                            "donors": settings.donors, "cold_from": settings.cold_from,
                            "second_stage": settings.second_stage}
    report["models"], report["cold_start"] = {}, {}
    for name, model in models.items():
        report["models"][name], report["cold_start"][name] = evaluate_model(model, holdout, k)
    return report


def format_table(report: dict) -> str:
    """The report as a fixed-width table: one row per model, overall then cold-start columns."""
    k = report["k"]
    head = (f"{'model':<18} {'recall@' + str(k):>10} {'95% interval':>15} {'ndcg@' + str(k):>8} "
            f"{'coverage':>9} | {'cold recall':>11} {'95% interval':>15}")
    lines = [f"split {report['split']}, {report['users']} users, {report['items']} items, "
             f"{report['test_pairs']} held-out pairs ({report['cold_items_in_test']} cold)", head,
             "-" * len(head)]
    rows = [(name, m, report["cold_start"][name]) for name, m in report["models"].items()]
    if "second_stage" in report:
        rows.append(("ranker (2nd stage)", report["second_stage"]["ranker"],
                     report["second_stage"]["ranker_cold_start"]))
    for name, m, c in rows:
        lo, hi = m[f"recall@{k}_ci95"]
        clo, chi = c[f"recall@{k}_ci95"]
        lines.append(f"{name:<18} {m[f'recall@{k}']:>10.4f} {f'{lo:.3f}-{hi:.3f}':>15} "
                     f"{m[f'ndcg@{k}']:>8.4f} {m['coverage']:>9.3f} | {c[f'recall@{k}']:>11.4f} "
                     f"{f'{clo:.3f}-{chi:.3f}':>15}")
    s = report["settings"]
    recency = f"{s['recency_half_life_days']:g} days" if s["recency_half_life_days"] else "off"
    lines.append(f"behaviour: {s['behaviour_model']} {_label(s['behaviour_params'])}; history recency "
                 f"half-life {recency}")
    if "hybrid" in report:
        hybrid = report["hybrid"]
        entry = hybrid.get("cold_from")
        entry = f"interleaved from warm rank {entry}" if entry is not None else "not interleaved"
        lines.append(f"hybrid = {hybrid['weight']:.2f} x behaviour_{hybrid['behaviour_model']} + "
                     f"{1 - hybrid['weight']:.2f} x visual ({_TASTE_LABEL[hybrid.get('taste', 'cosine')]}; "
                     "each scaled by its spread per user); cold items: "
                     f"{hybrid['cold']} donors ({hybrid.get('donors', 20)}) x {hybrid['cold_weight']:g}, "
                     f"{entry}")
    if "second_stage" in report:
        lines.append(f"ranker: LightGBM lambdarank trained on validation; validation prefers the "
                     f"{report['second_stage']['chosen_on_validation']} "
                     "(the hybrid row is the blend, as served)")
    window = "the last 20% by time" if s["validation"].get("window", {}).get("kind") == "temporal" else "20%"
    lines.append(f"(every setting chosen on validation: {window} of the training events)")
    return "\n".join(lines)
