"""Many queries at once (item ids or a raw vector), and similar items for an uploaded image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import anyio
import orjson
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile

from recsys.answers import K_MAX
from recsys.api import lookup
from recsys.api.auth import AUTH_ERRORS, require_api_token
from recsys.api.deps import AppSettings, CurrentSnapshot
from recsys.api.errors import ApiError
from recsys.api.responses import JSONBytes
from recsys.api.schemas import (
    BatchAnswer,
    DiversityParam,
    ErrorAnswer,
    FilterParam,
    GroupByParam,
    ImageAnswer,
    SimilarRequest,
)

if TYPE_CHECKING:
    from PIL import Image

router = APIRouter(prefix="/v1/similar", tags=["similar"])

UPLOAD_PATH = "/v1/similar/image"


@router.post("", response_model=BatchAnswer, dependencies=[Depends(require_api_token)],
             responses={**AUTH_ERRORS, 422: {"model": ErrorAnswer}})
async def similar_many(query: SimilarRequest, request: Request, snapshot: CurrentSnapshot) -> JSONBytes:
    """Similar items for up to 100 item ids, or for one vector of the index's dimension."""
    constraints = lookup.constraints(snapshot, query.exclude, query.category, query.filter, query.group_by,
                                     query.diversity)
    if query.item_ids is not None:
        body = await anyio.to_thread.run_sync(
            lookup.batch_by_ids, snapshot, query.item_ids, query.k, query.mode, constraints,
            limiter=request.app.state.limiter)
    else:
        body = await anyio.to_thread.run_sync(
            lookup.batch_by_vector, snapshot, query.vector, query.k, query.mode, constraints,
            limiter=request.app.state.limiter)
    return JSONBytes(body)


@router.post(
    "/image",
    response_model=ImageAnswer,
    responses={413: {"model": ErrorAnswer}, 422: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}},
)
async def similar_to_image(
    request: Request,
    snapshot: CurrentSnapshot,
    settings: AppSettings,
    file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, ...), at most 10 MiB")],
    k: Annotated[int, Query(ge=1, le=K_MAX)] = 10,
    category: Annotated[str | None, Query(max_length=200)] = None,
    filter: FilterParam = None,  # shadows the builtin: the API's name
    group_by: GroupByParam = None,
    diversity: DiversityParam = 0.0,
) -> JSONBytes:
    """Items that look like an uploaded image, embedded by the model that made the index."""
    constraints = lookup.constraints(snapshot, (), category, filter, group_by, diversity)
    data = await file.read(settings.upload_max_bytes + 1)
    if len(data) > settings.upload_max_bytes:
        raise ApiError(413, f"file is over the {settings.upload_max_bytes} byte limit")
    if not data:
        raise ApiError(422, "file is empty", code="image_error")
    limiter = request.app.state.limiter
    image = await anyio.to_thread.run_sync(_decode, data, settings.upload_max_pixels, limiter=limiter)
    vector, model_id = await anyio.to_thread.run_sync(
        request.app.state.embedder.embed, snapshot.index.meta, image, limiter=limiter)
    if vector.shape[1] != snapshot.index.dim:
        raise ApiError(503, f"the model makes {vector.shape[1]}-d vectors but version {snapshot.version} "
                            f"holds {snapshot.index.dim}-d ones", code="model_mismatch")
    answer = await anyio.to_thread.run_sync(
        lambda: snapshot.answers.similar_to_vectors(vector, k, constraints)[0],
        limiter=limiter)
    return JSONBytes({"version": snapshot.version, "mode": "visual", "model_id": model_id,
                      "results": orjson.Fragment(snapshot.results(answer))})


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    from embeddings.errors import ImageError
    from embeddings.images import decode_image

    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise ApiError(422, f"the upload is not a usable image: {exc.message}", code="image_error",
                       error_type=exc.error_type) from None
