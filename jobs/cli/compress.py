"""`recsys compress`: a teacher into a smaller, faster model artifact, with an honest report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from embeddings.names import DEFAULT_MODEL, QUANTIZE_PRECISIONS
from jobs.errors import UsageError

log = logging.getLogger(__name__)


def near_duplicate_photos(n_variants: int = 4, seed: int = 0) -> Any:
    """The real-photo near-duplicate set, or None where scikit-image is not installed."""
    try:
        import skimage.data  # noqa: F401 - only to know whether the photos are there
    except ImportError:
        log.warning("scikit-image is not installed: the report has no near-duplicate recall")
        return None
    import numpy as np

    from embeddings.compress.pipeline import NearDuplicates
    from jobs.fixtures.real_photos import near_duplicate_sets

    images, labels, queries = near_duplicate_sets(n_variants, seed)
    return NearDuplicates(images, np.array(labels), np.array(queries))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", default=DEFAULT_MODEL, help="teacher model SPEC (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="the artifact folder to write")
    parser.add_argument("--student", default=None,
                        help="student timm architecture, optionally @PIXELS for its input size "
                             "(e.g. tf_efficientnet_lite0@160); default: the teacher itself")
    parser.add_argument("--prune", type=float, default=None, help="share of channels to remove (0-1)")
    parser.add_argument("--quantize", default="int8", choices=QUANTIZE_PRECISIONS)
    parser.add_argument("--dim", type=int, default=None, help="PCA projection to N dimensions")
    parser.add_argument("--distill-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16, help="distillation batch size")
    parser.add_argument("--lr", type=float, default=1.5e-4, help="distillation learning rate")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds: stop distillation early when spent")
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--calibration", default="minmax", choices=["percentile", "entropy", "minmax"])
    parser.add_argument("--holdout", type=float, default=0.2, help="share of images held out for evaluation")
    parser.add_argument("--no-photos", action="store_true", help="skip near-duplicate recall on real photos")
    parser.add_argument("--throughput-images", type=int, default=96,
                        help="images timed per variant for the model-alone speed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="distil, prune, quantize and project a backbone")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalog", type=Path, help="Parquet or CSV with item_id and image columns")
    source.add_argument("--images", type=Path, help="a folder of catalogue images")
    add_arguments(parser)
    parser.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> Any:
    """The checked CompressOptions (bad ratios and sizes fail before any model loads)."""
    from embeddings.compress.pipeline import CompressOptions, check_options

    if args.batch_size < 2:
        raise UsageError(f"--batch-size must be at least 2 (the relational loss compares items), "
                         f"not {args.batch_size}")
    if not 0.0 < args.holdout < 1.0:
        raise UsageError(f"--holdout must be between 0 and 1, not {args.holdout}")
    if args.calibration_images < 1:
        raise UsageError(f"--calibration-images must be at least 1, not {args.calibration_images}")
    options = CompressOptions(
        student=args.student, prune=args.prune, quantize=args.quantize, dim=args.dim,
        distill_steps=args.distill_steps, batch_size=args.batch_size, lr=args.lr,
        time_budget_s=args.time_budget, holdout=args.holdout,
        calibration_images=args.calibration_images, calibration_method=args.calibration,
        throughput_images=max(1, args.throughput_images),
    )
    check_options(options)  # bad ratios and sizes fail before any model loads
    return options


def run(args: argparse.Namespace) -> int:
    # Imported here so that the rest of the command line does not pay for torch.
    from embeddings.catalog import catalog_from_folder, read_catalog
    from embeddings.compress.pipeline import compress
    from embeddings.compress.report import markdown_table

    options = options_from(args)
    catalog = read_catalog(args.catalog) if args.catalog else catalog_from_folder(args.images)
    photos = None if args.no_photos else near_duplicate_photos()
    report = compress(args.teacher, catalog, args.out, options, near_duplicates=photos)
    print(markdown_table(report["variants"]))
    print(f"artifact: {args.out} (report.json, report.png)")
    return 0
