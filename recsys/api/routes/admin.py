"""Admin: reload the index now. Needs `Authorization: Bearer $RECSYS_ADMIN_TOKEN`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from recsys.api.auth import require_admin
from recsys.api.deps import State
from recsys.api.errors import ApiError
from recsys.api.responses import JSONBytes
from recsys.api.schemas import ErrorAnswer, ReloadAnswer

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadAnswer,
    dependencies=[Depends(require_admin)],
    responses={401: {"model": ErrorAnswer}, 403: {"model": ErrorAnswer}, 409: {"model": ErrorAnswer}},
)
async def reload(
    state: State,
    version: Annotated[str | None, Query(max_length=200, description="default: the CURRENT one")] = None,
) -> JSONBytes:
    """Load CURRENT (or `version`) beside the serving one and swap; on failure the old one stays."""
    previous = state.snapshot.version if state.snapshot else None
    ok, message = await state.reload(version)
    if not ok:
        raise ApiError(409, f"{message}; still serving version {previous}", code="reload_failed",
                       serving=previous)
    return JSONBytes({"reloaded": True, "version": state.snapshot.version, "previous": previous})
