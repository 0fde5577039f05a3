"""Events as integer codes: what reading a large events file keeps in memory, and its cleaning.

A frame of 50M events holds 100M Python strings (several GB); the same events as codes take 25
bytes each (user and item int32, event kind int8, timestamp int64, weight float64). A file is read
in chunks (recsys.events.iter_events): each chunk's ids are mapped to codes and the chunk is
dropped, so memory follows the number of events, never the size of a frame of them.

`EventCodes.clean` keeps what recsys.cleaning.clean_events keeps of the same events, and
`EventCodes.interactions` builds the same matrices as recsys.interactions.from_events on that
cleaned frame (same user and item order: first appearance), so a fit from a file in chunks equals a
fit from the whole frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.cleaning import CleaningConfig, decay
from recsys.events import iter_events
from recsys.interactions import Interactions, from_codes

log = logging.getLogger(__name__)


@dataclass
class EventCodes:
    users: np.ndarray  # (n_users,) str, in order of first appearance
    items: np.ndarray  # (n_items,) str: the given item space, then unseen event items by first appearance
    known_items: int  # how many leading entries of `items` were given (they stay, with or without events)
    kinds: np.ndarray  # (n_kinds,) str: event kinds (view, click, ...)
    user: np.ndarray  # (n_events,) int32 codes into users
    item: np.ndarray  # (n_events,) int32 codes into items
    kind: np.ndarray  # (n_events,) int8 codes into kinds
    timestamp: np.ndarray  # (n_events,) int64 epoch seconds
    weight: np.ndarray  # (n_events,) float64

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def read(cls, chunks: Iterable[pd.DataFrame],
             item_ids: np.ndarray | list[str] | None = None) -> EventCodes:
        """Validated event frames (recsys.events) to codes, one chunk at a time."""
        encoder = _Encoder(item_ids)
        for chunk in chunks:
            encoder.add(chunk)
        return encoder.finish()

    def clean(self, config: CleaningConfig | None = None) -> EventCodes:
        """Exact duplicates and bot users dropped, then time decay: as clean_events on the frame."""
        config = config or CleaningConfig()
        n = len(self)
        pair = self.user.astype(np.int64) * max(len(self.items), 1) + self.item
        order = np.lexsort((self.timestamp, self.kind, pair))  # stable: the first of equals first
        same = ((pair[order[1:]] == pair[order[:-1]]) & (self.kind[order[1:]] == self.kind[order[:-1]])
                & (self.timestamp[order[1:]] == self.timestamp[order[:-1]]))
        keep = np.ones(n, dtype=bool)
        keep[order[1:][same]] = False
        del pair, order, same
        duplicates = n - int(keep.sum())
        bots = _bots(self.user[keep], self.timestamp[keep], config.bot_events_per_hour)
        if len(bots):
            keep &= ~np.isin(self.user, bots)
        if duplicates or len(bots):
            log.info("dropped %d duplicate events and %d bot users", duplicates, len(bots))
        out = self._subset(keep)
        if config.decay_half_life_days:
            newest = int(out.timestamp.max())
            out.weight = out.weight * decay(out.timestamp, newest, config.decay_half_life_days)
        return out

    def user_sample(self, events: int, seed: int = 0) -> pd.DataFrame:
        """The events of a random sample of users (whole histories, about `events` events in all) as
        a frame with recsys.events' columns, in file order: what settings are chosen on at scale."""
        share = min(1.0, events / max(len(self), 1))
        picked = np.random.default_rng(seed).random(len(self.users)) < share
        rows = np.flatnonzero(picked[self.user])
        return pd.DataFrame({"user_id": self.users[self.user[rows]].astype(object),
                             "item_id": self.items[self.item[rows]].astype(object),
                             "timestamp": self.timestamp[rows],
                             "event": self.kinds[self.kind[rows]].astype(object),
                             "weight": self.weight[rows]})

    def interactions(self, recency_half_life_days: float | None = 14.0,
                     trending_half_life_days: float = 30.0) -> Interactions:
        """The user x item matrices (recsys.interactions.from_codes)."""
        return from_codes(self.user, self.users, self.item, self.items, self.weight, self.timestamp,
                          recency_half_life_days, trending_half_life_days)

    def _subset(self, keep: np.ndarray) -> EventCodes:
        """The kept events, users and unseen items renumbered by first appearance among them."""
        user, item = self.user[keep], self.item[keep]
        user_new, user_order = _first_appearance(user, len(self.users))
        known = self.known_items
        extra = item >= known
        extra_new, extra_order = _first_appearance(item[extra] - known, len(self.items) - known)
        item = item.copy()
        item[extra] = extra_new[item[extra] - known] + known
        items = np.concatenate([self.items[:self.known_items], self.items[self.known_items:][extra_order]])
        return EventCodes(_strings(self.users[user_order]), _strings(items), self.known_items, self.kinds,
                          user_new[user].astype(np.int32), item.astype(np.int32), self.kind[keep],
                          self.timestamp[keep], self.weight[keep])


