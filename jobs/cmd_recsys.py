"""`recsys behaviour fit`, `recsys recommend`, `recsys evaluate` and `recsys demo`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from jobs.errors import JobFailed, UsageError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    behaviour = subparsers.add_parser("behaviour", help="behaviour data: fit models into a new store version")
    sub = behaviour.add_subparsers(dest="behaviour_command", required=True)
    fit = sub.add_parser("fit", help="fit behaviour on an events file; writes and publishes a new version")
    fit.add_argument("--events", type=Path, required=True, help="Parquet, CSV, u.data or .inter events")
    fit.add_argument("--store", type=Path, required=True, help="the index store folder")
    fit.add_argument("--version", default=None, help="the base index version (default: CURRENT)")
    fit.add_argument("--model", default="auto", choices=["auto", "cooc", "ease"])
    fit.add_argument("--hybrid-weight", type=float, default=None,
                     help="behaviour share of the blend (default: chosen on a temporal validation split)")
    fit.add_argument("--no-publish", action="store_true", help="write the version but leave CURRENT alone")
    _events_options(fit)
    fit.set_defaults(func=run_fit)

    rec = subparsers.add_parser("recommend", help="items for one user from the serving version")
    rec.add_argument("user_id", metavar="USER_ID")
    rec.add_argument("--store", type=Path, required=True)
    rec.add_argument("--version", default=None)
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--category", default=None)
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=run_recommend)

    ev = subparsers.add_parser("evaluate", help="offline evaluation: popularity, behaviour, visual, hybrid")
    ev.add_argument("--events", type=Path, required=True)
    ev.add_argument("--store", type=Path, default=None, help="an index store: adds visual and hybrid")
    ev.add_argument("--version", default=None)
    ev.add_argument("--split", default="random", choices=["random", "temporal"])
    ev.add_argument("--test-frac", type=float, default=0.2)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-k", type=int, default=10)
    ev.add_argument("--models", default="cooc,ease", help="behaviour models, comma-separated")
    ev.add_argument("--hybrid-weight", type=float, default=None,
                    help="fix the blend weight (default: chosen on a validation split of training)")
    ev.add_argument("--json", type=Path, default=None, help="write the report here")
    _events_options(ev)
    ev.set_defaults(func=run_evaluate)

    demo = subparsers.add_parser("demo", help="generate demo data, embed, index, fit, evaluate (and serve)")
    demo.add_argument("--dir", type=Path, default=Path("demo"))
    demo.add_argument("--items", type=int, default=300)
    demo.add_argument("--users", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-compress", action="store_true",
                      help="embed with the pretrained teacher instead of its int8 artifact")
    demo.add_argument("--serve", action="store_true", help="then serve the store over HTTP")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(func=run_demo)


def _events_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event-weights", default=None,
                        help="e.g. view=1,click=2,cart=4,purchase=8 (default); unknown events are errors")
    parser.add_argument("--recency-half-life-days", type=float, default=14.0,
                        help="a user's older events count less when gathering candidates (0: off)")
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


def _load_events(args: argparse.Namespace):  # noqa: ANN202 - a DataFrame
    from recsys.events import load_events

    return load_events(args.events, _event_weights(args.event_weights))


def _cleaning(args: argparse.Namespace):  # noqa: ANN202
    from recsys.cleaning import CleaningConfig

    return CleaningConfig(args.bot_events_per_hour, args.decay_half_life_days)


def _input_errors(func):  # noqa: ANN001, ANN202 - maps the recsys package's InputError to exit 2
    def wrapped(args: argparse.Namespace) -> int:
        from index.errors import IndexLoadError
        from recsys.errors import InputError, UnknownItem

        try:
            return func(args)
        except (InputError, UnknownItem) as exc:
            raise UsageError(str(exc)) from None
        except IndexLoadError as exc:
            raise JobFailed(str(exc)) from None

    return wrapped


@_input_errors
def run_fit(args: argparse.Namespace) -> int:
    from index.store import IndexStore, load_version
    from recsys.behaviour_store import FitOptions, fit_behaviour, write_version

    if args.hybrid_weight is not None and not 0 <= args.hybrid_weight <= 1:
        raise UsageError(f"--hybrid-weight {args.hybrid_weight}: must lie in [0, 1]")
    events = _load_events(args)
    store = IndexStore(args.store)
    base = args.version or store.current_version()
    if base is None:
        raise UsageError(f"--store {args.store}: no published version; build an index first")
    loaded = load_version(args.store, base)
    options = FitOptions(model=args.model, hybrid_weight=args.hybrid_weight,
                         recency_half_life_days=args.recency_half_life_days or None, cleaning=_cleaning(args))
    behaviour = fit_behaviour(events, loaded, options)
    version = write_version(args.store, base, behaviour, str(args.events), publish=not args.no_publish)
    print(version)
    return 0


@_input_errors
def run_recommend(args: argparse.Namespace) -> int:
    from recsys.service import Recommender

    if not 1 <= args.k <= 1000:
        raise UsageError(f"-k must be from 1 to 1000, not {args.k}")
    rec = Recommender.load(args.store, args.version)
    rows = rec.recommend(args.user_id, args.k, category=args.category)
    if args.json:
        print(json.dumps({"user_id": args.user_id, "version": rec.version, "results": rows}, indent=2,
                         default=str))
    else:
        for rank, row in enumerate(rows, 1):
            print(f"{rank:>4}  {row['score']:.4f}  {row['item_id']}  ({row['source']})")
    return 0


@_input_errors
def run_evaluate(args: argparse.Namespace) -> int:
    from recsys.evaluation import evaluate, format_table

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, not {args.k}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        if name not in ("cooc", "ease"):
            raise UsageError(f"--models: {name!r} is not a behaviour model (cooc, ease)")
    events = _load_events(args)
    vectors = _store_vectors(args.store, args.version) if args.store else None
    report = evaluate(events, vectors, split=args.split, test_frac=args.test_frac, seed=args.seed, k=args.k,
                      behaviour_names=names, hybrid_weight=args.hybrid_weight, cleaning=_cleaning(args),
                      recency_half_life_days=args.recency_half_life_days or None)
    report["events_file"] = str(args.events)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return 0


def _store_vectors(store: Path, version: str | None):  # noqa: ANN202 - VisualVectors
    import numpy as np

    from index.store import load_version
    from recsys.evaluation import VisualVectors

    loaded = load_version(store, version)
    return VisualVectors(loaded.items["item_id"].astype(str).to_numpy(),
                         np.asarray(loaded.vectors, dtype=np.float32))


def _compress_for_demo(catalog_file: Path, out: Path) -> Path:
    """The pretrained Lite0 quantized to int8 (static, calibrated on the demo catalogue), with its
    fidelity report; a full chain with distillation is `recsys compress` (see README)."""
    from embeddings.catalog import read_catalog
    from embeddings.compress.pipeline import CompressOptions, compress
    from embeddings.compress.report import markdown_table

    artifact = out / "model"
    if (artifact / "model.json").is_file():
        return artifact.resolve()
    options = CompressOptions(quantize="int8", distill_steps=0, calibration_images=64, throughput_images=16)
    report = compress("tf_efficientnet_lite0", read_catalog(catalog_file), artifact, options)
    print(markdown_table(report["variants"]))
    return artifact.resolve()


def _show_examples(store: Path, items: int = 3, k: int = 5) -> None:
    """Print a few items with their similar items, and one user's recommendations."""
    from recsys.service import Recommender

    recommender = Recommender.load(store)
    catalogue = recommender.index.items
    for item_id in catalogue["item_id"].head(items):
        title = catalogue.set_index("item_id").at[item_id, "title"] if "title" in catalogue else ""
        print(f"\nitems like {item_id} {title}:")
        for row in recommender.similar(item_id, k=k, mode="hybrid"):
            print(f"  {row['score']:.3f}  {row['item_id']}  {row.get('title', '')}")
    user = recommender.behaviour.interactions.user_ids[0]
    print(f"\nfor user {user}:")
    for row in recommender.recommend(str(user), k=k):
        print(f"  {row['score']:.3f}  {row['item_id']}  {row.get('title', '')}  ({row.get('source', '')})")


