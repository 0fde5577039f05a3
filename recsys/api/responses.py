"""JSON answers serialised with orjson (fast, and strict about NaN and odd types)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBytes(Response):
    """A JSON answer; `content` is either ready bytes or something orjson serialises."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)
