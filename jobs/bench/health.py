"""`recsys bench health`: the catalogue health report's time at catalogue scale, beside the index
build it follows in the nightly, into BENCHMARKS.md ("## Health report").

Synthetic clustered unit vectors (no images: a nightly's embedding time depends on its pictures),
built into a version as `recsys index build` does; then the report of that version with drift
against a second version of the same items (the nightly's health stage), and its files written.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from jobs.bench.markdown import write_section
from jobs.errors import UsageError

SECTION = "## Health report"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("health", help="catalogue health report time at scale")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from index.build import build_version
    from index.store import load_version
    from index.synthetic import clustered_vectors, write_embedding_set
    from recsys.health import distribution_shift, health_report, write_report

    if args.items < 1000:
        raise UsageError(f"--items must be at least 1000, not {args.items}")
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-health-"))
    try:
        ids = [f"item{i:07d}" for i in range(args.items)]
        embeddings = write_embedding_set(work / "set", ids, clustered_vectors(args.items, args.dim))
        store = work / "store"
        started = time.perf_counter()
        first = build_version(embeddings, store)
        build_s = time.perf_counter() - started
        second = build_version(embeddings, store)
        new, old = load_version(store, second), load_version(store, first)
        started = time.perf_counter()
        health = health_report(new, against=old)
        report_s = time.perf_counter() - started
        started = time.perf_counter()  # the part of the report the plot of the shift needs, alone
        rows = np.arange(args.items)  # the same items in the same order in both versions
        distribution_shift(new, old, rows, rows, np.zeros(0, np.float32))
        shift_s = time.perf_counter() - started
        started = time.perf_counter()
        write_report(health, work / "report")
        write_s = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    drift = health.report["drift"] or {}
    body = "\n".join([
        f"Command: `recsys bench health --items {args.items} --dim {args.dim}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{platform.machine()}; load average {load_before:.1f} at the start).",
        "",
        f"{args.items:,} synthetic clustered unit vectors of {args.dim} dimensions, built as "
        "`recsys index build` does; the report of the second version with drift against the first "
        "(the nightly's health stage: duplicates from each item's 10 nearest, placeholders, failures, "
        "drift cosine, neighbour overlap@10 and the shift of the vector distribution on samples, "
        "cold items).",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| index build (one version, tuned) | {build_s:.1f} |",
        f"| health report, drift included | {report_s:.1f} |",
        f"| of which the shift of the vector distribution (timed again alone) | {shift_s:.1f} |",
        f"| health.json and health.html written | {write_s:.1f} |",
        "",
        f"The report costs {(report_s + write_s) / (build_s + report_s + write_s):.0%} of index build "
        "plus report (a nightly also embeds its changed images, which this leaves out). Found: "
        f"{len(health.report['duplicates'])} duplicate groups, {len(health.report['placeholders'])} "
        f"placeholders (the synthetic clusters are tight: their nearest pairs pass the duplicate "
        "threshold); neighbour overlap@10 against the same items rebuilt: "
        f"{drift.get('neighbour_overlap@10')}.",
    ])
    write_section(args.out, SECTION, body)
    print(body)
    return 0
