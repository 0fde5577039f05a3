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

`load_behaviour` checks each file against the others (behaviour.json's keys, every array sized to
the item list): a broken folder is an InputError naming the file and key, and the version does not
load; a version without behaviour/ raises NoBehaviour and is answered by image similarity alone.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
from recsys.models.hybrid import COLD_MODES, MAX_COLD_WEIGHT, TASTES
from recsys.models.implicit_models import WEIGHTINGS, AlsModel
from recsys.models.projection import ColdFactors, fit_cold_factors, projected_donors
from recsys.npz import read_npz
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


class NoBehaviour(InputError):
    """The version holds no behaviour/ folder (it answers by image similarity alone)."""


def load_behaviour(version_dir: Path) -> Behaviour:
    """Raises NoBehaviour when the version has no behaviour/ folder, InputError naming the file
    (and the key) when one of its files is missing, unreadable or disagrees with the others."""
    folder = Path(version_dir) / BEHAVIOUR_DIR
    if not folder.is_dir():
        raise NoBehaviour(f"{version_dir}: no behaviour data (run `recsys behaviour fit`)")
    manifest = _read(folder / MANIFEST, _read_manifest)
    model = _read(folder / "model.npz", ItemModel.load)
    visual = _read(folder / "visual.npz", ItemModel.load)
    interactions = _read(folder / "interactions.npz", Interactions.load)
    donors = cold_factors = None
    if (folder / DONORS_FILE).is_file():
        donors, cold_factors = _read(folder / DONORS_FILE, _read_donors)
    ranker = _read(folder / RANKER_FILE, lambda path: path.read_text(encoding="utf-8")) \
        if (folder / RANKER_FILE).is_file() else None
    _check_models(folder, model, visual)
    _check_interactions(folder / "interactions.npz", interactions, model.item_ids)
    _check_donors(folder / DONORS_FILE, donors, cold_factors, len(model.item_ids))
    return Behaviour(manifest, model, visual, interactions, donors, ranker, cold_factors)


T = TypeVar("T")
# What numpy, zipfile, json and the model constructors raise on a damaged file.
UNREADABLE = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile)


