"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from recsys.api.deps import State
from recsys.api.responses import JSONBytes
from recsys.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> JSONBytes:
    """The process answers."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> JSONBytes:
    """Ready when a version is loaded; names it, and the last reload failure if there was one."""
    snapshot = state.snapshot
    failure = state.last_failure.as_dict() if state.last_failure else None
    if snapshot is None:
        body = {"status": "not_ready", "version": None, "reloads": state.reloads,
                "last_reload_failure": failure}
        return JSONBytes(body, status_code=503)
    return JSONBytes({
        "status": "ready", "version": snapshot.version, "items": len(snapshot),
        "behaviour": snapshot.has_behaviour, "behaviour_note": snapshot.answers.behaviour_error,
        "loaded_at": snapshot.loaded_at,
        "reloads": state.reloads, "last_reload_failure": failure,
    })


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text: per-route counts and latencies, the version, reloads and failures, the
    serving version's health report counts (read from its file: off the event loop)."""
    return Response(await anyio.to_thread.run_sync(request.app.state.metrics.render),
                    media_type=CONTENT_TYPE_LATEST)
