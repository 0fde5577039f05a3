"""`recsys behaviour fit`, `recsys recommend` and `recsys evaluate`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.cli.query import add_shop_options
from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError
from recsys.names import BEHAVIOUR_MODELS, DEFAULT_BEHAVIOUR_MODELS

if TYPE_CHECKING:
    import pandas as pd

    from recsys.cleaning import CleaningConfig

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    behaviour = subparsers.add_parser("behaviour", help="behaviour data: fit models into a new store version")
    sub = behaviour.add_subparsers(dest="behaviour_command", required=True)
    fit = sub.add_parser("fit", help="fit behaviour on an events file; writes and publishes a new version")
    fit.add_argument("--events", type=Path, required=True, help="Parquet, CSV, u.data or .inter events")
    fit.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    fit.add_argument("--version", default=None, help="the base index version (default: CURRENT)")
    fit.add_argument("--model", default="auto", choices=["auto", *BEHAVIOUR_MODELS],
                     help="behaviour model (default auto: chosen on a validation window of the events)")
    fit.add_argument("--hybrid-weight", type=float, default=None,
                     help="behaviour share of the blend (default: chosen on a temporal validation split)")
    fit.add_argument("--no-publish", action="store_true", help="write the version but leave CURRENT alone")
    _events_options(fit)
    fit.set_defaults(func=run_fit)

    rec = subparsers.add_parser("recommend", help="items for one user from the serving version")
    rec.add_argument("user_id", metavar="USER_ID")
    rec.add_argument("--store", type=store_location, required=True)
    rec.add_argument("--version", default=None)
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--category", default=None)
    rec.add_argument("--json", action="store_true")
    add_shop_options(rec)
    rec.set_defaults(func=run_recommend)

    ev = subparsers.add_parser("evaluate", help="offline evaluation: popularity, behaviour, visual, hybrid")
    ev.add_argument("--events", type=Path, required=True)
    ev.add_argument("--store", type=store_location, default=None,
                    help="an index store (folder or URL): adds visual and hybrid")
    ev.add_argument("--version", default=None)
    ev.add_argument("--split", default="random", choices=["random", "temporal"])
    ev.add_argument("--test-frac", type=float, default=0.2)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-k", type=int, default=10)
    ev.add_argument("--models", default=",".join(DEFAULT_BEHAVIOUR_MODELS),
                    help=f"behaviour models, comma-separated ({', '.join(BEHAVIOUR_MODELS)})")
    ev.add_argument("--hybrid-weight", type=float, default=None,
                    help="fix the blend weight (default: chosen on a validation split of training)")
    ev.add_argument("--json", type=Path, default=None, help="write the report here")
    _events_options(ev)
    ev.set_defaults(func=run_evaluate)


def _events_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event-weights", default=None,
                        help="e.g. view=1,click=2,cart=4,purchase=8 (default); unknown events are errors")
    parser.add_argument("--recency-half-life-days", type=float, default=None,
                        help="a user's older events count less when gathering candidates (0: off; "
                             "default: chosen on a validation window of the training events)")
    parser.add_argument("--decay-half-life-days", type=float, default=None,
                        help="time decay of event weights before fitting (default: none)")
    parser.add_argument("--bot-events-per-hour", type=int, default=1000,
                        help="users above this rate in any hour are dropped as bots")


def _event_weights(raw: str | None) -> dict[str, float] | None:
    if raw is None:
        return None
    weights = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip().lower()] = float(value)
        except ValueError:
            raise UsageError(f"--event-weights: {part!r} is not NAME=NUMBER") from None
    return weights


def _load_events(args: argparse.Namespace) -> pd.DataFrame:
    from recsys.events import load_events

    return load_events(args.events, _event_weights(args.event_weights))


def _cleaning(args: argparse.Namespace) -> CleaningConfig:
    from recsys.cleaning import CleaningConfig

    return CleaningConfig(args.bot_events_per_hour, args.decay_half_life_days)


def run_fit(args: argparse.Namespace) -> int:
    from index.remote import synced_store
    from index.store import DEFAULT_KEEP, IndexStore, load_version
    from recsys.behaviour_store import FitOptions, fit_behaviour_file, write_version

    if args.hybrid_weight is not None and not 0 <= args.hybrid_weight <= 1:
        raise UsageError(f"--hybrid-weight {args.hybrid_weight}: must lie in [0, 1]")
    weights = _event_weights(args.event_weights)
    with synced_store(args.store, (args.version,), keep=DEFAULT_KEEP) as root:  # remote: via its mirror
        base = args.version or IndexStore(root).current_version()
        if base is None:
            raise UsageError(f"--store {args.store}: no published version; build an index first")
        loaded = load_version(root, base)
        options = FitOptions(model=args.model, hybrid_weight=args.hybrid_weight,
                             recency_half_life_days=args.recency_half_life_days, cleaning=_cleaning(args))
        behaviour = fit_behaviour_file(args.events, loaded, options, weights)  # large files in chunks
        version = write_version(root, base, behaviour, str(args.events), publish=not args.no_publish)
    print(version)
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from jobs.cli.query import check_k, result_rows, shop_constraints
    from recsys.answers import Answers

    check_k(args.k)
    from index.remote import local_copy

    answers = Answers.load(local_copy(args.store, (args.version,)), args.version, behaviour="required")
    constraints = shop_constraints(args, answers, args.category)
    rows = result_rows(answers.recommend(args.user_id, args.k, constraints), answers.index)
    if args.json:
        print(json.dumps({"user_id": args.user_id, "version": answers.version, "results": rows}, indent=2,
                         default=str))
    else:
        for rank, row in enumerate(rows, 1):
            print(f"{rank:>4}  {row['score']:.4f}  {row['item_id']}  ({row['source']})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from recsys.evaluation import VisualVectors, evaluate, format_table

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, not {args.k}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        if name not in BEHAVIOUR_MODELS:
            raise UsageError(f"--models: {name!r} is not a behaviour model ({', '.join(BEHAVIOUR_MODELS)})")
    events = _load_events(args)
    from index.remote import local_copy

    vectors = (VisualVectors.from_store(local_copy(args.store, (args.version,)), args.version)
               if args.store else None)
    report = evaluate(events, vectors, split=args.split, test_frac=args.test_frac, seed=args.seed, k=args.k,
                      behaviour_names=names, hybrid_weight=args.hybrid_weight, cleaning=_cleaning(args),
                      recency_half_life_days=args.recency_half_life_days)
    report["events_file"] = str(args.events)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return 0
