"""The hot path: GET /v1/items/{item_id}/similar answered before FastAPI's routing.

Routing, dependency solving and parameter validation cost several times more than the answer
itself when the answer is a lookup in stored neighbour lists. This middleware answers only the
plainest form of the request (an item id and at most `k` and `mode`, with valid values, for an
item the serving version knows) from the same functions the FastAPI route uses, so the bytes
are identical; everything else (errors, filters, odd parameters, live searches) goes on to the
route, which validates it and stays the reference (and the OpenAPI document's source).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.answers import DEFAULT_MODE, K_MAX, MODES
from recsys.api import lookup
from recsys.api.reload import ServingState

PREFIX = "/v1/items/"
SUFFIX = "/similar"
MODE_NAMES = {mode.encode(): mode for mode in MODES}
MAX_ID_LENGTH = 512  # as the route's path parameter allows


class RouteTemplate:
    """Stands in for the matched route so that metrics label fast answers like routed ones."""

    def __init__(self, path: str) -> None:
        self.path = path


SIMILAR_ROUTE = RouteTemplate(PREFIX + "{item_id}" + SUFFIX)
JSON_HEADERS = [(b"content-type", b"application/json")]


class FastSimilarMiddleware:
    def __init__(self, app: ASGIApp, state: ServingState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith(SUFFIX):
                body = self.answer(path[len(PREFIX):-len(SUFFIX)], scope["query_string"])
                if body is not None:
                    scope["route"] = SIMILAR_ROUTE
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def answer(self, item_id: str, query: bytes) -> bytes | None:
        """The answer bytes, or None to leave the request to the FastAPI route."""
        if not item_id or len(item_id) > MAX_ID_LENGTH:
            return None
        k, mode = 10, DEFAULT_MODE
        if query:
            for part in query.split(b"&"):
                name, _, value = part.partition(b"=")
                if name == b"k" and value.isdigit() and len(value) <= 4:
                    k = int(value)
                elif name == b"mode" and value in MODE_NAMES:
                    mode = MODE_NAMES[value]
                else:
                    return None
            if not 1 <= k <= K_MAX:
                return None
        snapshot = self.state.snapshot
        if snapshot is None or not snapshot.has_item(item_id):
            return None
        return lookup.fast_similar(snapshot, item_id, k, mode)
