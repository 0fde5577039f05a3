"""Similar-item and session answers as the API sends them, shared by the fast path and the
routes: constraints, cache, answer, JSON. What comes back is decided by `recsys.answers`; this
module only picks where to call it and keeps finished results per version in a small LRU, as bytes.

Where: a bounded image-similarity answer (a filtered search or a session of at most INLINE_K_MAX
items, neither grouped nor diversified, over at most INLINE_ITEMS_MAX items) costs well under a
millisecond, less than the hop to a worker thread and back under load, so it runs on the event
loop. Everything else (behaviour and hybrid models scoring every item they know, group_by and
diversity, which may widen the search many times, long answers, large catalogues whose exact
scans under a filter are longer) runs in worker threads, where it cannot hold up the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
import numpy as np
import orjson

from index.lru import MISSING, LockedLRU
from recsys.answers import NO_CONSTRAINTS, Constraints
from recsys.api.errors import ApiError
from recsys.api.serving import Snapshot
from recsys.errors import InputError, UnknownItem
from recsys.filters import Filter, parse_filter

FILTER_TEXTS = 256  # parsed `filter` query strings kept (each at most 20,000 characters)
INLINE_K_MAX = 100
INLINE_ITEMS_MAX = 250_000
_filters: LockedLRU[Filter | None] = LockedLRU(FILTER_TEXTS)


def parse_exclude(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def constraints(snapshot: Snapshot, exclude: Iterable[str] = (), category: str | None = None,
                filter: str | dict[str, Any] | None = None,  # shadows the builtin: the API's name
                group_by: str | None = None, diversity: float = 0.0) -> Constraints:
    """The request's constraints, checked against the serving version's catalogue: a malformed
    filter or an unknown column is a 422 naming it."""
    try:
        if isinstance(filter, str):
            filter = _parsed_filter(filter)
        result = Constraints.of(exclude, category, filter=filter, group_by=group_by, diversity=diversity)
        snapshot.answers.check(result)
    except InputError as exc:
        raise ApiError(422, str(exc), code="invalid_request") from None
    return result


def _parsed_filter(text: str) -> Filter | None:
    """parse_filter, kept per text: a shop's pages send the same few filters again and again."""
    parsed = _filters.get(text)
    if parsed is MISSING:
        parsed = _filters.put(text, parse_filter(text))  # InputError: not kept
    return parsed  # type: ignore[return-value]


def runs_inline(snapshot: Snapshot, mode: str, k: int, constraints: Constraints) -> bool:
    """Whether this answer is computed on the event loop rather than in a worker thread (see above)."""
    return (k <= INLINE_K_MAX and not constraints.arranges and len(snapshot) <= INLINE_ITEMS_MAX
            and snapshot.answers.answering_mode(mode)[0] == "visual")


def _key(item_id: str, k: int, mode: str, constraints: Constraints) -> tuple:
    return ("similar", item_id, k, mode, constraints)


def similar_body(snapshot: Snapshot, item_id: str, mode: str, results: bytes) -> bytes:
    """The GET similar answer around a results array."""
    used, note = snapshot.answers.answering_mode(mode)
    return orjson.dumps({"item_id": item_id, "version": snapshot.version, "mode": used,
                         "requested_mode": mode, "note": note, "results": orjson.Fragment(results)})


def quick_results(snapshot: Snapshot, item_id: str, k: int, mode: str,
                  constraints: Constraints) -> bytes | None:
    """The results array when it needs no live search (cache, or the stored neighbour lists for
    an unconstrained query), else None. Cheap: runs on the event loop."""
    results = snapshot.cache.get(_key(item_id, k, mode, constraints))
    if results is None and constraints == NO_CONSTRAINTS:
        answer = snapshot.answers.stored_similar(item_id, k, mode)
        # Not cached: the lookup is about as cheap as the cache, and would only fill it.
        results = None if answer is None else snapshot.results(answer)
    return results


def similar_results(snapshot: Snapshot, item_id: str, k: int, mode: str, constraints: Constraints) -> bytes:
    """The results array (blocking: call from a worker thread), through the cache."""
    key = _key(item_id, k, mode, constraints)
    results = snapshot.cache.get(key)
    if results is None:
        results = snapshot.results(snapshot.answers.similar(item_id, k, mode, constraints))
        snapshot.cache.put(key, results, k=k)
    return results


