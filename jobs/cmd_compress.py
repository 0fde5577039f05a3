"""`recsys compress`: a teacher into a smaller, faster model artifact, with an honest report."""

from __future__ import annotations

import argparse
import io
import logging
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from embeddings.backbones import DEFAULT_MODEL
from embeddings.catalog import catalog_from_folder, read_catalog
from embeddings.compress.pipeline import CompressOptions, NearDuplicates, check_options, compress
from embeddings.compress.quantize import PRECISIONS
from embeddings.compress.report import markdown_table
from jobs.errors import UsageError

log = logging.getLogger(__name__)

# The Foundation test's near-duplicate setup (tests/photos.py): distinct real photos shipped in
# scikit-image, each as itself plus augmented copies (crop, flip, colour, low-quality JPEG).
PHOTO_NAMES = [
    "astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field",
    "immunohistochemistry", "retina", "moon", "coins", "clock", "motorcycle",
]


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if array.dtype != np.uint8:
        array = (array * 255).astype(np.uint8) if array.max() <= 1 else array.astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def _augment(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    scale = rng.uniform(0.65, 0.9)
    w, h = int(width * scale), int(height * scale)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    out = image.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=rng.randint(15, 35))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def near_duplicate_photos(n_variants: int = 4, seed: int = 0) -> NearDuplicates | None:
    """The real-photo near-duplicate set, or None where scikit-image is not installed."""
    try:
        import skimage.data  # noqa: F401 - only to know whether the photos are there
    except ImportError:
        log.warning("scikit-image is not installed: the report has no near-duplicate recall")
        return None
    rng = random.Random(seed)
    images, labels, queries = [], [], []
    for name in PHOTO_NAMES:
        photo = _photo(name)
        images.append(photo)
        labels.append(name)
        queries.append(False)
        for _ in range(n_variants):
            images.append(_augment(photo, rng))
            labels.append(name)
            queries.append(True)
    return NearDuplicates(images, np.array(labels), np.array(queries))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", default=DEFAULT_MODEL, help="teacher model SPEC (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="the artifact folder to write")
    parser.add_argument("--student", default=None,
                        help="student timm architecture, optionally @PIXELS for its input size "
                             "(e.g. tf_efficientnet_lite0@160); default: the teacher itself")
    parser.add_argument("--prune", type=float, default=None, help="share of channels to remove (0-1)")
    parser.add_argument("--quantize", default="int8", choices=PRECISIONS)
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


def options_from(args: argparse.Namespace) -> CompressOptions:
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
    options = options_from(args)
    catalog = read_catalog(args.catalog) if args.catalog else catalog_from_folder(args.images)
    photos = None if args.no_photos else near_duplicate_photos()
    report = compress(args.teacher, catalog, args.out, options, near_duplicates=photos)
    print(markdown_table(report["variants"]))
    print(f"artifact: {args.out} (report.json, report.png)")
    return 0
