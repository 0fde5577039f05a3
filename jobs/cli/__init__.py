"""The `recsys` command line: one sub-command module per group, each with `register(subparsers)`.

Exit codes (DESIGN.md): 0 done; 1 the job failed and nothing was published; 2 bad usage or bad
input, with a message naming the file, row or option.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from embeddings.errors import InputError
from index.errors import IndexLoadError
from jobs.errors import JobFailed

# Each module defines `register(subparsers)`; the parser it adds sets `func(args) -> int`.
COMMAND_MODULES = [
    "jobs.cli.embed",
    "jobs.cli.index",
    "jobs.cli.query",
    "jobs.cli.export",
    "jobs.cli.report",
    "jobs.cli.rules",
    "jobs.cli.bench",
    "jobs.cli.serve",
    "jobs.cli.behaviour",
    "jobs.cli.nightly",
    "jobs.cli.compress",
    "jobs.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except InputError as exc:  # every package's bad input, UsageError included
        print(f"recsys: error: {exc}", file=sys.stderr)
        return 2
    except (JobFailed, IndexLoadError) as exc:  # a stored version that cannot be read fails the job
        print(f"recsys: failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine's, not the input's: a full disk, a file size limit, no permission
        print(f"recsys: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recsys: interrupted", file=sys.stderr)
        return 130
