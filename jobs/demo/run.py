"""The demo: generated data, the bundled Lite0 quantized to int8, the nightly pipeline, evaluation,
and a few answers printed; what `recsys demo` runs before it (optionally) serves the store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from jobs.demo.data import DemoConfig, generate

log = logging.getLogger(__name__)


def run_demo(out: Path, config: DemoConfig, compress: bool = True) -> Path:
    """Generate, compress, run the nightly and evaluate under `out`; returns the store folder."""
    from jobs.nightly.config import load_config
    from jobs.nightly.run import run_nightly
    from recsys.evaluation import VisualVectors, evaluate, format_table
    from recsys.events import load_events

    data = generate(out / "data", config)
    log.info("demo data in %s", out / "data")
    # Embed, index, fit behaviour, gate and publish through the nightly pipeline (rerun it with
    # `recsys nightly --config DIR/nightly.toml`).
    model = str(compress_for_demo(data.catalog, out)) if compress else "tf_efficientnet_lite0"
    nightly = out / "nightly.toml"
    nightly.write_text('work_dir = "nightly"\nstore = "store"\n[catalog]\nfile = "data/catalog.csv"\n'
                       f'[embed]\nmodel = "{model}"\n[behaviour]\nevents = "data/events.csv"\n')
    run_nightly(load_config(nightly))
    store = out / "store"
    report = evaluate(load_events(data.events), VisualVectors.from_store(store), split="temporal")
    report["events_file"] = str(data.events)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(format_table(report))
    show_examples(store)
    print(f"store: {store}  (try: recsys similar --store {store} item00000 --mode hybrid; "
          f"recsys recommend --store {store} user00000)")
    return store


def compress_for_demo(catalog_file: Path, out: Path) -> Path:
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


def show_examples(store: Path, items: int = 3, k: int = 5) -> None:
    """Print a few items with their similar items, and one user's recommendations."""
    from jobs.cli.query import result_rows
    from recsys.answers import Answers

    answers = Answers.load(store, behaviour="required")
    catalogue = answers.index.items
    for item_id in catalogue["item_id"].head(items):
        title = catalogue.set_index("item_id").at[item_id, "title"] if "title" in catalogue else ""
        print(f"\nitems like {item_id} {title}:")
        for row in result_rows(answers.similar(item_id, k, "hybrid"), answers.index):
            print(f"  {row['score']:.3f}  {row['item_id']}  {row.get('title', '')}")
    user = answers.behaviour.interactions.user_ids[0]
    print(f"\nfor user {user}:")
    for row in result_rows(answers.recommend(str(user), k), answers.index):
        print(f"  {row['score']:.3f}  {row['item_id']}  {row.get('title', '')}  ({row.get('source', '')})")
