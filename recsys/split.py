"""Train/test splits of events over (user, item) pairs.

random: a random `test_frac` of the distinct (user, item) pairs, with all their events, is held
out. temporal: one global cutoff time (the `1 - test_frac` quantile of event times); events
before it train, and the pairs first seen at or after it are the test, so nothing from the
future leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.errors import InputError

SPLITS = ("random", "temporal")


@dataclass
class Split:
    kind: str
    train: pd.DataFrame  # events
    test: pd.DataFrame  # distinct (user_id, item_id) pairs held out
    test_events: int


def split_events(events: pd.DataFrame, kind: str = "random", test_frac: float = 0.2,
                 seed: int = 0) -> Split:
    if kind not in SPLITS:
        raise InputError(f"--split {kind!r}: expected one of {list(SPLITS)}")
    if not 0.0 < test_frac < 1.0:
        raise InputError(f"--test-frac {test_frac}: must lie strictly between 0 and 1")
    pairs = events.groupby(["user_id", "item_id"], sort=False).timestamp.min().reset_index()
    if kind == "random":
        rng = np.random.default_rng(seed)
        held = rng.random(len(pairs)) < test_frac
        test = pairs[held][["user_id", "item_id"]]
        key = pd.MultiIndex.from_frame(events[["user_id", "item_id"]])
        in_test = key.isin(pd.MultiIndex.from_frame(test))
        train = events[~in_test]
        test_events = int(in_test.sum())
    else:
        cutoff = np.quantile(events.timestamp.to_numpy(), 1.0 - test_frac, method="higher")
        train = events[events.timestamp < cutoff]
        test = pairs[pairs.timestamp >= cutoff][["user_id", "item_id"]]
        test_events = int((events.timestamp >= cutoff).sum())
    if len(train) == 0 or len(test) == 0:
        raise InputError(f"{kind} split with test fraction {test_frac} leaves an empty train or test set")
    return Split(kind, train.reset_index(drop=True), test.reset_index(drop=True), test_events)
