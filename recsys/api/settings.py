"""Server settings in one object: built from the environment by `recsys serve`, directly by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from index.remote import is_url

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    store: Path | str  # a folder, or an object-storage URL (s3://bucket/prefix), cached locally
    # Bearer token for /v1/admin/*; None disables those routes (403).
    admin_token: str | None = None
    # Bearer token for the routes with personal data (user, session and batch); None leaves them open.
    api_token: str | None = None
    # Seconds between checks of the store's CURRENT file; 0 turns the watcher off.
    reload_interval_s: float = 2.0
    upload_max_bytes: int = 10 * MIB
    json_body_max_bytes: int = 1 * MIB
    # Decoded pixels of an uploaded image: far below the batch job's cap, as anyone may upload.
    upload_max_pixels: int = 25_000_000
    # Origins allowed by CORS; empty keeps CORS off (the page is served from the same origin).
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # Threads for FAISS/torch inside the server: searches run one per worker thread, so more
    # OpenMP threads per search would only oversubscribe the cores.
    compute_threads: int = 1
    # Live searches and uploads run in worker threads, at most this many at once.
    search_concurrency: int = 4
    # Answers kept per loaded version for repeated queries (filters, behaviour, hybrid), in bytes;
    # answers for more than cache_max_k items are not kept.
    cache_max_bytes: int = 256 * MIB
    cache_max_k: int = 100
    # Where catalogue health reports are (a nightly's work_dir/reports); None: none are shown.
    reports: Path | None = None
    # GET similar and POST /v1/recommend answered before routing (recsys/api/fastpath.py); off,
    # every request takes its FastAPI route (the reference the tests compare the fast path with).
    fast_path: bool = True

    @classmethod
    def from_env(cls, store: Path | str, **overrides: object) -> Settings:
        """Settings for `store`, with the tokens, CORS origins and reports folder from the environment."""
        origins = os.environ.get("RECSYS_CORS_ORIGINS", "")
        reports = os.environ.get("RECSYS_REPORTS_DIR")
        values: dict[str, object] = {
            "store": store if is_url(store) else Path(store),
            "admin_token": os.environ.get("RECSYS_ADMIN_TOKEN") or None,
            "api_token": os.environ.get("RECSYS_API_TOKEN") or None,
            "cors_origins": tuple(o.strip() for o in origins.split(",") if o.strip()),
            "reports": Path(reports) if reports else None,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
