"""`recsys demo [--dir DIR] [--serve]`: the whole product on generated data (jobs/demo/)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="generate demo data, embed, index, fit, evaluate (and serve)")
    demo.add_argument("--dir", type=Path, default=Path("demo"))
    demo.add_argument("--items", type=int, default=300)
    demo.add_argument("--users", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-compress", action="store_true",
                      help="embed with the pretrained teacher instead of its int8 artifact")
    demo.add_argument("--serve", action="store_true", help="then serve the store over HTTP")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.cli.serve import serve
    from jobs.demo.data import DemoConfig
    from jobs.demo.run import run_demo

    store = run_demo(args.dir, DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed),
                     compress=not args.no_compress)
    if args.serve:
        return serve(store, port=args.port, reports=store.parent / "nightly" / "reports")
    return 0
