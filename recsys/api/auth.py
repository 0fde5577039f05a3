"""Bearer tokens: the admin token for /v1/admin/*, and the optional API token that guards the
routes carrying personal data (a user's recommendations, sessions, batches of ids)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsys.api.deps import AppSettings
from recsys.api.errors import ApiError
from recsys.api.schemas import ErrorAnswer

bearer = HTTPBearer(auto_error=False)
# The answers a guarded route adds to its OpenAPI entry.
AUTH_ERRORS: dict[int | str, dict[str, object]] = {401: {"model": ErrorAnswer}, 403: {"model": ErrorAnswer}}
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _matches(credentials: HTTPAuthorizationCredentials, token: str) -> bool:
    return hmac.compare_digest(credentials.credentials.encode(), token.encode())


def raw_headers_carry_api_token(headers: list[tuple[bytes, bytes]], token: str | None) -> bool:
    """For code in front of the routes (the fast path): do these ASGI headers carry exactly
    `Authorization: Bearer <token>`? True when no token is configured. Anything else is left to
    `require_api_token`, which answers 401 or 403."""
    if token is None:
        return True
    for name, value in headers:
        if name == b"authorization":
            return hmac.compare_digest(value, b"Bearer " + token.encode())
    return False


async def require_admin(settings: AppSettings, credentials: Credentials) -> None:
    """401 without a bearer token, 403 with a wrong one or when no token is configured."""
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "admin routes need 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    if settings.admin_token is None:
        raise ApiError(403, "admin routes are off: the server has no RECSYS_ADMIN_TOKEN")
    if not _matches(credentials, settings.admin_token):
        raise ApiError(403, "wrong admin token")


async def require_api_token(settings: AppSettings, credentials: Credentials) -> None:
    """Open when the server has no RECSYS_API_TOKEN; otherwise 401 without a bearer token and 403
    with a wrong one."""
    if settings.api_token is None:
        return
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "this route needs 'Authorization: Bearer <token>' (RECSYS_API_TOKEN)",
                       headers={"WWW-Authenticate": "Bearer"})
    if not _matches(credentials, settings.api_token):
        raise ApiError(403, "wrong API token")
