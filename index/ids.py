"""Stable int64 FAISS ids for string item ids.

The id is a hash of the item id, so the same item gets the same FAISS id in every version and
every store, with no id table to carry from version to version (and none lost to retention).
63 bits keep it positive (FAISS uses -1 for "no result"); a collision is refused, never ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from index.errors import InputError

_MASK = (1 << 63) - 1


def stable_id(item_id: str) -> int:
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK


def stable_ids(item_ids: Iterable[str]) -> np.ndarray:
    """int64 ids for the item ids; InputError on a duplicate item id or a hash collision."""
    item_ids = list(item_ids)
    fids = np.fromiter((stable_id(i) for i in item_ids), dtype=np.int64, count=len(item_ids))
    uniq, first, counts = np.unique(fids, return_index=True, return_counts=True)
    if len(uniq) != len(fids):
        dup = fids[np.nonzero(np.isin(fids, uniq[counts > 1]))[0]]
        rows = [i for i, f in enumerate(fids) if f == dup[0]]
        names = sorted({item_ids[r] for r in rows})
        what = "duplicate item_id" if len(names) == 1 else "item ids whose 63-bit hashes collide"
        raise InputError(f"{what}: {', '.join(map(repr, names))}")
    return fids
