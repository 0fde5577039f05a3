"""`recsys serve`: the HTTP API (FastAPI on uvicorn) over an index store, reloading by itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from index.store import prefetch_checksums
from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve similar items and recommendations over HTTP")
    parser.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reload-interval", type=float, default=2.0,
                        help="seconds between checks of the store's CURRENT (0: only POST /v1/admin/reload)")
    parser.add_argument("--reports", type=Path, default=None,
                        help="the folder of catalogue health reports (a nightly's work_dir/reports), "
                             "linked from /ui and counted on /metrics (default: $RECSYS_REPORTS_DIR)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (slower)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if isinstance(args.store, Path) and not args.store.is_dir():
        raise UsageError(f"--store {args.store}: not a folder")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    if args.reload_interval < 0:
        raise UsageError(f"--reload-interval must be 0 or more, not {args.reload_interval}")
    return serve(args.store, args.host, args.port, args.reload_interval, args.log_level, args.access_log,
                 args.reports)


def serve(store: Path | str, host: str = "127.0.0.1", port: int = 8000, reload_interval: float = 2.0,
          log_level: str = "info", access_log: bool = False, reports: Path | None = None) -> int:
    """Serve `store` until interrupted (one worker: the index is held once, a reload swaps it in place)."""
    if isinstance(store, Path):  # hashed while the server imports itself (index/store.py)
        prefetch_checksums(store)
    import uvicorn

    from recsys.api import Settings, create_app

    overrides: dict[str, object] = {"reload_interval_s": reload_interval}
    if reports is not None:
        overrides["reports"] = reports
    settings = Settings.from_env(store, **overrides)
    print(f"serving {store} at http://{host}:{port}/  (page: http://{host}:{port}/ui)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                access_log=access_log, loop="auto", http="auto", timeout_graceful_shutdown=5)
    return 0
