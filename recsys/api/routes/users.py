"""Personal recommendations, from the behaviour data of the serving version."""

from __future__ import annotations

from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from starlette.responses import Response

from recsys.answers import K_MAX, Constraints
from recsys.api import lookup
from recsys.api.auth import AUTH_ERRORS, require_api_token
from recsys.api.deps import CurrentSnapshot
from recsys.api.errors import ApiError
from recsys.api.schemas import DiversityParam, ErrorAnswer, FilterParam, GroupByParam, RecommendationsAnswer
from recsys.api.serving import Snapshot

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[Depends(require_api_token)])


@router.get("/{user_id:path}/recommendations", response_model=RecommendationsAnswer,
            responses={**AUTH_ERRORS, 404: {"model": ErrorAnswer}, 422: {"model": ErrorAnswer}})
async def recommendations(
    request: Request,
    user_id: Annotated[str, PathParam(min_length=1, max_length=512)],
    snapshot: CurrentSnapshot,
    k: Annotated[int, Query(ge=1, le=K_MAX)] = 10,
    category: Annotated[str | None, Query(max_length=200)] = None,
    filter: FilterParam = None,  # shadows the builtin: the API's name
    group_by: GroupByParam = None,
    diversity: DiversityParam = 0.0,
) -> Response:
    """Items for this user; an unknown user gets the popular items. 404 when the version holds no
    behaviour data (there is nothing personal, nor popular, to answer with)."""
    if not snapshot.has_behaviour:
        raise ApiError(404, snapshot.answers.behaviour_error or "no behaviour data in this version",
                       code="no_behaviour")
    constraints = lookup.constraints(snapshot, (), category, filter, group_by, diversity)
    # Every unknown user gets the same answer: one cache entry for all of them (key without the id).
    key = ("user", user_id if snapshot.answers.knows_user(user_id) else None, k, constraints)
    body = snapshot.cache.get(key)
    if body is None:
        body = await anyio.to_thread.run_sync(_recommend, snapshot, user_id, k, constraints,
                                              limiter=request.app.state.limiter)
        snapshot.cache.put(key, body, k=k)
    return Response(b'{"user_id":' + orjson.dumps(user_id) + b"," + body[1:], media_type="application/json")


def _recommend(snapshot: Snapshot, user_id: str, k: int, constraints: Constraints) -> bytes:
    """The answer without its user_id member (which the route puts first)."""
    answer = snapshot.answers.recommend(user_id, k, constraints)
    # Each row says where it came from: "personal" for a known user, "popular" for the fallback.
    sources = {extra["source"] for extra in answer.extras or ()}
    known = True if "personal" in sources else (False if "popular" in sources else None)
    return orjson.dumps({"version": snapshot.version, "known_user": known,
                         "results": orjson.Fragment(snapshot.results(answer))})
