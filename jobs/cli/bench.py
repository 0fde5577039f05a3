"""`recsys bench embed|index|api|soak|...`: measurements written into BENCHMARKS.md.

Each module in BENCH_MODULES has `register(bench_subparsers)`, adding its sub-command with
`set_defaults(func=...)`.
"""

from __future__ import annotations

import argparse
import importlib

BENCH_MODULES = ["jobs.bench.index", "jobs.bench.api", "jobs.bench.embed", "jobs.bench.recsys",
                 "jobs.bench.compress", "jobs.bench.health", "jobs.bench.soak", "jobs.bench.reload"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks that write their numbers into BENCHMARKS.md")
    bench = parser.add_subparsers(dest="bench_command", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bench)
