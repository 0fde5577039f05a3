"""`recsys serve`: the HTTP API (FastAPI on uvicorn) over an index store, reloading by itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve similar items and recommendations over HTTP")
    parser.add_argument("--store", type=Path, required=True, help="the index store folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reload-interval", type=float, default=2.0,
                        help="seconds between checks of the store's CURRENT (0: only POST /v1/admin/reload)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (slower)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from recsys.api import Settings, create_app

    if not args.store.is_dir():
        raise UsageError(f"--store {args.store}: not a folder")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    if args.reload_interval < 0:
        raise UsageError(f"--reload-interval must be 0 or more, not {args.reload_interval}")
    settings = Settings.from_env(args.store, reload_interval_s=args.reload_interval)
    print(f"serving {args.store} at http://{args.host}:{args.port}/  (page: http://{args.host}:{args.port}/ui)",
          flush=True)
    # One worker process: the index is held once in memory, and a reload swaps it in place.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, loop="auto", http="auto", timeout_graceful_shutdown=5)
    return 0
