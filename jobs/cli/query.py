"""`recsys similar`: the items most like one item, from the store's serving version; and the
command line's edge of the answer path (`result_rows`: answer rows joined with catalogue metadata)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError
from recsys.answers import K_MAX, MODES

if TYPE_CHECKING:
    from index.loaded import LoadedIndex
    from recsys.answers import Answer, Answers, Constraints


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("similar", help="print the items most like ITEM_ID, with scores")
    parser.add_argument("item_id", metavar="ITEM_ID")
    parser.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    parser.add_argument("-k", type=int, default=10, help=f"how many (1 to {K_MAX})")
    # visual by default: it answers on a version without behaviour data too
    parser.add_argument("--mode", choices=MODES, default="visual")
    parser.add_argument("--version", default=None, help="an index version (default: CURRENT)")
    parser.add_argument("--json", action="store_true", help="print the HTTP API's answer shape")
    add_shop_options(parser)
    parser.set_defaults(func=run)


def add_shop_options(parser: argparse.ArgumentParser) -> None:
    """--filter, --group-by and --diversity (DESIGN.md "Shop-grade parameters"), as the API takes them."""
    parser.add_argument("--filter", default=None, metavar="JSON",
                        help='catalogue conditions, e.g. \'{"category": "shoes", "price": {"lt": 50}}\'')
    parser.add_argument("--group-by", default=None, metavar="COLUMN",
                        help="at most one result (the best) per value of this catalogue column")
    parser.add_argument("--diversity", type=float, default=0.0,
                        help="0 to 1: trade relevance for variety among the visual vectors (0: off)")


def shop_constraints(args: argparse.Namespace, answers: Answers, category: str | None = None) -> Constraints:
    """The command's constraints, checked against the version's catalogue (InputError naming it)."""
    from recsys.answers import Constraints

    constraints = Constraints.of(category=category, filter=args.filter, group_by=args.group_by,
                                 diversity=args.diversity)
    answers.check(constraints)
    return constraints


def check_k(k: int) -> None:
    if not 1 <= k <= K_MAX:
        raise UsageError(f"-k must be from 1 to {K_MAX}, not {k}")


def run(args: argparse.Namespace) -> int:
    from index.remote import local_copy
    from index.store import load_version
    from recsys.answers import Answers
    from recsys.errors import InputError

    check_k(args.k)
    store = local_copy(args.store, (args.version,))
    loaded = load_version(store, args.version)  # IndexLoadError: exit 1 (jobs/cli/__init__.py)
    if not loaded.has_item(args.item_id):
        raise UsageError(f"item {args.item_id!r} is not in index version {loaded.version} of {args.store}")
    try:  # behaviour and hybrid need `recsys behaviour fit`
        answers = Answers.load(store, index=loaded,
                               behaviour="none" if args.mode == "visual" else "required")
    except InputError as exc:
        raise UsageError(f"--mode {args.mode}: {exc}") from None
    constraints = shop_constraints(args, answers)
    results = result_rows(answers.similar(args.item_id, args.k, args.mode, constraints), loaded)
    if args.json:
        body = {"item_id": args.item_id, "version": loaded.version, "mode": args.mode, "results": results}
        print(json.dumps(body, indent=2, default=str))
    else:
        for rank, row in enumerate(results, 1):
            print(f"{rank:>4}  {row['score']:.4f}  {row['item_id']}")
    return 0


def result_rows(answer: Answer, loaded: LoadedIndex) -> list[dict[str, Any]]:
    """Rows as the command line prints them: item_id, score (6 decimals), the row's extra fields,
    `why`, then the item's catalogue metadata (all of it, the image reference included)."""
    rows = []
    for n, (item_id, score) in enumerate(answer.rows):
        row = {"item_id": item_id, "score": round(score, 6), **(answer.extras[n] if answer.extras else {}),
               "why": answer.why(n)}
        for key, value in loaded.metadata(item_id).items():
            row.setdefault(key, value)
        rows.append(row)
    return rows
