"""POST /v1/recommend: items for an anonymous session (positives, and negatives to move away from)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from recsys.api import lookup
from recsys.api.auth import AUTH_ERRORS, require_api_token
from recsys.api.deps import CurrentSnapshot
from recsys.api.responses import JSONBytes
from recsys.api.schemas import ErrorAnswer, SessionAnswer, SessionRequest

router = APIRouter(prefix="/v1/recommend", tags=["users"], dependencies=[Depends(require_api_token)])


@router.post("", response_model=SessionAnswer,
             responses={**AUTH_ERRORS, 404: {"model": ErrorAnswer}, 422: {"model": ErrorAnswer}})
async def recommend_for_session(query: SessionRequest, request: Request,
                                snapshot: CurrentSnapshot) -> JSONBytes:
    """Items like the positives and unlike the negatives; positives never come back. Ids the
    version does not know are listed in `unknown`; 404 when no positive is known."""
    constraints = lookup.constraints(snapshot, query.exclude, None, query.filter, query.group_by,
                                     query.diversity)
    body = await lookup.session_answer(snapshot, query.positive, query.negative, query.k, query.mode,
                                       constraints, request.app.state.limiter)
    return JSONBytes(body)
