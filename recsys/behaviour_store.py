"""Behaviour data inside an index store version: fit it, write it as a new version, read it back.

A published version folder is never modified, so fitting behaviour makes a NEW version derived
from the base through the store's writer (index.store.IndexStore.write_version): `behaviour/` is
written, the base's other files are hard-linked, `meta.json` gets the base's fields plus
`base_version` and a `behaviour` record, and publishing makes it the serving version.

`behaviour/` holds `behaviour.json` (model kind, hybrid weight, counts, source, and every setting
chosen on validation with the recall of each one tried), `model.npz` (the behaviour model),
`visual.npz` (every item's visual neighbours), `interactions.npz` (each user's history: what to
exclude and where to start from) and, when cold items borrow by projection, `cold_donors.npz`
(each item without events: the warm items its picture projects nearest to in behaviour space;
with the hybrid's `cold="factors"` or `taste="projected"` also the user fold-in and every item's
projected factors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.cleaning import CleaningConfig, clean_events
from recsys.errors import InputError
from recsys.evaluation import Settings, VisualVectors, choose_settings, item_space_of
from recsys.event_codes import EventCodes
from recsys.events import iter_events, load_events
from recsys.interactions import Interactions, from_events
from recsys.models import (
    DEFAULT_BEHAVIOUR_MODELS,
    HybridModel,
    ItemModel,
    NeighbourModel,
    VisualModel,
    make_behaviour_model,
    usable_behaviour_models,
)
from recsys.models.projection import ColdFactors, fit_cold_factors, projected_donors
from recsys.sparse_ops import csr_arrays, csr_from

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

log = logging.getLogger(__name__)

BEHAVIOUR_DIR = "behaviour"
MANIFEST = "behaviour.json"
DONORS_FILE = "cold_donors.npz"
RANKER_FILE = "ranker.txt"
# an events file larger than this many events is not loaded as a frame: settings are chosen on a
# sample of its users of about this size, the model is fitted on all of it (fit_behaviour_file)
VALIDATION_EVENTS = 2_000_000


@dataclass
class FitOptions:
    model: str = "auto"  # a behaviour model name (recsys.models.BEHAVIOUR_MODELS) or auto: chosen
    hybrid_weight: float | None = None  # None: chosen on a temporal validation window of the events
    recency_half_life_days: float | None = None  # None: chosen on validation; 0: off
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
    donors: sp.csr_matrix | None = None  # cold items' donors by projection (None: by image)
    ranker: str | None = None  # the LightGBM second stage (model text), trained on validation
    cold_factors: ColdFactors | None = None  # cold items' projected factors (hybrid cold="factors")

    def hybrid(self) -> HybridModel:
        return HybridModel(float(self.manifest["hybrid_weight"]),
                           float(self.manifest.get("hybrid_cold_weight", 1.0)),
                           str(self.manifest.get("hybrid_cold", "visual")),
                           int(self.manifest.get("hybrid_donors", 20)),
                           self.manifest.get("hybrid_cold_from"),
                           str(self.manifest.get("hybrid_taste", "cosine"))).build(
            self.model, self.visual, self.donors, self.cold_factors)


def visual_from_index(loaded: LoadedIndex, item_space: np.ndarray, neighbours: int) -> VisualModel:
    """Every item's visual neighbours from the loaded index version (one batched search)."""
    row_ids = loaded.items["item_id"].astype(str).to_numpy()
    position = pd.Index(row_ids)

    def search(xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = loaded.search(xq, k)
        hits = position.get_indexer(ids.ravel().astype(str)).reshape(ids.shape)
        return np.nan_to_num(scores, nan=0.0), hits

    vectors = np.asarray(loaded.vectors, dtype=np.float32)
    return VisualModel(neighbours).build(item_space, row_ids, vectors, search=search)


def fit_behaviour(events: pd.DataFrame, loaded: LoadedIndex, options: FitOptions | None = None) -> Behaviour:
    """Fit the behaviour model, the visual neighbours and the hybrid for one index version; every
    setting not fixed in `options` is chosen on the last 20% (by time) of the events."""
    options = options or FitOptions()
    events = clean_events(events, options.cleaning)
    vectors = VisualVectors.from_loaded(loaded)
    item_space = item_space_of(events, vectors)
    visual = visual_from_index(loaded, item_space, options.visual_neighbours)  # validated as served
    settings = _settings(events, item_space, vectors, options, visual)
    interactions = from_events(events, item_space, settings.recency_half_life_days or None)
    return _assemble(settings, interactions, vectors, loaded, options, len(events),
                     (int(events.timestamp.min()), int(events.timestamp.max())), visual)


def fit_behaviour_file(path: str | Path, loaded: LoadedIndex, options: FitOptions | None = None,
                       event_weights: Mapping[str, float] | None = None,
                       validation_events: int = VALIDATION_EVENTS, batch_rows: int = 1_000_000) -> Behaviour:
    """`fit_behaviour` over an events file, read in chunks of `batch_rows` rows (recsys.event_codes).

    A file of at most `validation_events` events is fitted exactly as fit_behaviour(load_events(path))
    fits it. A larger one never becomes a frame: its settings are chosen on the events of a random
    sample of its users (about `validation_events` events, whole histories), and the chosen model is
    fitted on every event, held as integer codes (25 bytes an event)."""
    options = options or FitOptions()
    vectors = VisualVectors.from_loaded(loaded)
    codes = EventCodes.read(iter_events(path, event_weights, batch_rows), vectors.item_ids)
    if len(codes) <= validation_events:
        del codes
        return fit_behaviour(load_events(path, event_weights), loaded, options)
    codes = codes.clean(options.cleaning)
    sample = codes.user_sample(validation_events)
    log.info("%s: %d events; settings chosen on %d events of %d sampled users", path, len(codes), len(sample),
             sample.user_id.nunique())
    settings = _settings(sample, codes.items, vectors, options)
    del sample
    interactions = codes.interactions(settings.recency_half_life_days or None)
    return _assemble(settings, interactions, vectors, loaded, options, len(codes),
                     (int(codes.timestamp.min()), int(codes.timestamp.max())))


def _settings(events: pd.DataFrame, item_space: np.ndarray, vectors: VisualVectors,
              options: FitOptions, visual: VisualModel | None = None) -> Settings:
    names = [options.model] if options.model != "auto" else usable_behaviour_models(
        list(DEFAULT_BEHAVIOUR_MODELS), len(item_space))
    try:
        return choose_settings(events, item_space, names, options.k, vectors, options.hybrid_weight,
                               options.recency_half_life_days, visual=visual)
    except InputError as exc:  # too few events to validate on
        log.warning("cannot validate (%s); using %s with defaults", exc, names[0])
        return Settings(names[0], {}, options.recency_half_life_days or 0.0,
                        0.5 if options.hybrid_weight is None else options.hybrid_weight,
                        validation={"skipped": str(exc)})


def _assemble(settings: Settings, interactions: Interactions, vectors: VisualVectors, loaded: LoadedIndex,
              options: FitOptions, n_events: int, event_time: tuple[int, int],
              visual: VisualModel | None = None) -> Behaviour:
    """The chosen model fitted on `interactions`, the visual neighbours (unless given), and the manifest."""
    item_space = interactions.item_ids
    if visual is None:
        visual = visual_from_index(loaded, item_space, options.visual_neighbours)
    model = make_behaviour_model(settings.behaviour_model, **settings.behaviour_params).fit(interactions)
    donors = projected_donors(interactions, vectors.item_ids, vectors.vectors) \
        if settings.cold in ("projection", "factors") else None
    cold_factors = fit_cold_factors(interactions, vectors.item_ids, vectors.vectors) \
        if settings.cold == "factors" or settings.taste == "projected" else None
    chosen = settings.to_dict()
    ranker = settings.ranker.model_to_string() if settings.ranker is not None else None
    manifest = {
        "model": settings.behaviour_model,
        "params": model.params(),
        "hybrid_weight": settings.hybrid_weight,
        "hybrid_cold": settings.cold,
        "hybrid_cold_weight": settings.cold_weight,
        "hybrid_donors": settings.donors,
        "hybrid_cold_from": settings.cold_from,
        "hybrid_taste": settings.taste,
        "hybrid_validation": chosen.pop("validation"),
        # what validation preferred; serving answers with the blend until the answer path takes the
        # ranker (saved as ranker.txt)
        "second_stage": settings.second_stage, "serving_stage": "blend",
        "settings": chosen,
        "recency_half_life_days": settings.recency_half_life_days,
        "visual_neighbours": options.visual_neighbours,
        "counts": {"events": n_events, "users": len(interactions.user_ids), "items": len(item_space),
                   "items_with_behaviour": int(model.has_neighbours().sum()),
                   "catalogue_items": len(vectors.item_ids)},
        "event_time": {"first": event_time[0], "last": event_time[1]},
    }
    return Behaviour(manifest, model, visual, interactions, donors, ranker, cold_factors)


def save_behaviour(behaviour: Behaviour, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    behaviour.model.save(folder / "model.npz")
    behaviour.visual.save(folder / "visual.npz")
    behaviour.interactions.save(folder / "interactions.npz")
    if behaviour.donors is not None or behaviour.cold_factors is not None:
        donors = csr_arrays("donors", behaviour.donors) if behaviour.donors is not None else {}
        factors = behaviour.cold_factors.arrays() if behaviour.cold_factors is not None else {}
        np.savez_compressed(folder / DONORS_FILE, **donors, **factors)
    if behaviour.ranker is not None:
        (folder / RANKER_FILE).write_text(behaviour.ranker)
    (folder / MANIFEST).write_text(json.dumps(behaviour.manifest, indent=2, sort_keys=True))


def load_behaviour(version_dir: Path) -> Behaviour:
    """Raises InputError when the folder is missing or any of its files is unreadable."""
    folder = Path(version_dir) / BEHAVIOUR_DIR
    if not (folder / MANIFEST).is_file():
        raise InputError(f"{version_dir}: no behaviour data (run `recsys behaviour fit`)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        model = ItemModel.load(folder / "model.npz")
        visual = ItemModel.load(folder / "visual.npz")
        interactions = Interactions.load(folder / "interactions.npz")
        donors = cold_factors = None
        if (folder / DONORS_FILE).is_file():
            with np.load(folder / DONORS_FILE, allow_pickle=False) as data:
                donors = csr_from(data, "donors") if "donors_data" in data else None
                cold_factors = ColdFactors.from_arrays(data)
        ranker = (folder / RANKER_FILE).read_text() if (folder / RANKER_FILE).is_file() else None
    except (OSError, ValueError, KeyError, EOFError) as exc:  # zip and npz errors are ValueError/OSError
        raise InputError(f"{folder}: unreadable behaviour data ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, NeighbourModel) or not isinstance(visual, VisualModel):
        raise InputError(f"{folder}: model.npz or visual.npz holds the wrong kind of model")
    return Behaviour(manifest, model, visual, interactions, donors, ranker, cold_factors)


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
