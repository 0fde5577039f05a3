"""Items: similar items by id (the hot path), an item's catalogue image, and a listing."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlparse

import anyio
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.responses import FileResponse, RedirectResponse, Response

from embeddings.images import is_object_url, signed_url
from recsys.answers import DEFAULT_MODE, K_MAX
from recsys.api import lookup
from recsys.api.deps import CurrentSnapshot
from recsys.api.errors import ApiError
from recsys.api.responses import JSONBytes
from recsys.api.schemas import (
    DiversityParam,
    ErrorAnswer,
    FilterParam,
    GroupByParam,
    ItemsAnswer,
    ItemSummary,
    Mode,
    SimilarAnswer,
)

router = APIRouter(prefix="/v1/items", tags=["items"])

# Ids may hold slashes (`--images DIR` names items by relative path), hence `:path`; the
# routes ending in /similar and /image come before the bare item route so they match first.

ItemId = Annotated[str, PathParam(min_length=1, max_length=512)]
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}
NOT_FOUND = {404: {"model": ErrorAnswer}}
INVALID = {422: {"model": ErrorAnswer}}


@router.get("", response_model=ItemsAnswer)
async def list_items(
    snapshot: CurrentSnapshot,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> JSONBytes:
    """Item ids and metadata in index order, a page at a time."""
    ids = snapshot.item_ids[offset:offset + limit]
    items = [snapshot.item_json({"item_id": i}) for i in ids]
    return JSONBytes({"version": snapshot.version, "total": len(snapshot), "offset": offset, "items": items})


@router.get("/{item_id:path}/similar", response_model=SimilarAnswer, responses={**NOT_FOUND, **INVALID})
async def similar_items(
    request: Request,
    item_id: ItemId,
    snapshot: CurrentSnapshot,
    k: Annotated[int, Query(ge=1, le=K_MAX)] = 10,
    mode: Mode = DEFAULT_MODE,
    exclude: Annotated[str | None, Query(max_length=20_000, description="item ids, comma-separated")] = None,
    category: Annotated[str | None, Query(max_length=200)] = None,
    filter: FilterParam = None,  # shadows the builtin: the API's name
    group_by: GroupByParam = None,
    diversity: DiversityParam = 0.0,
) -> Response:
    """Items most like this one: visual (image cosine), behaviour (co-occurrence) or hybrid."""
    constraints = lookup.constraints(snapshot, lookup.parse_exclude(exclude), category, filter, group_by,
                                     diversity)
    body = await lookup.similar_answer(snapshot, item_id, k, mode, constraints, request.app.state.limiter)
    return Response(body, media_type="application/json")


@router.get(
    "/{item_id:path}/image",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}}, 307: {"description": "the catalogue's image URL"},
               **NOT_FOUND},
)
async def item_image(item_id: ItemId, snapshot: CurrentSnapshot) -> Response:
    """The item's catalogue image. Only the file or URL the catalogue names for this item is ever
    served: the request picks an item, never a path, so nothing else on disk can be reached, and
    remote images are a redirect for the browser to follow, never a fetch by the server."""
    ref = snapshot.image(item_id)
    if ref is None:
        raise ApiError(404, f"unknown item_id {item_id!r} in version {snapshot.version}", code="unknown_item")
    parsed = urlparse(ref)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return RedirectResponse(ref, status_code=307)
    if is_object_url(ref):  # s3://...: a presigned link, so the browser fetches it, not the server
        return RedirectResponse(await anyio.to_thread.run_sync(signed_url, ref), status_code=307)
    path = Path(unquote(parsed.path)) if scheme == "file" else Path(ref)
    media_type = IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if not path.is_absolute() or media_type is None or not media_type.startswith("image/") \
            or not path.is_file():
        raise ApiError(404, f"item {item_id!r} has no image file to serve", code="no_image")
    return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff",
                                                              "Cache-Control": "public, max-age=3600"})


@router.get("/{item_id:path}", response_model=ItemSummary, responses=NOT_FOUND)
async def get_item(item_id: ItemId, snapshot: CurrentSnapshot) -> JSONBytes:
    """One item's catalogue metadata."""
    if not snapshot.has_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r} in version {snapshot.version}", code="unknown_item")
    return JSONBytes(snapshot.item_json({"item_id": item_id}))
