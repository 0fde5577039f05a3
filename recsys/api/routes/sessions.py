"""POST /v1/recommend: items for an anonymous session (positives, and negatives to move away from)."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Request

from recsys.answers import Constraints
from recsys.api import lookup
from recsys.api.auth import AUTH_ERRORS, require_api_token
from recsys.api.deps import CurrentSnapshot
from recsys.api.errors import ApiError
from recsys.api.responses import JSONBytes
from recsys.api.schemas import ErrorAnswer, SessionAnswer, SessionRequest
from recsys.api.serving import Snapshot
from recsys.errors import UnknownItem

router = APIRouter(prefix="/v1/recommend", tags=["users"], dependencies=[Depends(require_api_token)])


@router.post("", response_model=SessionAnswer,
             responses={**AUTH_ERRORS, 404: {"model": ErrorAnswer}, 422: {"model": ErrorAnswer}})
async def recommend_for_session(query: SessionRequest, request: Request,
                                snapshot: CurrentSnapshot) -> JSONBytes:
    """Items like the positives and unlike the negatives; positives never come back. Ids the
    version does not know are listed in `unknown`; 404 when no positive is known."""
    constraints = lookup.constraints(snapshot, query.exclude, None, query.filter, query.group_by,
                                     query.diversity)
    unknown = [i for i in dict.fromkeys(query.positive + query.negative) if not snapshot.answers.knows(i)]
    if all(i in unknown for i in query.positive):
        raise ApiError(404, f"no positive item is known to version {snapshot.version}", code="unknown_item",
                       unknown=unknown)
    return JSONBytes(await anyio.to_thread.run_sync(_session, snapshot, query, constraints, unknown,
                                                    limiter=request.app.state.limiter))


def _session(snapshot: Snapshot, query: SessionRequest, constraints: Constraints,
             unknown: list[str]) -> dict[str, Any]:
    try:
        answer = snapshot.answers.session(query.positive, query.negative, query.k, query.mode, constraints)
    except UnknownItem:  # known to the behaviour data only, but answered by image similarity
        raise ApiError(404, f"no positive item has an image vector in version {snapshot.version}",
                       code="unknown_item", unknown=unknown) from None
    return {"version": snapshot.version, "mode": answer.mode, "requested_mode": query.mode,
            "note": answer.note, "unknown": unknown, "results": orjson.Fragment(snapshot.results(answer))}
