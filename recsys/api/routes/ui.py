"""The /ui page: plain HTML and JavaScript shipped inside the package (no build step)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

STATIC = resources.files("recsys") / "static"


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(STATIC))


@router.get("/ui")
async def ui() -> HTMLResponse:
    return HTMLResponse((STATIC / "ui.html").read_text(encoding="utf-8"))


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)
