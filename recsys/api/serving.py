"""One loaded version as the API serves it: its answers, each item's metadata as JSON, cached answers.

This is the API's edge of the answer path: `recsys.answers.Answers` decides which items come back
and in what order; a `Snapshot` joins each row with the item's display metadata, pre-serialised
once per version, and writes the JSON.

A `Snapshot` is immutable once built. A request takes the current snapshot once and uses it to
the end, so a reload that swaps in a new one never changes an answer half-way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from recsys.answers import Answer, Answers
from recsys.api.cache import DEFAULT_MAX_K, AnswerCache

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

log = logging.getLogger(__name__)

# Catalogue columns that never go out in answers: the image reference is a server-side path
# (the page fetches /v1/items/{id}/image instead); item_id and score are set by the answer.
HIDDEN_COLUMNS = ("image", "item_id", "score")
METADATA_SLICE = 2000


@dataclass
class Snapshot:
    version: str
    answers: Answers
    # item_id -> the item's display metadata as JSON object members (`"category":"bags",...`).
    # Bytes, not dicts: 100,000 dicts would be objects for the garbage collector to walk (long
    # pauses right after a reload), and answers are assembled from these pieces directly.
    meta: dict[str, bytes]
    columns: frozenset[str]  # the metadata columns shown: an answer's extra field never repeats one
    images: dict[str, str]  # item_id -> image reference from the catalogue
    cache: AnswerCache = field(default_factory=lambda: AnswerCache(0))
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, store: Path, version: str | None = None, cache_bytes: int = 256 << 20,
             cache_max_k: int = DEFAULT_MAX_K) -> Snapshot:
        """Load a version (None: the one CURRENT names); raises IndexLoadError when it cannot."""
        started = time.perf_counter()
        answers = Answers.load(store, version)
        items: pd.DataFrame = answers.index.items
        meta, columns = _display_metadata(items, answers.item_ids)
        images = dict(zip(answers.item_ids, items["image"].astype(str))) if "image" in items else {}
        log.info("loaded version %s: %d items in %.2f s", answers.version, len(answers),
                 time.perf_counter() - started)
        return cls(answers.version, answers, meta, columns, images, AnswerCache(cache_bytes, cache_max_k))

    def __len__(self) -> int:
        return len(self.answers.item_ids)

    @property
    def index(self) -> LoadedIndex:
        return self.answers.index

    @property
    def item_ids(self) -> list[str]:
        return self.answers.item_ids

    def has_item(self, item_id: str) -> bool:
        return item_id in self.answers.row_of

    @property
    def has_behaviour(self) -> bool:
        return self.answers.behaviour is not None

    def item_json(self, head: dict[str, Any]) -> orjson.Fragment:
        """`head` (item_id first, then score and the like) followed by the item's metadata."""
        text = orjson.dumps(head)
        members = self.meta.get(head["item_id"], b"")
        return orjson.Fragment(text[:-1] + b"," + members + b"}" if members else text)

    def results(self, answer: Answer) -> bytes:
        """The answer's rows as a JSON array: item_id, score (6 decimals), the row's extra fields,
        `why`, then the item's metadata."""
        meta = self.meta
        parts = []
        extras = answer.extras
        # The common answer (every row's score from one source, no extras): its `why` is built
        # inline, as `Answer.why` would build it; the fast path's per-row budget is microseconds.
        plain = extras is None and answer.sources is None and answer.rules is None
        mode = answer.mode
        for n, (item_id, score) in enumerate(answer.rows):
            if plain:
                score = round(score, 6)
                text = orjson.dumps({"item_id": item_id, "score": score, "why": {"sources": {mode: score}}})
            else:
                head = {"item_id": item_id, "score": round(score, 6)}
                if extras is not None:
                    head.update({k: v for k, v in extras[n].items()
                                 if k not in head and k not in self.columns})
                head["why"] = answer.why(n)
                text = orjson.dumps(head)
            members = meta.get(item_id)
            parts.append(text[:-1] + b"," + members + b"}" if members else text)
        return b"[" + b",".join(parts) + b"]"


def _display_metadata(items: pd.DataFrame, item_ids: list[str]) -> tuple[dict[str, bytes], frozenset[str]]:
    """Per item, its metadata as JSON object members (missing values left out, times in ISO), and
    the columns shown."""
    shown = items.drop(columns=[c for c in HIDDEN_COLUMNS if c in items.columns])
    columns = frozenset(str(c) for c in shown.columns)
    if shown.shape[1] == 0:
        return {}, columns
    meta: dict[str, bytes] = {}
    # pandas' JSON writer turns every dtype (numpy ints, NaN, timestamps) into plain JSON at C
    # speed. It holds the GIL while it runs, so a reload beside a busy event loop does it in
    # slices: each pause it causes stays a few milliseconds.
    for start in range(0, len(shown), METADATA_SLICE):
        part = shown.iloc[start:start + METADATA_SLICE]
        records = orjson.loads(part.to_json(orient="records", date_format="iso"))
        for item_id, record in zip(item_ids[start:start + METADATA_SLICE], records):
            meta[item_id] = orjson.dumps({k: v for k, v in record.items() if v is not None})[1:-1]
    return meta, columns
