"""Recommender models behind one interface (see base.py): popularity, co-occurrence, EASE, the
`implicit` library's item-item cosine/BM25 and ALS, visual neighbours and the hybrid blend.

Behaviour models are named by a short name (`cooc`, `cosine`, `bm25`, `ease`, `als`); each name has
a small grid of settings that validation chooses among (`BEHAVIOUR_GRID`).
"""

from __future__ import annotations

from typing import Any

from recsys.errors import InputError
from recsys.models.base import ItemModel, NeighbourModel
from recsys.models.cooccurrence import CooccurrenceModel
from recsys.models.ease import EaseModel
from recsys.models.hybrid import COLD_MODES, TASTES, HybridModel
from recsys.models.implicit_models import AlsModel, ItemKnnModel
from recsys.models.popularity import PopularityModel
from recsys.models.visual import VisualModel
from recsys.names import BEHAVIOUR_MODELS, DEFAULT_BEHAVIOUR_MODELS

EASE_MAX_ITEMS = 20000

# name -> (model class, default params): what each name means
_KINDS: dict[str, tuple[type[NeighbourModel], dict[str, Any]]] = {
    "cooc": (CooccurrenceModel, {}),
    "cosine": (ItemKnnModel, {"measure": "cosine"}),
    "bm25": (ItemKnnModel, {"measure": "bm25"}),
    "ease": (EaseModel, {}),
    "als": (AlsModel, {}),
}

# name -> the settings validation tries (each merged over the name's defaults)
BEHAVIOUR_GRID: dict[str, list[dict[str, Any]]] = {
    "cooc": [{"shrink": 10.0}, {"shrink": 0.0}],
    "cosine": [{"weighting": "binary"}, {"weighting": "log"}],
    "bm25": [{"weighting": "binary"}, {"weighting": "log"}],
    "ease": [{"l2": 50.0}, {"l2": 200.0}, {"l2": 1000.0}],
    "als": [{"factors": 32, "regularization": 0.05}, {"factors": 64, "regularization": 0.5}],
}


def make_behaviour_model(name: str, **params: Any) -> NeighbourModel:
    """A behaviour model by name (see BEHAVIOUR_MODELS) with `params` over the name's defaults."""
    if name not in _KINDS:
        raise InputError(f"behaviour model {name!r}: expected one of {list(BEHAVIOUR_MODELS)}")
    cls, defaults = _KINDS[name]
    return cls(**{**defaults, **params})


def behaviour_name(model: NeighbourModel) -> str:
    """The short name of a fitted behaviour model (the inverse of make_behaviour_model)."""
    if isinstance(model, ItemKnnModel):
        return model.measure
    return model.kind


def usable_behaviour_models(names: list[str] | tuple[str, ...], n_items: int) -> list[str]:
    """`names` less EASE where the catalogue is too large for its dense items x items matrix."""
    kept = [n for n in names if n != "ease" or n_items <= EASE_MAX_ITEMS]
    return kept or ["cosine"]


def auto_behaviour_model(n_items: int, ease_max_items: int = EASE_MAX_ITEMS) -> str:
    return "ease" if n_items <= ease_max_items else "cosine"


__all__ = [
    "BEHAVIOUR_GRID", "BEHAVIOUR_MODELS", "COLD_MODES", "DEFAULT_BEHAVIOUR_MODELS", "TASTES", "AlsModel",
    "CooccurrenceModel", "EaseModel", "HybridModel", "ItemKnnModel", "ItemModel", "NeighbourModel",
    "PopularityModel", "VisualModel", "auto_behaviour_model", "behaviour_name", "make_behaviour_model",
    "usable_behaviour_models",
]
