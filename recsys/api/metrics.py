"""Prometheus metrics: per-route request counts and latencies, the loaded version, reloads.

Each app has its own registry, so several apps in one process (tests) do not collide.
Routes are labelled by their template (`/v1/items/{item_id}/similar`), never by the raw path,
so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.version = Gauge(
            "recsys_index_version_info", "The index version being served (1) ", ["version"],
            registry=self.registry,
        )
        self.items = Gauge("recsys_index_items", "Items in the serving index", registry=self.registry)
        self.reloads = Counter(
            "recsys_reloads", "Index reload attempts by result", ["result"], registry=self.registry,
        )
        self.reload_failing = Gauge(
            "recsys_reload_failing", "1 while the last reload attempt failed (the old version serves)",
            registry=self.registry,
        )
        self.last_reload = Gauge(
            "recsys_reload_last_timestamp_seconds", "When the last reload attempt ended", ["result"],
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)

    def served(self, version: str, items: int) -> None:
        self.version.clear()
        self.version.labels(version).set(1)
        self.items.set(items)

    def reloaded(self, ok: bool) -> None:
        result = "success" if ok else "failure"
        self.reloads.labels(result).inc()
        self.last_reload.labels(result).set(time.time())
        self.reload_failing.set(0 if ok else 1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # (method, route) -> histogram child; labels() is a dict lookup plus a lock, worth skipping.
        self._latency: dict[tuple[str, str], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # path_format drops converters: "/v1/items/{item_id}/similar", not "{item_id:path}".
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            key = (method, template)
            child = self._latency.get(key)
            if child is None:
                child = self._latency[key] = self.metrics.latency.labels(method, template)
            child.observe(time.perf_counter() - start)  # type: ignore[attr-defined]
            self.metrics.requests.labels(method, template, str(status)).inc()
