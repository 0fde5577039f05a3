"""`recsys bench index`: the index against brute force and hnswlib, into BENCHMARKS.md ("## Index")."""

from __future__ import annotations

import argparse

from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="build time, memory, recall@10 and QPS of the auto index")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("recsys bench index is not written yet")
