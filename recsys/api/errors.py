"""JSON errors: `{"error": code, "message": text}` for every failure, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from recsys.api.responses import JSONBytes

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
         422: "invalid_request", 503: "unavailable"}


class ApiError(HTTPException):
    """An answer other than success, with a stable code and a message for people."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code or CODES.get(status, "error")
        self.extra = extra


def _body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


async def http_error(request: Request, exc: HTTPException) -> JSONBytes:
    if isinstance(exc, ApiError):
        body = _body(exc.code, str(exc.detail), **exc.extra)
    else:
        body = _body(CODES.get(exc.status_code, "error"), str(exc.detail))
    return JSONBytes(body, status_code=exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONBytes:
    # Name each bad field ("query.k: ...") and keep pydantic's list for programs.
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append({"loc": where, "msg": error.get("msg", "")})
    message = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems) or "invalid request"
    return JSONBytes(_body("invalid_request", message, detail=problems), status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONBytes:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONBytes(_body("internal", "internal server error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error)
