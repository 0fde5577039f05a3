"""`recsys embed`: a catalogue (file or folder of images) to an embedding set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embeddings.names import DEFAULT_MODEL, DEVICES, ENGINES, RUNTIMES
from jobs.errors import JobFailed, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="embed a catalogue's images into an embedding set")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalog", type=Path, help="Parquet or CSV with item_id and image columns")
    source.add_argument("--images", type=Path, help="a folder of images; item_id is the relative path")
    parser.add_argument("--out", type=Path, required=True, help="the embedding set folder to write")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="timm name, checkpoint or artifact folder")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding workers: processes (torch), threads (onnxruntime); default cores - 1")
    parser.add_argument("--previous", type=Path, default=None,
                        help="an earlier embedding set: unchanged images reuse its vectors")
    parser.add_argument("--engine", default="local", choices=list(ENGINES),
                        help="ray: Ray Data (local instance, or RAY_ADDRESS / --ray-address)")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster to run on (default: RAY_ADDRESS)")
    parser.add_argument("--ray-actors", type=int, default=None,
                        help="model actors (default: one per GPU, or one on CPUs)")
    parser.add_argument("--runtime", default="auto", choices=list(RUNTIMES),
                        help="auto: onnxruntime fp32 on the CPU, torch (autocast) on a GPU")
    parser.add_argument("--max-failure-rate", type=float, default=0.05)
    parser.add_argument("--part-size", type=int, default=2048, help="items per part file (the resume unit)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that the rest of the command line does not pay for them; torch and timm load
    # only if the model needs them (an ONNX artifact on the CPU does not).
    from embeddings.catalog import catalog_from_folder, read_catalog
    from embeddings.engines import embed
    from embeddings.runner import EmbedFailed, EmbedOptions

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.part_size < 1:
        raise UsageError(f"--part-size must be at least 1, not {args.part_size}")
    if not 0.0 <= args.max_failure_rate <= 1.0:
        raise UsageError(f"--max-failure-rate must be between 0 and 1, not {args.max_failure_rate}")
    catalog = read_catalog(args.catalog) if args.catalog else catalog_from_folder(args.images)
    options = EmbedOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        part_size=args.part_size,
        max_failure_rate=args.max_failure_rate,
        previous=args.previous,
        compile=args.compile,
        progress=not args.no_progress,
    )
    source = str(args.catalog or args.images)
    try:
        report = embed(catalog, args.out, args.model, options, engine=args.engine, runtime=args.runtime,
                       source=source, ray_address=args.ray_address, ray_actors=args.ray_actors)
    except EmbedFailed as exc:
        print(json.dumps(exc.report["counts"]))
        raise JobFailed(str(exc)) from None
    counts, timings = report["counts"], report["timings"]
    print(
        f"embedded {counts['total']} items into {args.out}: computed {counts['computed']}, "
        f"reused {counts['reused']}, failed {counts['failed']}; "
        f"{timings['images_per_second']} images/s; stage seconds {json.dumps(timings['seconds'])}"
    )
    return 0
