"""The app factory: routers, error handlers, middleware, and the lifespan that loads the index."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from recsys.api import errors
from recsys.api.fastpath import FastPathMiddleware
from recsys.api.health_reports import HealthGauges, HealthReports
from recsys.api.limits import BodyLimitMiddleware
from recsys.api.metrics import Metrics, MetricsMiddleware
from recsys.api.reload import ServingState
from recsys.api.routes import admin, health, items, sessions, similar, ui, users
from recsys.api.routes import reports as health_report_routes
from recsys.api.settings import MIB, Settings
from recsys.api.upload import UploadEmbedder

log = logging.getLogger(__name__)


def limit_compute_threads(threads: int) -> None:
    """One OpenMP thread per search: requests already run side by side in worker threads.
    (torch, imported only on the first upload, is limited there.)"""
    from index.threads import set_threads

    set_threads(threads)


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_compute_threads(settings.compute_threads)
        app.state.limiter = anyio.CapacityLimiter(settings.search_concurrency)
        ok, message = await app.state.serving.reload()
        if not ok:
            log.warning("starting without an index: %s", message)
        watcher = None
        if settings.reload_interval_s > 0:
            watcher = asyncio.create_task(app.state.serving.watch(settings.reload_interval_s))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    app = FastAPI(
        title="recsys",
        summary="Similar items by image and behaviour, from a versioned FAISS index.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.serving = ServingState(settings.store, metrics, settings.cache_max_bytes, settings.cache_max_k)
    app.state.embedder = UploadEmbedder(settings.compute_threads)
    errors.install(app)
    for router in (health.router, items.router, similar.router, users.router, sessions.router, admin.router,
                   ui.router):
        app.include_router(router)
    app.mount("/ui/static", ui.static_files(), name="ui-static")
    # The serving version's health report: its page and summary, its counts on /metrics.
    app.state.health_reports = HealthReports(settings.reports)
    app.include_router(health_report_routes.router)
    serving = app.state.serving
    metrics.registry.register(HealthGauges(app.state.health_reports,
                                           lambda: serving.snapshot.version if serving.snapshot else None))

    # Innermost first: the fast path (GET similar, POST /v1/recommend), CORS (only when origins are
    # configured), body caps, then metrics outermost so that refused and fast requests are counted too.
    if settings.fast_path:
        app.add_middleware(FastPathMiddleware, state=app.state)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    # The upload cap is on the file; the body may carry a little multipart framing around it.
    app.add_middleware(BodyLimitMiddleware, default_cap=settings.json_body_max_bytes,
                       caps={similar.UPLOAD_PATH: settings.upload_max_bytes + MIB // 16})
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
