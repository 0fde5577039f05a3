"""`recsys similar`: the items most like one item, from the store's serving version."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from index.errors import IndexLoadError
from jobs.errors import JobFailed, UsageError

MODES = ("visual", "behaviour", "hybrid")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("similar", help="print the items most like ITEM_ID, with scores")
    parser.add_argument("item_id", metavar="ITEM_ID")
    parser.add_argument("--store", type=Path, required=True, help="the index store folder")
    parser.add_argument("-k", type=int, default=10, help="how many (1 to 1000)")
    parser.add_argument("--mode", choices=MODES, default="visual")
    parser.add_argument("--version", default=None, help="an index version (default: CURRENT)")
    parser.add_argument("--json", action="store_true", help="print the HTTP API's answer shape")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index.store import load_version

    if not 1 <= args.k <= 1000:
        raise UsageError(f"-k must be from 1 to 1000, not {args.k}")
    try:
        loaded = load_version(args.store, args.version)
    except IndexLoadError as exc:
        raise JobFailed(str(exc)) from None
    if not loaded.has_item(args.item_id):
        raise UsageError(f"item {args.item_id!r} is not in index version {loaded.version} of {args.store}")
    if args.mode == "visual":
        pairs = loaded.similar(args.item_id, args.k)
        results = [{"item_id": i, "score": round(s, 6), **_display(loaded.metadata(i))} for i, s in pairs]
    else:
        results = _blended(args, loaded)
    pairs = [(row["item_id"], row["score"]) for row in results]
    if args.json:
        body = {"item_id": args.item_id, "version": loaded.version, "mode": args.mode, "results": results}
        print(json.dumps(body, indent=2, default=str))
    else:
        for rank, (item_id, score) in enumerate(pairs, 1):
            print(f"{rank:>4}  {score:.4f}  {item_id}")
    return 0


def _blended(args: argparse.Namespace, loaded) -> list[dict]:
    """Behaviour or hybrid neighbours through the recommender (needs `recsys behaviour fit`)."""
    from recsys.errors import InputError as RecsysInputError
    from recsys.service import Recommender

    try:
        recommender = Recommender.load(args.store, args.version, index=loaded)
    except RecsysInputError as exc:
        raise UsageError(f"--mode {args.mode}: {exc}") from None
    return recommender.similar(args.item_id, k=args.k, mode=args.mode)


def _display(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k != "item_id"}