@_input_errors
def run_demo(args: argparse.Namespace) -> int:
    from jobs.demo_data import DemoConfig, generate
    from jobs.nightly import run_nightly
    from jobs.nightly_config import load_config

    out: Path = args.dir
    data = generate(out / "data", DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed))
    log.info("demo data in %s", out / "data")
    # Embed, index, fit behaviour, gate and publish through the nightly pipeline (rerun it with
    # `recsys nightly --config DIR/nightly.toml`).
    model = "tf_efficientnet_lite0" if args.no_compress else str(_compress_for_demo(data.catalog, out))
    config = out / "nightly.toml"
    config.write_text('work_dir = "nightly"\nstore = "store"\n[catalog]\nfile = "data/catalog.csv"\n'
                      f'[embed]\nmodel = "{model}"\n[behaviour]\nevents = "data/events.csv"\n')
    run_nightly(load_config(config))
    store = out / "store"
    eval_args = argparse.Namespace(events=data.events, store=store, version=None, split="temporal",
                                   test_frac=0.2, seed=0, k=10, models="cooc,ease", hybrid_weight=None,
                                   json=out / "evaluation.json", event_weights=None,
                                   recency_half_life_days=14.0, decay_half_life_days=None,
                                   bot_events_per_hour=1000)
    run_evaluate(eval_args)
    _show_examples(store)
    print(f"store: {store}  (try: recsys similar --store {store} item00000 --mode hybrid; "
          f"recsys recommend --store {store} user00000)")
    if args.serve:
        from jobs.cli import main

        return main(["serve", "--store", str(store), "--port", str(args.port)])
    return 0