async def similar_answer(snapshot: Snapshot, item_id: str, k: int, mode: str, constraints: Constraints,
                         limiter: anyio.CapacityLimiter) -> bytes:
    """GET similar: cache and stored lists, then a live search in a worker thread."""
    if not snapshot.has_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r} in version {snapshot.version}",
                       code="unknown_item")
    results = quick_results(snapshot, item_id, k, mode, constraints)
    if results is None:
        if runs_inline(snapshot, mode, k, constraints):
            results = similar_results(snapshot, item_id, k, mode, constraints)
        else:
            results = await anyio.to_thread.run_sync(
                similar_results, snapshot, item_id, k, mode, constraints, limiter=limiter)
    return similar_body(snapshot, item_id, mode, results)


async def session_answer(snapshot: Snapshot, positive: list[str], negative: list[str], k: int, mode: str,
                         constraints: Constraints, limiter: anyio.CapacityLimiter) -> bytes:
    """POST /v1/recommend: ids the version does not know are listed in `unknown`; 404 when no
    positive is known."""
    unknown = [i for i in dict.fromkeys(positive + negative) if not snapshot.answers.knows(i)]
    if all(i in unknown for i in positive):
        raise ApiError(404, f"no positive item is known to version {snapshot.version}", code="unknown_item",
                       unknown=unknown)
    if runs_inline(snapshot, mode, k, constraints):
        return _session(snapshot, positive, negative, k, mode, constraints, unknown)
    return await anyio.to_thread.run_sync(_session, snapshot, positive, negative, k, mode, constraints,
                                          unknown, limiter=limiter)


def _session(snapshot: Snapshot, positive: list[str], negative: list[str], k: int, mode: str,
             constraints: Constraints, unknown: list[str]) -> bytes:
    try:
        answer = snapshot.answers.session(positive, negative, k, mode, constraints)
    except UnknownItem:  # known to the behaviour data only, but answered by image similarity
        raise ApiError(404, f"no positive item has an image vector in version {snapshot.version}",
                       code="unknown_item", unknown=unknown) from None
    return orjson.dumps({"version": snapshot.version, "mode": answer.mode, "requested_mode": mode,
                         "note": answer.note, "unknown": unknown,
                         "results": orjson.Fragment(snapshot.results(answer))})


def batch_by_ids(snapshot: Snapshot, item_ids: list[str], k: int, mode: str,
                 constraints: Constraints) -> dict[str, Any]:
    used, note = snapshot.answers.answering_mode(mode)
    queries = []
    for item_id in item_ids:
        if not snapshot.has_item(item_id):
            queries.append({"item_id": item_id, "error": "unknown item_id", "results": []})
            continue
        results = similar_results(snapshot, item_id, k, mode, constraints)
        queries.append({"item_id": item_id, "error": None, "results": orjson.Fragment(results)})
    return {"version": snapshot.version, "mode": used, "requested_mode": mode, "note": note,
            "queries": queries}


def batch_by_vector(snapshot: Snapshot, vector: list[float], k: int, mode: str,
                    constraints: Constraints) -> dict[str, Any]:
    """A raw query vector: image similarity only (behaviour models know items, not vectors)."""
    xq = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if xq.shape[1] != snapshot.index.dim:
        raise ApiError(422, f"vector has {xq.shape[1]} dimensions but version {snapshot.version} "
                            f"has {snapshot.index.dim}", code="invalid_request")
    norm = float(np.linalg.norm(xq))
    if not np.isfinite(norm) or norm == 0.0:
        raise ApiError(422, "vector must be finite and not all zero", code="invalid_request")
    answer = snapshot.answers.similar_to_vectors(xq / norm, k, constraints, mode)[0]
    results = orjson.Fragment(snapshot.results(answer))
    return {"version": snapshot.version, "mode": answer.mode, "requested_mode": mode, "note": answer.note,
            "queries": [{"item_id": None, "error": None, "results": results}]}
