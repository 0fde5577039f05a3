"""`recsys bench compress`: the whole compression chain on generated data, into BENCHMARKS.md.

The catalogue is unlabeled and offline: product shots from the demo generator plus augmented
crops of scikit-image photos that are NOT in the near-duplicate set, so that the real-photo
near-duplicate recall is measured on photos the student never saw. 20% of the catalogue is held
out for cosine and neighbour overlap.
"""

from __future__ import annotations

import argparse
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

from embeddings.names import DEFAULT_MODEL
from jobs.bench.markdown import write_section
from jobs.cli.compress import near_duplicate_photos
from jobs.demo.data import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, draw_item

SECTION = "## Compression"
# scikit-image photos that the near-duplicate set does not use (it has chelsea, so not cat).
TRAINING_PHOTOS = ["brick", "grass", "gravel", "colorwheel", "logo", "page", "text", "horse", "cell",
                   "microaneurysms", "checkerboard", "shepp_logan_phantom", "binary_blobs"]


def training_photos() -> list[Image.Image]:
    import skimage.data

    photos = []
    for name in TRAINING_PHOTOS:
        array = getattr(skimage.data, name)()
        if array.dtype != np.uint8:
            array = (array * 255).astype(np.uint8) if array.max() <= 1 else array.astype(np.uint8)
        photos.append(Image.fromarray(array).convert("RGB"))
    return photos


def photo_crop(photo: Image.Image, rng: random.Random, background: tuple[int, int, int]) -> Image.Image:
    """A random crop, turned, tinted, sometimes shown as a product on a plain background."""
    width, height = photo.size
    scale = rng.uniform(0.3, 0.9)
    w, h = int(width * scale), int(height * scale)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    out = photo.crop((left, top, left + w, top + h)).rotate(rng.choice([0, 0, 90, 180, 270]), expand=True)
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.3, 1.8))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    if rng.random() < 0.5:
        canvas = Image.new("RGB", (360, 360), background)
        out.thumbnail((rng.randint(160, 300),) * 2)
        canvas.paste(out, (rng.randint(0, 360 - out.width), rng.randint(0, 360 - out.height)))
        out = canvas
    return out.resize((360, 360), Image.Resampling.BICUBIC)


def make_catalogue(folder: Path, count: int, seed: int = 0) -> pd.DataFrame:
    """`count` JPEGs, half product shots and half photo crops, as a catalogue."""
    rng = random.Random(seed)
    photos = training_photos()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        background = BACKGROUNDS[rng.choice(list(BACKGROUNDS))]
        if i % 2 == 0:
            image = draw_item(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(PATTERNS),
                              rng.choice(list(BACKGROUNDS)), seed=i)
            image = image.resize((360, 360), Image.Resampling.BICUBIC)
            image = image.filter(ImageFilter.GaussianBlur(0.6))
        else:
            image = photo_crop(rng.choice(photos), rng, background)
        path = folder / f"item{i:05d}.jpg"
        image.save(path, quality=90)
        rows.append({"item_id": f"item{i:05d}", "image": str(path)})
    return pd.DataFrame(rows)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="the compression chain end to end, into BENCHMARKS.md")
    parser.add_argument("--teacher", default=DEFAULT_MODEL)
    parser.add_argument("--student", default="tf_efficientnet_lite0@176")
    parser.add_argument("--prune", type=float, default=None)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--images", type=int, default=1000, help="generated catalogue images")
    parser.add_argument("--distill-steps", type=int, default=400)
    parser.add_argument("--time-budget", type=float, default=840.0, help="distillation seconds at most")
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--holdout", type=int, default=200, help="held-out images at most")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embeddings.compress.pipeline import CompressOptions, compress
    from embeddings.compress.report import markdown_table

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-compress-"))
    started = time.perf_counter()
    catalog = make_catalogue(work / "images", args.images)
    options = CompressOptions(student=args.student, prune=args.prune, dim=args.dim,
                              distill_steps=args.distill_steps, time_budget_s=args.time_budget,
                              calibration_images=args.calibration_images, max_holdout=args.holdout,
                              throughput_images=64)
    report = compress(args.teacher, catalog, work / "artifact", options,
                      near_duplicates=near_duplicate_photos())
    minutes = (time.perf_counter() - started) / 60
    distilled = next((s for s in report["steps"] if s["step"] == "distill"), None)
    command = "recsys " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    steps = " -> ".join(s["step"] for s in report["steps"])
    body = f"""Command: `{command}` ({minutes:.0f} minutes in all)
Machine: {platform.machine()}, 2 cores shared with other engineers' jobs while it ran, so images/s
are noisy: compare variants within this table only. Catalogue: {args.images} generated JPEGs (product
shots and augmented crops of scikit-image photos outside the near-duplicate set); held out for
cosine and overlap@10: {report['catalogue']['held_out']}. Near-duplicate recall: the Foundation test's
12 real photos, each with 4 augmented copies (top-4 siblings found). "end to end" is the embed job
(`embed_catalog`, decoding workers, JPEG draft) over the held-out images; the speed-up is against the
teacher in eager fp32 PyTorch in the same job.
Distillation: {distilled if distilled else 'none'}.

{markdown_table(report['variants'])}

Report: `report.json` and `report.png` in the artifact folder; steps: {steps}."""
    write_section(args.out, SECTION, body)
    print(body)
    return 0
