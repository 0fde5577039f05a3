"""The HTTP API (DESIGN.md): `create_app(Settings(store=...))` gives the FastAPI app."""

from recsys.api.app import create_app
from recsys.api.settings import Settings

__all__ = ["Settings", "create_app"]