def _read(path: Path, read: Callable[[Path], T]) -> T:
    """`read(path)`, its failures as InputError naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: missing")
    try:
        return read(path)
    except InputError as exc:
        raise InputError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    except UNREADABLE as exc:
        raise InputError(f"{path}: unreadable behaviour data ({type(exc).__name__}: {exc})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# behaviour.json's keys that loading and serving read: (required, check, what it must be)
MANIFEST_KEYS: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "model": (True, lambda v: isinstance(v, str), "the behaviour model's name"),
    "hybrid_weight": (True, lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "hybrid_cold_weight": (False, lambda v: _is_number(v) and 0 < v <= MAX_COLD_WEIGHT,
                           f"a number above 0 and at most {MAX_COLD_WEIGHT:g}"),
    "hybrid_cold": (False, lambda v: v in COLD_MODES, f"one of {', '.join(COLD_MODES)}"),
    "hybrid_donors": (False, lambda v: _is_count(v) and v >= 1, "a positive integer"),
    "hybrid_cold_from": (False, lambda v: v is None or _is_count(v) and v >= 0, "null or an integer from 0"),
    "hybrid_taste": (False, lambda v: v in TASTES, f"one of {', '.join(TASTES)}"),
    "recency_half_life_days": (False, lambda v: v is None or _is_number(v) and v >= 0,
                               "null or a number from 0"),
}


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    for key, (required, check, what) in MANIFEST_KEYS.items():
        if key not in manifest:
            if required:
                raise InputError(f"{path}: key {key!r} is missing")
        elif not check(manifest[key]):
            raise InputError(f"{path}: key {key!r} must be {what}, not {manifest[key]!r}")
    return manifest


def _read_donors(path: Path) -> tuple[sp.csr_matrix | None, ColdFactors | None]:
    data = read_npz(path)
    donors = csr_from(data, "donors") if "donors_data" in data else None
    for key in ("cold_fold", "cold_item_factors"):  # cast to float32 when read: complex would lose a part
        if key in data and data[key].dtype.kind not in "fiu":
            raise _bad(path, key, f"must hold real numbers, not {data[key].dtype}")
    return donors, ColdFactors.from_arrays(data)


def _bad(path: Path, key: str, problem: str) -> InputError:
    return InputError(f"{path}: key {key!r} {problem}")


def _check_ids(path: Path, key: str, ids: np.ndarray) -> None:
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise _bad(path, key, f"must be a list of id strings, not {ids.dtype} of shape {ids.shape}")
    if len(set(ids.tolist())) != len(ids):
        raise _bad(path, key, "holds an id twice")


def _check_numbers(path: Path, key: str, array: np.ndarray, shape: tuple[int | None, ...], what: str) -> None:
    """`array` holds finite real numbers in `shape` (None: any length)."""
    if array.ndim != len(shape) or any(want not in (None, got) for got, want in zip(array.shape, shape)):
        expected = ", ".join("any" if n is None else str(n) for n in shape)
        raise _bad(path, key, f"has shape {array.shape}, expected ({expected}) ({what})")
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise _bad(path, key, f"must hold finite numbers, not {array.dtype}")


def _check_models(folder: Path, model: ItemModel, visual: ItemModel) -> None:
    """model.npz and visual.npz: neighbour models over one item space, every array sized to it."""
    for name, loaded, kind in (("model.npz", model, NeighbourModel), ("visual.npz", visual, VisualModel)):
        path = folder / name
        if not isinstance(loaded, kind):
            raise _bad(path, "kind", f"must name a {'visual' if kind is VisualModel else 'behaviour'} model, "
                                     f"not {loaded.kind!r}")
        _check_ids(path, "item_ids", loaded.item_ids)
        n = len(model.item_ids)
        if name == "visual.npz" and not np.array_equal(loaded.item_ids, model.item_ids):
            raise _bad(path, "item_ids", "differs from the item_ids of model.npz")
        items = f"one row per item of item_ids, {n}"
        if loaded.similarity.shape != (n, n):
            raise _bad(path, "similarity_shape", f"is {loaded.similarity.shape}, expected ({n}, {n}) "
                                                 f"({items})")
        if loaded.popularity is not None:
            _check_numbers(path, "popularity", loaded.popularity, (n,), items)
        if isinstance(loaded, AlsModel):
            _check_numbers(path, "item_factors", loaded.item_factors, (n, None), items)
        for key, value in loaded.params().items():  # the constructor took them unchecked
            if not (value in WEIGHTINGS if key == "weighting" else
                    isinstance(value, str) or _is_number(value) and value >= 0):
                raise _bad(path, "params", f"holds {key} = {value!r}")


def _check_interactions(path: Path, interactions: Interactions, item_ids: np.ndarray) -> None:
    _check_ids(path, "user_ids", interactions.user_ids)
    if not np.array_equal(interactions.item_ids, item_ids):
        raise _bad(path, "item_ids", "differs from the item_ids of model.npz")
    shape = (len(interactions.user_ids), len(item_ids))
    for key, matrix in (("matrix", interactions.matrix), ("recent", interactions.recent)):
        if matrix.shape != shape:
            raise _bad(path, f"{key}_shape", f"is {matrix.shape}, expected {shape} (a row per user of "
                                             "user_ids, a column per item of model.npz)")
    _check_numbers(path, "trending", interactions.trending, (shape[1],), "one per item of model.npz")


def _check_donors(path: Path, donors: sp.csr_matrix | None, factors: ColdFactors | None, n: int) -> None:
    if donors is not None and donors.shape != (n, n):
        raise _bad(path, "donors_shape", f"is {donors.shape}, expected ({n}, {n}): the items of model.npz")
    if factors is not None:
        _check_numbers(path, "cold_item_factors", factors.item_factors, (n, None),
                       "a row per item of model.npz")
        _check_numbers(path, "cold_fold", factors.fold, (factors.item_factors.shape[1], n),
                       "factors x items, as cold_item_factors")
        if factors.weighting not in WEIGHTINGS:
            raise _bad(path, "cold_weighting",
                       f"must be one of {', '.join(WEIGHTINGS)}, not {factors.weighting!r}")


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
