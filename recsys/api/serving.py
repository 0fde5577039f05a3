"""One loaded version as the API serves it: its answers, each item's metadata as JSON, cached answers.

This is the API's edge of the answer path: `recsys.answers.Answers` decides which items come back
and in what order; a `Snapshot` joins each row with the item's display metadata (recsys/api/metadata.py)
and writes the JSON.

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

from recsys.answers import Answer, Answers
from recsys.api.cache import DEFAULT_MAX_K, AnswerCache
from recsys.api.metadata import DisplayMetadata

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    version: str
    answers: Answers
    # Each item's display metadata as JSON object members (`"category":"bags",...`), assembled
    # when an answer shows the item from columns prepared once per version.
    metadata: DisplayMetadata
    cache: AnswerCache = field(default_factory=lambda: AnswerCache(0))
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, store: Path, version: str | None = None, cache_bytes: int = 256 << 20,
             cache_max_k: int = DEFAULT_MAX_K) -> Snapshot:
        """Load a version (None: the one CURRENT names); raises IndexLoadError when it cannot."""
        started = time.perf_counter()
        answers = Answers.load(store, version)
        metadata = DisplayMetadata(answers.index.items)
        log.info("loaded version %s: %d items in %.2f s", answers.version, len(answers),
                 time.perf_counter() - started)
        return cls(answers.version, answers, metadata, AnswerCache(cache_bytes, cache_max_k))

    def __len__(self) -> int:
        return len(self.answers.item_ids)

    @property
    def index(self) -> LoadedIndex:
        return self.answers.index

    @property
    def item_ids(self) -> list[str]:
        return self.answers.item_ids

    @property
    def columns(self) -> frozenset[str]:
        """The metadata columns shown: an answer's extra field never repeats one."""
        return self.metadata.columns

    def has_item(self, item_id: str) -> bool:
        return item_id in self.answers.row_of

    def members(self, item_id: str) -> bytes:
        """The item's metadata as JSON object members (b"" for none, or an item the version lacks)."""
        row = self.answers.row_of.get(item_id)
        return b"" if row is None else self.metadata.members(row)

    def image(self, item_id: str) -> str | None:
        """The item's image reference from the catalogue (None: the version lacks the item)."""
        row = self.answers.row_of.get(item_id)
        items = self.answers.index.items
        if row is None or "image" not in items:
            return None
        return items["image"].iloc[[row]].astype(str).iloc[0]

    @property
    def has_behaviour(self) -> bool:
        return self.answers.behaviour is not None

    def item_json(self, head: dict[str, Any]) -> orjson.Fragment:
        """`head` (item_id first, then score and the like) followed by the item's metadata."""
        text = orjson.dumps(head)
        members = self.members(head["item_id"])
        return orjson.Fragment(text[:-1] + b"," + members + b"}" if members else text)

    def results(self, answer: Answer) -> bytes:
        """The answer's rows as a JSON array: item_id, score (6 decimals), the row's extra fields,
        `why`, then the item's metadata."""
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
            members = self.members(item_id)
            parts.append(text[:-1] + b"," + members + b"}" if members else text)
        return b"[" + b",".join(parts) + b"]"
