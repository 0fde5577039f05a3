"""Behaviour data inside an index store version: fit it, write it as a new version, read it back.

A published version folder is never modified, so fitting behaviour makes a NEW version derived
from the base through the store's writer (index.store.IndexStore.write_version): `behaviour/` is
written, the base's other files are hard-linked, `meta.json` gets the base's fields plus
`base_version` and a `behaviour` record, and publishing makes it the serving version.

`behaviour/` holds `behaviour.json` (model kind, hybrid weight, counts, source), `model.npz` (the
behaviour model), `visual.npz` (every item's visual neighbours) and `interactions.npz` (each
user's history: what to exclude and where to start from).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.cleaning import CleaningConfig, clean_events
from recsys.errors import InputError
from recsys.evaluation import WEIGHT_GRID, choose_hybrid
from recsys.interactions import Interactions, from_events
from recsys.models import (
    HybridModel,
    ItemModel,
    NeighbourModel,
    VisualModel,
    auto_behaviour_model,
    make_behaviour_model,
)
from recsys.split import split_events

log = logging.getLogger(__name__)

BEHAVIOUR_DIR = "behaviour"
MANIFEST = "behaviour.json"


@dataclass
class FitOptions:
    model: str = "auto"  # cooc, ease or auto
    hybrid_weight: float | None = None  # None: chosen on a temporal validation split of the events
    recency_half_life_days: float | None = 14.0
    visual_neighbours: int = 50
    k: int = 10  # the K of the Recall@K that chooses the hybrid weight
    cleaning: CleaningConfig | None = None


@dataclass
class Behaviour:
    """What a version's behaviour/ folder holds, loaded."""

    manifest: dict[str, Any]
    model: NeighbourModel
    visual: VisualModel
    interactions: Interactions

    def hybrid(self) -> HybridModel:
        return HybridModel(float(self.manifest["hybrid_weight"]),
                           float(self.manifest.get("hybrid_cold_weight", 1.0))).build(self.model, self.visual)


def visual_from_index(loaded: Any, item_space: np.ndarray, neighbours: int) -> VisualModel:
    """Every item's visual neighbours from the loaded index version (one batched search)."""
    row_ids = loaded.items["item_id"].astype(str).to_numpy()
    position = pd.Index(row_ids)

    def search(xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = loaded.search(xq, k)
        hits = position.get_indexer(ids.ravel().astype(str)).reshape(ids.shape)
        return np.nan_to_num(scores, nan=0.0), hits

    vectors = np.asarray(loaded.vectors, dtype=np.float32)
    return VisualModel(neighbours).build(item_space, row_ids, vectors, search=search)


def fit_behaviour(events: pd.DataFrame, loaded: Any, options: FitOptions | None = None) -> Behaviour:
    """Fit the behaviour model, the visual neighbours and the hybrid weight for one index version."""
    options = options or FitOptions()
    events = clean_events(events, options.cleaning)
    catalogue = loaded.items["item_id"].astype(str).tolist()
    known = set(catalogue)
    item_space = np.array(catalogue + [i for i in pd.unique(events.item_id) if i not in known], dtype=str)
    # auto: both models where EASE fits, the better one chosen on validation; else co-occurrence
    names = [options.model] if options.model != "auto" else (
        ["cooc", "ease"] if auto_behaviour_model(len(item_space)) == "ease" else ["cooc"])
    interactions = from_events(events, item_space, options.recency_half_life_days)
    visual = visual_from_index(loaded, item_space, options.visual_neighbours)
    name, weight, cold, validation = names[0], options.hybrid_weight, 1.0, None
    if weight is None or len(names) > 1:
        try:
            split = split_events(events, "temporal", 0.2)
            grid = [weight] if weight is not None else WEIGHT_GRID
            name, weight, cold, validation = choose_hybrid(
                split, item_space, visual, names, options.k, seed=0, weights=grid,
                recency_half_life_days=options.recency_half_life_days)
        except InputError as exc:  # too few events to validate on
            log.warning("cannot validate the hybrid (%s); using %s with weight 0.5", exc, names[0])
            weight = 0.5 if weight is None else weight
    model = make_behaviour_model(name).fit(interactions)
    manifest = {
        "model": name,
        "params": model.params(),
        "hybrid_weight": weight,
        "hybrid_cold_weight": cold,
        "hybrid_validation": validation,
        "recency_half_life_days": options.recency_half_life_days,
        "visual_neighbours": options.visual_neighbours,
        "counts": {"events": len(events), "users": len(interactions.user_ids), "items": len(item_space),
                   "items_with_behaviour": int(model.has_neighbours().sum()),
                   "catalogue_items": len(catalogue)},
        "event_time": {"first": int(events.timestamp.min()), "last": int(events.timestamp.max())},
    }
    return Behaviour(manifest, model, visual, interactions)


def save_behaviour(behaviour: Behaviour, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    behaviour.model.save(folder / "model.npz")
    behaviour.visual.save(folder / "visual.npz")
    behaviour.interactions.save(folder / "interactions.npz")
    (folder / MANIFEST).write_text(json.dumps(behaviour.manifest, indent=2, sort_keys=True))


def load_behaviour(version_dir: Path) -> Behaviour:
    folder = Path(version_dir) / BEHAVIOUR_DIR
    if not (folder / MANIFEST).is_file():
        raise InputError(f"{version_dir}: no behaviour data (run `recsys behaviour fit`)")
    manifest = json.loads((folder / MANIFEST).read_text())
    model = ItemModel.load(folder / "model.npz")
    visual = ItemModel.load(folder / "visual.npz")
    if not isinstance(model, NeighbourModel) or not isinstance(visual, VisualModel):
        raise InputError(f"{folder}: model.npz or visual.npz holds the wrong kind of model")
    return Behaviour(manifest, model, visual, Interactions.load(folder / "interactions.npz"))


def write_version(store_dir: str | Path, base_version: str, behaviour: Behaviour, source: str,
                  publish: bool = True) -> str:
    """A new store version: the base's index files plus behaviour/; published unless told not to."""
    from index.store import IndexStore

    store = IndexStore(store_dir)
    with store.write_version(base=base_version, without=(BEHAVIOUR_DIR,)) as writer:
        behaviour.manifest["source"] = source
        save_behaviour(behaviour, writer.file(BEHAVIOUR_DIR))
        writer.commit({"behaviour": {key: behaviour.manifest[key]
                                     for key in ("model", "hybrid_weight", "hybrid_cold_weight", "counts")}})
    version = writer.version
    if publish:
        store.publish(version)
        store.prune()
    log.info("version %s: %s behaviour over base %s%s", version, behaviour.manifest["model"], base_version,
             ", published" if publish else "")
    return version
