"""`recsys bench embed`: end-to-end images/s, files on disk to vectors on disk, into BENCHMARKS.md.

Two contestants over the same generated product-like JPEGs (about 500x500) and the same fp32
weights, in one run:
(a) the naive loop of img2vec-style tools: one image at a time, PIL open, timm transform, eager
    fp32 PyTorch forward, vectors saved at the end;
(b) this project's embed job: batches, decoding workers with JPEG draft mode, onnxruntime fp32 on
    the CPU (torch with autocast on a GPU), parquet parts.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from embeddings.names import DEFAULT_MODEL
from jobs.bench.markdown import write_section
from jobs.demo.data import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, draw_item

SECTION = "## Embedding throughput"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="images/s of a naive loop vs the embed job")
    parser.add_argument("--images", type=int, default=2000, help="generated JPEGs for the job")
    parser.add_argument("--naive-images", type=int, default=400,
                        help="how many of them the naive loop runs over (it is slow; per-image cost is flat)")
    parser.add_argument("--size", type=int, default=500, help="side of the generated JPEGs, in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.set_defaults(func=run)


def product_jpegs(folder: Path, count: int, size: int) -> list[Path]:
    """Product shots at `size` px with sensor-like noise, so the JPEGs weigh what photos weigh."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"p{i:06d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        image = draw_item(SHAPES[i % len(SHAPES)], list(COLOURS)[(i // 6) % len(COLOURS)],
                          PATTERNS[(i // 36) % len(PATTERNS)], list(BACKGROUNDS)[(i // 144) % 4], seed=i)
        image = image.resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(0.6))
        noisy = np.asarray(image, np.int16) + rng.normal(0, 6, (size, size, 3)).astype(np.int16)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


def naive_loop(paths: list[Path], model_spec: str, out: Path) -> dict:
    """One image at a time, the way img2vec-style loops do it."""
    import torch

    from embeddings.backbones import load_backbone
    from embeddings.preprocess import build_transform
    from embeddings.vectors import l2_normalize

    backbone = load_backbone(model_spec)
    transform = build_transform(backbone.data_config)
    model = backbone.torch_model().eval()
    started = time.perf_counter()
    vectors = []
    with torch.inference_mode():
        for path in paths:
            image = Image.open(path).convert("RGB")
            vectors.append(model(transform(image).unsqueeze(0))[0].numpy())
    np.save(out, l2_normalize(np.stack(vectors)))
    seconds = time.perf_counter() - started
    return {"images": len(paths), "seconds": seconds, "images_per_second": len(paths) / seconds}


def the_job(paths: list[Path], args: argparse.Namespace, out: Path) -> dict:
    import pandas as pd

    from embeddings.backbones import load_backbone
    from embeddings.runner import EmbedOptions, embed_catalog
    from embeddings.runtimes import with_runtime

    backbone = load_backbone(args.model)
    tick = time.perf_counter()
    backbone = with_runtime(backbone, "auto", args.device)
    prepare = time.perf_counter() - tick
    catalog = pd.DataFrame({"item_id": [p.stem for p in paths], "image": [str(p) for p in paths]})
    options = EmbedOptions(batch_size=args.batch_size, workers=args.workers, device=args.device,
                           progress=False)
    started = time.perf_counter()
    report = embed_catalog(catalog, out, backbone, options, source="bench")
    seconds = time.perf_counter() - started
    return {"images": len(paths), "seconds": seconds, "images_per_second": len(paths) / seconds,
            "runtime": report["runtime"], "stages": report["timings"]["seconds"],
            "prepare_seconds": prepare}


def run(args: argparse.Namespace) -> int:
    import torch

    from embeddings.embedding_set import read_embedding_set

    load_before = os.getloadavg()[0]
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-embed-"))
    paths = product_jpegs(work / "images", args.images, args.size)
    shutil.rmtree(work / "job", ignore_errors=True)
    naive = naive_loop(paths[: args.naive_images], args.model, work / "naive.npy")
    job = the_job(paths, args, work / "job")
    # Both wrote the same model's vectors: check they agree where they overlap.
    naive_vectors = np.load(work / "naive.npy")
    job_vectors = read_embedding_set(work / "job").vectors[: len(naive_vectors)]
    agreement = float(np.mean(np.sum(naive_vectors * job_vectors, axis=1)))
    speedup = job["images_per_second"] / naive["images_per_second"]
    command = "recsys " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    body = f"""Command: `{command}`
Machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, \
device {args.device}, load average {load_before:.1f} at the start (other jobs share the cores when it is \
over 0; both contestants ran in the same conditions, one after the other); \
{args.images} generated product JPEGs of {args.size}x{args.size} px; model {args.model}, fp32.

| contestant | images | seconds | images/s |
|---|---|---|---|
| (a) naive loop: PIL open, timm transform, eager fp32 torch, one image at a time | {naive['images']} | \
{naive['seconds']:.1f} | {naive['images_per_second']:.1f} |
| (b) `recsys embed` ({job['runtime']} fp32, batch {args.batch_size}, decoding workers, JPEG draft) | \
{job['images']} | {job['seconds']:.1f} | {job['images_per_second']:.1f} |

Speed-up (b)/(a): **{speedup:.1f}x**. Mean cosine between (a)'s and (b)'s vectors of the same \
images: {agreement:.4f} (JPEG draft decoding and the runtime differ, the weights do not).
Stage seconds of (b) (read and decode summed over worker processes): {job['stages']}. \
One-off ONNX export before (b), cached afterwards, not counted: {job['prepare_seconds']:.1f} s."""
    write_section(args.out, SECTION, body)
    print(body)
    return 0