def read_interactions(path: str | Path, item_ids: np.ndarray | list[str] | None = None,
                      recency_half_life_days: float | None = 14.0, cleaning: CleaningConfig | None = None,
                      event_weights: Mapping[str, float] | None = None,
                      batch_rows: int = 1_000_000) -> Interactions:
    """An events file to cleaned interactions, read `batch_rows` rows at a time: the same result as
    from_events(clean_events(load_events(path)), ...) in a fraction of the memory."""
    codes = EventCodes.read(iter_events(path, event_weights, batch_rows), item_ids)
    log.info("%s: %d events, %d users, %d items as codes", path, len(codes), len(codes.users),
             len(codes.items))
    return codes.clean(cleaning).interactions(recency_half_life_days)


class _Encoder:
    """Maps each chunk's ids to codes: given items by a fixed index, everything else by first sight."""

    def __init__(self, item_ids: np.ndarray | list[str] | None) -> None:
        self.known = pd.Index(np.asarray(list(item_ids) if item_ids is not None else [], dtype=str))
        self.user_codes: dict[str, int] = {}
        self.extra_codes: dict[str, int] = {}
        self.kind_codes: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, chunk: pd.DataFrame) -> None:
        user = _lookup(chunk.user_id, self.user_codes, 0)
        item = self.known.get_indexer(chunk.item_id) if len(self.known) else np.full(len(chunk), -1)
        unseen = item < 0
        if unseen.any():
            item[unseen] = _lookup(chunk.item_id[unseen], self.extra_codes, len(self.known))
        kind = _lookup(chunk.event, self.kind_codes, 0)
        if len(self.kind_codes) > 127:
            raise ValueError("more than 127 event kinds")
        self.parts.append((user.astype(np.int32), item.astype(np.int32), kind.astype(np.int8),
                           chunk.timestamp.to_numpy(np.int64), chunk.weight.to_numpy(np.float64)))

    def finish(self) -> EventCodes:
        columns = [np.concatenate([part[c] for part in self.parts]) if self.parts else np.zeros(0)
                   for c in range(5)]
        self.parts = []
        items = np.concatenate([self.known.to_numpy(dtype=str), np.array(list(self.extra_codes), dtype=str)])
        return EventCodes(np.array(list(self.user_codes), dtype=str), _strings(items), len(self.known),
                          np.array(list(self.kind_codes), dtype=str), *columns)


def _lookup(values: pd.Series, codes: dict[str, int], offset: int) -> np.ndarray:
    """Codes of `values`, new ones numbered on from `offset + len(codes)` in order of first appearance."""
    local, uniques = pd.factorize(values, sort=False)
    table = np.fromiter((codes.setdefault(u, offset + len(codes)) for u in uniques), dtype=np.int64,
                        count=len(uniques))
    return table[local]


def _first_appearance(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(new code per old code, -1 where absent; old codes in order of first appearance)."""
    present, first = np.unique(codes, return_index=True)
    order = present[np.argsort(first, kind="stable")]
    new = np.full(n, -1, dtype=np.int64)
    new[order] = np.arange(len(order))
    return new, order


def _bots(user: np.ndarray, timestamp: np.ndarray, events_per_hour: int) -> np.ndarray:
    """Codes of users with more than `events_per_hour` events in any one clock hour."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int32)
    hour = timestamp // 3600
    low = int(hour.min())
    span = int(hour.max()) - low + 1
    key = user.astype(np.int64) * span + (hour - low)
    keys, counts = np.unique(key, return_counts=True)
    return np.unique(keys[counts > events_per_hour] // span).astype(np.int32)


def _strings(values: np.ndarray) -> np.ndarray:
    """A str array as narrow as its longest value (what np.array(list_of_str) gives)."""
    return np.array(values.tolist(), dtype=str) if len(values) else np.zeros(0, dtype=str)
