"""Request body caps: a lean ASGI middleware answering 413 in JSON before a handler sees the body.

Bodies are counted as they arrive (chunked uploads carry no Content-Length). A refused body is
read and thrown away up to a bound first, so the client is not cut off mid-upload and reads the
413 instead of a reset connection.
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A refused body is drained up to this many times its cap; past that the connection is dropped.
DRAIN_FACTOR = 4


class PayloadTooLarge(HTTPException):
    def __init__(self, cap: int) -> None:
        super().__init__(413, f"request body is over the {cap} byte limit")


def too_large_body(cap: int) -> bytes:
    message = f"request body is over the {cap} byte limit"
    return orjson.dumps({"error": "payload_too_large", "message": message})


class BodyLimitMiddleware:
    """Caps request bodies: `caps` by path, `default_cap` for every other path."""

    def __init__(self, app: ASGIApp, default_cap: int, caps: dict[str, int]) -> None:
        self.app = app
        self.default_cap = default_cap
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        cap = self.caps.get(scope["path"], self.default_cap)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            if declared <= DRAIN_FACTOR * cap:
                await _drain(receive, DRAIN_FACTOR * cap)
            await _send_413(send, cap)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_FACTOR * cap - received)
                    raise PayloadTooLarge(cap)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive, budget: int) -> None:
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_413(send: Send, cap: int) -> None:
    body = too_large_body(cap)
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
