"""Shared state reached through dependencies: the serving state, the current snapshot, settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from recsys.api.errors import ApiError
from recsys.api.reload import ServingState
from recsys.api.serving import Snapshot
from recsys.api.settings import Settings


async def serving_state(request: Request) -> ServingState:
    return request.app.state.serving


async def current_snapshot(request: Request) -> Snapshot:
    """The version serving now; a request keeps it to the end even if a reload swaps it."""
    snapshot = request.app.state.serving.snapshot
    if snapshot is None:
        raise ApiError(503, "no index version is loaded yet", code="not_ready")
    return snapshot


async def settings(request: Request) -> Settings:
    return request.app.state.settings


State = Annotated[ServingState, Depends(serving_state)]
CurrentSnapshot = Annotated[Snapshot, Depends(current_snapshot)]
AppSettings = Annotated[Settings, Depends(settings)]
