"""Events hygiene before fitting: duplicates, bots (absurd event rates) and optional time decay."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleaningConfig:
    # More events than this by one user within one clock hour (one every 3.6 s) marks a bot.
    bot_events_per_hour: int = 1000
    # Half-life in days of an event's weight, counted back from the newest event; None: no decay.
    decay_half_life_days: float | None = None


def clean_events(events: pd.DataFrame, config: CleaningConfig | None = None) -> pd.DataFrame:
    """Drop exact duplicates and bot users, then apply time decay; returns a new frame."""
    config = config or CleaningConfig()
    before = len(events)
    events = events.drop_duplicates(["user_id", "item_id", "event", "timestamp"])
    duplicates = before - len(events)
    bots = find_bots(events, config.bot_events_per_hour)
    if len(bots):
        events = events[~events.user_id.isin(bots)]
    if duplicates or len(bots):
        log.info("dropped %d duplicate events and %d bot users", duplicates, len(bots))
    if config.decay_half_life_days:
        events = events.assign(weight=events.weight * decay(events.timestamp.to_numpy(),
                                                             int(events.timestamp.max()),
                                                             config.decay_half_life_days))
    return events.reset_index(drop=True)


def find_bots(events: pd.DataFrame, events_per_hour: int) -> np.ndarray:
    """Users with more than `events_per_hour` events in any one clock hour."""
    hourly = events.groupby([events.user_id, events.timestamp // 3600]).size()
    return hourly[hourly > events_per_hour].index.get_level_values(0).unique().to_numpy()


def decay(timestamps: np.ndarray, now: int, half_life_days: float) -> np.ndarray:
    """0.5 ** (age / half-life): an event one half-life old counts half."""
    age_days = np.maximum(now - timestamps, 0) / 86400.0
    return np.power(0.5, age_days / half_life_days)
