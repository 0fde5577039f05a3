"""Recommender models behind one interface (see base.py): popularity, co-occurrence, EASE,
visual neighbours and the hybrid blend."""

from __future__ import annotations

from typing import Any

from recsys.errors import InputError
from recsys.models.base import MODEL_TYPES, ItemModel, NeighbourModel
from recsys.models.cooccurrence import CooccurrenceModel
from recsys.models.ease import EaseModel
from recsys.models.hybrid import HybridModel
from recsys.models.popularity import PopularityModel
from recsys.models.visual import VisualModel

BEHAVIOUR_MODELS = ("cooc", "ease")


def make_behaviour_model(name: str, **params: Any) -> NeighbourModel:
    """`cooc` or `ease` by name; `auto` picks EASE for catalogues it can hold, else co-occurrence."""
    if name not in BEHAVIOUR_MODELS:
        raise InputError(f"--model {name!r}: expected one of {list(BEHAVIOUR_MODELS)} or auto")
    return MODEL_TYPES[name](**params)


def auto_behaviour_model(n_items: int, ease_max_items: int = 20000) -> str:
    return "ease" if n_items <= ease_max_items else "cooc"


__all__ = [
    "BEHAVIOUR_MODELS", "CooccurrenceModel", "EaseModel", "HybridModel", "ItemModel", "NeighbourModel",
    "PopularityModel", "VisualModel", "auto_behaviour_model", "make_behaviour_model",
]
