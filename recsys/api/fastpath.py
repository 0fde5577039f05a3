"""The hot paths, answered before FastAPI's routing: GET /v1/items/{item_id}/similar (with every
shop-grade query parameter) and POST /v1/recommend.

Routing, dependency solving and pydantic validation cost several times more than an answer from
stored neighbour lists, and about as much again as a filtered search. This middleware reads the
request itself (the query string as Starlette decodes it, the body as FastAPI does) and answers
only requests whose every value is plainly valid, through the same `lookup` functions the routes
call, so the bytes are identical. Everything else goes on to the route, which stays the reference
and the only place errors are written: odd spellings (`k=+5`, a repeated parameter, a JSON body
FastAPI would coerce), a filter naming an unknown column, an unknown item, no index loaded. A
request the fast path declines costs its parsing twice; a 4xx answer is not the hot path.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.answers import DEFAULT_MODE, K_MAX, MODES, NO_CONSTRAINTS
from recsys.api import lookup
from recsys.api.auth import raw_headers_carry_api_token
from recsys.api.errors import ApiError
from recsys.api.schemas import BATCH_MAX, SessionRequest

PREFIX = "/v1/items/"
SUFFIX = "/similar"
RECOMMEND = "/v1/recommend"
MODE_NAMES = {mode.encode(): mode for mode in MODES}
MAX_ID_LENGTH = 512  # as the route's path parameter allows
# The routes' limits (recsys/api/routes/items.py and schemas.py), in characters.
TEXT_LIMITS = {"exclude": 20_000, "category": 200, "filter": 20_000, "group_by": 200}
EXCLUDE_MAX = 1000  # ids in a POST body's exclude list
FAST_BODY_MAX = 64 * 1024  # larger POST bodies go to the route
# Parsed query strings kept, each at most QUERY_KEPT_MAX bytes: a shop's pages send the same few
# parameter sets for every item (the item id is in the path).
QUERIES_KEPT = 1024
QUERY_KEPT_MAX = 4096
# A diversity the route's float parsing reads the same way (float() and pydantic agree on these).
PLAIN_NUMBER = re.compile(r"[0-9]{0,3}(\.[0-9]{0,17})?")
SESSION_FIELDS = frozenset(SessionRequest.model_fields)
JSON_HEADERS = [(b"content-type", b"application/json")]


class RouteTemplate:
    """Stands in for the matched route so that metrics label fast answers like routed ones."""

    def __init__(self, path: str) -> None:
        self.path = path


SIMILAR_ROUTE = RouteTemplate(PREFIX + "{item_id}" + SUFFIX)
RECOMMEND_ROUTE = RouteTemplate(RECOMMEND)


@dataclass(frozen=True)
class ShopParams:
    """The shop-grade parameters of a request, as the route receives them."""

    exclude: tuple[str, ...] | list[str] = ()  # parsed: ids
    category: str | None = None
    filter: str | dict[str, Any] | None = None  # shadows the builtin: the API's name
    group_by: str | None = None
    diversity: float = 0.0


class FastPathMiddleware:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state  # the app's state: `serving` (ServingState) and `limiter`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET" and path.startswith(PREFIX) and path.endswith(SUFFIX):
                body = await self.similar(path[len(PREFIX):-len(SUFFIX)], scope["query_string"])
                if body is not None:
                    await _answer(scope, send, SIMILAR_ROUTE, body)
                    return
            # POST /v1/recommend carries personal data: without the right token the route answers
            elif method == "POST" and path == RECOMMEND and _json_body_of_fast_size(scope) \
                    and raw_headers_carry_api_token(scope["headers"], self.state.settings.api_token):
                messages, error = await _read_body(receive)
                body = await self.recommend(messages) if error is None else None
                if body is not None:
                    await _answer(scope, send, RECOMMEND_ROUTE, body)
                    return
                receive = _replay(messages, error, receive)
        await self.app(scope, receive, send)

    async def similar(self, item_id: str, query: bytes) -> bytes | None:
        """GET similar's answer bytes, or None to leave the request to the FastAPI route."""
        if not item_id or len(item_id) > MAX_ID_LENGTH:
            return None
        parsed = _kept_query(query) if len(query) <= QUERY_KEPT_MAX else _similar_query(query)
        if parsed is None:
            return None
        k, mode, shop = parsed
        snapshot = self.state.serving.snapshot
        if snapshot is None or not snapshot.has_item(item_id):
            return None
        constraints = NO_CONSTRAINTS
        if shop is not None:
            try:
                constraints = lookup.constraints(snapshot, shop.exclude, shop.category, shop.filter,
                                                 shop.group_by, shop.diversity)
            except ApiError:
                return None
        return await lookup.similar_answer(snapshot, item_id, k, mode, constraints, self.state.limiter)

    async def recommend(self, messages: list[Message]) -> bytes | None:
        """POST /v1/recommend's answer bytes, or None to leave the request to the route."""
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            fields = json.loads(body)  # as FastAPI reads a JSON body
        except ValueError:
            return None
        parsed = _session_fields(fields)
        snapshot = self.state.serving.snapshot
        if parsed is None or snapshot is None:
            return None
        positive, negative, k, mode, shop = parsed
        try:
            constraints = lookup.constraints(snapshot, shop.exclude, None, shop.filter, shop.group_by,
                                             shop.diversity)
            return await lookup.session_answer(snapshot, positive, negative, k, mode, constraints,
                                               self.state.limiter)
        except ApiError:
            return None


