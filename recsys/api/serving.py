"""One loaded index version as the API serves it: the index, display metadata, cached answers.

A `Snapshot` is immutable once built. A request takes the current snapshot once and uses it to
the end, so a reload that swaps in a new one never changes an answer half-way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from recsys.api.cache import AnswerCache

log = logging.getLogger(__name__)

# Catalogue columns that never go out in answers: the image reference is a server-side path
# (the page fetches /v1/items/{id}/image instead); item_id and score are set by the answer.
HIDDEN_COLUMNS = ("image", "item_id", "score")
METADATA_SLICE = 2000


@dataclass
class Snapshot:
    version: str
    index: Any  # index.store.LoadedIndex
    # item_id -> the item's display metadata as JSON object members (`"category":"bags",...`).
    # Bytes, not dicts: 100,000 dicts would be objects for the garbage collector to walk (long
    # pauses right after a reload), and answers are assembled from these pieces directly.
    meta: dict[str, bytes]
    categories: dict[str, str]  # item_id -> category, where the catalogue has one
    images: dict[str, str]  # item_id -> image reference from the catalogue
    item_ids: list[str]  # in index row order
    rows: dict[str, int]  # item_id -> row
    recommender: Any | None = None  # recsys.service.Recommender when behaviour data exists
    recommender_error: str | None = None
    cache: AnswerCache = field(default_factory=lambda: AnswerCache(0))
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, store: Path, version: str | None = None, cache_size: int = 50_000) -> Snapshot:
        """Load a version (None: the one CURRENT names); raises IndexLoadError when it cannot."""
        from index.store import load_version

        started = time.perf_counter()
        index = load_version(store, version)
        items: pd.DataFrame = index.items
        item_ids = items["item_id"].astype(str).tolist()
        meta = _display_metadata(items, item_ids)
        categories = (dict(zip(item_ids, items["category"].astype(str))) if "category" in items else {})
        images = dict(zip(item_ids, items["image"].astype(str))) if "image" in items else {}
        recommender, recommender_error = _load_recommender(store, index)
        log.info("loaded version %s: %d items in %.2f s", index.version, len(item_ids),
                 time.perf_counter() - started)
        rows = {item_id: row for row, item_id in enumerate(item_ids)}
        return cls(str(index.version), index, meta, categories, images, item_ids, rows, recommender,
                   recommender_error, AnswerCache(cache_size))

    def __len__(self) -> int:
        return len(self.item_ids)

    def precomputed(self, item_id: str, k: int) -> list[tuple[str, float]] | None:
        """The k nearest items from the version's stored neighbour lists (the query item left
        out), or None when the version has none or they are shorter than k."""
        neighbours = getattr(self.index, "neighbours", None)
        if neighbours is None:
            return None
        width = neighbours.shape[1]
        complete = width >= len(self.item_ids) - 1  # the lists hold every other item
        if k > width and not complete:
            return None
        row = self.rows[item_id]
        ids = self.item_ids
        pairs = []
        for r, score in zip(neighbours[row].tolist(), self.index.neighbour_scores[row].tolist()):
            if r >= 0 and r != row:
                pairs.append((ids[r], round(score, 6)))
                if len(pairs) == k:
                    return pairs
        return pairs if complete else None

    def has_item(self, item_id: str) -> bool:
        return item_id in self.rows

    @property
    def has_behaviour(self) -> bool:
        return self.recommender is not None

    def item_json(self, head: dict[str, Any]) -> orjson.Fragment:
        """`head` (item_id first, then score and the like) followed by the item's metadata."""
        text = orjson.dumps(head)
        members = self.meta.get(head["item_id"], b"")
        return orjson.Fragment(text[:-1] + b"," + members + b"}" if members else text)

    def metadata(self, item_id: str) -> dict[str, Any]:
        return orjson.loads(b"{" + self.meta.get(item_id, b"") + b"}")

    def category_of(self, item_id: str) -> str | None:
        return self.categories.get(item_id)

    def results(self, pairs: list[tuple[str, float]] | list[dict[str, Any]]) -> list[orjson.Fragment]:
        """Answer rows: item_id, score, then the item's metadata (ready JSON, for orjson)."""
        rows = []
        for pair in pairs:
            if isinstance(pair, dict):  # the recommender's rows: keep its own fields (source)
                item_id = str(pair["item_id"])
                shown = self.meta.get(item_id)
                known = self.metadata(item_id) if shown else {}
                head = {"item_id": item_id, "score": round(float(pair.get("score", 0.0)), 6)}
                head.update({k: _plain(v) for k, v in pair.items()
                             if k not in head and k not in HIDDEN_COLUMNS and k not in known})
            else:
                item_id, score = pair
                head = {"item_id": item_id, "score": round(float(score), 6)}
            rows.append(self.item_json(head))
        return rows

    def visual_similar(self, item_id: str, k: int, exclude: tuple[str, ...] = (),
                       category: str | None = None) -> list[tuple[str, float]]:
        """Nearest items by image; raises KeyError for an unknown item."""
        where = None
        if category is not None:
            where = _category_filter(category)
        return [(str(i), float(s)) for i, s in self.index.similar(item_id, k, exclude=exclude, where=where)]

    def vector_search(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        scores, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return [[(str(i), float(s)) for i, s in zip(row_ids, row_scores) if i != ""]
                for row_ids, row_scores in zip(ids, scores)]


def _category_filter(category: str):
    def where(items: pd.DataFrame) -> pd.Series:
        if "category" not in items:
            return pd.Series(False, index=items.index)
        return items["category"].astype(str) == category

    return where


def _display_metadata(items: pd.DataFrame, item_ids: list[str]) -> dict[str, bytes]:
    """Per item, its metadata as JSON object members (missing values left out, times in ISO)."""
    shown = items.drop(columns=[c for c in HIDDEN_COLUMNS if c in items.columns])
    if shown.shape[1] == 0:
        return {}
    meta: dict[str, bytes] = {}
    # pandas' JSON writer turns every dtype (numpy ints, NaN, timestamps) into plain JSON at C
    # speed. It holds the GIL while it runs, so a reload beside a busy event loop does it in
    # slices: each pause it causes stays a few milliseconds.
    for start in range(0, len(shown), METADATA_SLICE):
        part = shown.iloc[start:start + METADATA_SLICE]
        records = orjson.loads(part.to_json(orient="records", date_format="iso"))
        for item_id, record in zip(item_ids[start:start + METADATA_SLICE], records):
            meta[item_id] = orjson.dumps({k: v for k, v in record.items() if v is not None})[1:-1]
    return meta


def _load_recommender(store: Path, index: Any) -> tuple[Any | None, str | None]:
    """The behaviour-aware recommender for this version, or None with the reason."""
    try:
        from recsys.service import Recommender  # lands with the recommender; optional until then
    except ImportError:
        return None, "the behaviour recommender is not installed in this build"
    try:
        return Recommender.load(store, index.version, index=index), None
    except Exception as exc:  # noqa: BLE001 - no behaviour data must not stop visual serving
        log.warning("version %s: no behaviour recommender (%s)", index.version, exc)
        return None, f"no behaviour data for version {index.version}: {exc}"


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, NaN to None: what orjson can write."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
