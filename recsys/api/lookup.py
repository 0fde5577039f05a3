"""Answers to similar-item queries, shared by GET and POST: mode choice, filters, caching.

Unfiltered visual queries are a lookup in the version's precomputed neighbour lists and run on
the event loop; live searches (filters, raw vectors, behaviour models) run in worker threads so
they never block it, and their answers are kept per version in a small LRU, as bytes.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import orjson

from recsys.api.errors import ApiError
from recsys.api.serving import Snapshot

NO_BEHAVIOUR = "no behaviour data in this version: answered by image similarity"


def parse_exclude(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))


def answering_mode(snapshot: Snapshot, mode: str) -> tuple[str, str | None]:
    """The mode that will answer and, when it differs from the request, why."""
    if mode == "visual" or snapshot.has_behaviour:
        return mode, None
    return "visual", NO_BEHAVIOUR


def cached_similar(snapshot: Snapshot, item_id: str, k: int, mode: str,
                   exclude: tuple[str, ...], category: str | None) -> bytes | None:
    return snapshot.cache.get(("similar", item_id, k, mode, exclude, category))


def fast_similar(snapshot: Snapshot, item_id: str, k: int, mode: str,
                 exclude: tuple[str, ...], category: str | None) -> bytes | None:
    """The answer from precomputed neighbour lists when the query allows it, else None."""
    used, note = answering_mode(snapshot, mode)
    if used != "visual" or exclude or category is not None:
        return None
    pairs = snapshot.precomputed(item_id, k)
    if pairs is None:
        return None
    # Not cached: the lookup is about as cheap as the cache, and would only fill it.
    return _finish(snapshot, item_id, k, mode, exclude, category, used, note, pairs, cache=False)


def similar(snapshot: Snapshot, item_id: str, k: int, mode: str,
            exclude: tuple[str, ...], category: str | None) -> bytes:
    """The full answer (blocking: call from a worker thread)."""
    used, note = answering_mode(snapshot, mode)
    if used == "visual":
        pairs: Any = snapshot.precomputed(item_id, k) if not (exclude or category) else None
        if pairs is None:
            pairs = snapshot.visual_similar(item_id, k, exclude, category)
    else:
        pairs = snapshot.recommender.similar(item_id, k=k, mode=used, exclude=list(exclude),
                                             category=category)
    return _finish(snapshot, item_id, k, mode, exclude, category, used, note, pairs)


def _finish(snapshot: Snapshot, item_id: str, k: int, mode: str, exclude: tuple[str, ...],
            category: str | None, used: str, note: str | None, pairs: Any, cache: bool = True) -> bytes:
    body = orjson.dumps({
        "item_id": item_id,
        "version": snapshot.version,
        "mode": used,
        "requested_mode": mode,
        "note": note,
        "results": snapshot.results(pairs),
    })
    if cache:
        snapshot.cache.put(("similar", item_id, k, mode, exclude, category), body)
    return body


async def similar_answer(snapshot: Snapshot, item_id: str, k: int, mode: str,
                         exclude: tuple[str, ...], category: str | None,
                         limiter: anyio.CapacityLimiter) -> bytes:
    """GET similar: cache, then precomputed lists, then a live search in a worker thread."""
    if not snapshot.has_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r} in version {snapshot.version}",
                       code="unknown_item")
    body = cached_similar(snapshot, item_id, k, mode, exclude, category)
    if body is None:
        body = fast_similar(snapshot, item_id, k, mode, exclude, category)
    if body is None:
        body = await anyio.to_thread.run_sync(
            similar, snapshot, item_id, k, mode, exclude, category, limiter=limiter)
    return body


def batch_by_ids(snapshot: Snapshot, item_ids: list[str], k: int, mode: str,
                 exclude: tuple[str, ...], category: str | None) -> dict[str, Any]:
    used, note = answering_mode(snapshot, mode)
    queries = []
    for item_id in item_ids:
        if not snapshot.has_item(item_id):
            queries.append({"item_id": item_id, "error": "unknown item_id", "results": []})
            continue
        body = cached_similar(snapshot, item_id, k, mode, exclude, category)
        if body is None:
            body = similar(snapshot, item_id, k, mode, exclude, category)
        queries.append({"item_id": item_id, "error": None, "results": orjson.loads(body)["results"]})
    return {"version": snapshot.version, "mode": used, "requested_mode": mode, "note": note,
            "queries": queries}


def batch_by_vector(snapshot: Snapshot, vector: list[float], k: int, mode: str,
                    exclude: tuple[str, ...], category: str | None) -> dict[str, Any]:
    """A raw query vector: image similarity only (behaviour models know items, not vectors)."""
    xq = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if xq.shape[1] != snapshot.index.dim:
        raise ApiError(422, f"vector has {xq.shape[1]} dimensions but version {snapshot.version} "
                            f"has {snapshot.index.dim}", code="invalid_request")
    norm = float(np.linalg.norm(xq))
    if not np.isfinite(norm) or norm == 0.0:
        raise ApiError(422, "vector must be finite and not all zero", code="invalid_request")
    pairs = search_vectors(snapshot, xq / norm, k, exclude, category)[0]
    note = None if mode == "visual" else "a raw vector is answered by image similarity"
    return {"version": snapshot.version, "mode": "visual", "requested_mode": mode, "note": note,
            "queries": [{"item_id": None, "error": None, "results": snapshot.results(pairs)}]}


def search_vectors(snapshot: Snapshot, xq: np.ndarray, k: int, exclude: tuple[str, ...] = (),
                   category: str | None = None) -> list[list[tuple[str, float]]]:
    """Nearest items to unit vectors, over-fetching to make room for the filters."""
    if not exclude and category is None:
        return snapshot.vector_search(xq, k)
    fetch = min(len(snapshot), max(4 * k, k + len(exclude)) if category is None else max(20 * k, 200))
    found = snapshot.vector_search(xq, fetch)
    banned = set(exclude)
    out = []
    for row in found:
        kept = [(i, s) for i, s in row if i not in banned
                and (category is None or snapshot.category_of(i) == category)]
        out.append(kept[:k])
    return out