def _similar_query(query: bytes) -> tuple[int, str, ShopParams | None] | None:
    """k, mode and the shop-grade parameters (None: none given) when every value is one the route
    takes as it is; None otherwise. Names the route does not know are ignored, as it ignores them."""
    k, mode = 10, DEFAULT_MODE
    if not query:
        return k, mode, None
    plain = True
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"k" and value.isdigit() and len(value) <= 4:
            k = int(value)
        elif name == b"mode" and value in MODE_NAMES:
            mode = MODE_NAMES[value]
        else:
            plain = False
            break
    if plain:
        return (k, mode, None) if 1 <= k <= K_MAX else None
    # Decoded exactly as Starlette decodes a query string for FastAPI.
    values: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in values:
            return None  # repeated: left to the route's rules
        values[name] = value
    raw_k = values.get("k", "10")
    if not (raw_k.isascii() and raw_k.isdigit() and len(raw_k) <= 4 and 1 <= int(raw_k) <= K_MAX):
        return None
    mode = values.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        return None
    for name, limit in TEXT_LIMITS.items():
        if len(values.get(name, "")) > limit:
            return None
    raw_diversity = values.get("diversity", "0")
    if not PLAIN_NUMBER.fullmatch(raw_diversity) or raw_diversity in ("", "."):
        return None
    diversity = float(raw_diversity)
    if not 0.0 <= diversity <= 1.0:
        return None
    shop = ShopParams(lookup.parse_exclude(values.get("exclude")), values.get("category"),
                      values.get("filter"), values.get("group_by"), diversity)
    return int(raw_k), mode, shop


_kept_query = functools.lru_cache(maxsize=QUERIES_KEPT)(_similar_query)


def _session_fields(fields: Any) -> tuple[list[str], list[str], int, str, ShopParams] | None:
    """SessionRequest's fields when the body holds them with exactly the types the schema names
    (no coercion), within its limits; None otherwise."""
    if not isinstance(fields, dict) or not fields.keys() <= SESSION_FIELDS:
        return None
    positive = fields.get("positive")
    negative = fields.get("negative", [])
    exclude = fields.get("exclude", [])
    if not (_strings(positive, 1, BATCH_MAX) and _strings(negative, 0, BATCH_MAX)
            and _strings(exclude, 0, EXCLUDE_MAX)):
        return None
    k = fields.get("k", 10)
    mode = fields.get("mode", DEFAULT_MODE)
    if type(k) is not int or not 1 <= k <= K_MAX or type(mode) is not str or mode not in MODES:
        return None
    flt = fields.get("filter")
    group_by = fields.get("group_by")
    diversity = fields.get("diversity", 0.0)
    if not (flt is None or type(flt) is dict) or not (
            group_by is None or (type(group_by) is str and len(group_by) <= TEXT_LIMITS["group_by"])):
        return None
    if type(diversity) not in (int, float) or not 0.0 <= diversity <= 1.0:
        return None
    return positive, negative, k, mode, ShopParams(exclude, None, flt, group_by, float(diversity))


def _strings(value: Any, least: int, most: int) -> bool:
    return type(value) is list and least <= len(value) <= most and all(type(v) is str for v in value)


def _json_body_of_fast_size(scope: Scope) -> bool:
    """A JSON content type exactly as clients send it, and a declared length the fast path reads."""
    kind = length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = value
        elif name == b"content-length":
            length = value
    return kind == b"application/json" and length is not None and length.isdigit() \
        and int(length) <= FAST_BODY_MAX


async def _read_body(receive: Receive) -> tuple[list[Message], Exception | None]:
    """The request's messages up to the end of its body, and what receiving raised, if anything
    (the body cap's 413): the route gets both again if the fast path declines."""
    messages: list[Message] = []
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages, None
    except Exception as exc:  # noqa: BLE001 - handed on to the route as it was raised
        return messages, exc


def _replay(messages: list[Message], error: Exception | None, receive: Receive) -> Callable:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replayed


async def _answer(scope: Scope, send: Send, route: RouteTemplate, body: bytes) -> None:
    scope["route"] = route
    await send({"type": "http.response.start", "status": 200,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
