"""`recsys report`: catalogue health and drift of a store version (DESIGN.md "Health report"),
written as `health.json` and `health.html` in --out (recsys/health.py computes them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from index.errors import IndexLoadError
from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="catalogue health and drift of a version")
    parser.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    parser.add_argument("--version", default=None, help="the version to report on (default: CURRENT)")
    parser.add_argument("--against", default=None, help="a version to measure drift against")
    parser.add_argument("--out", type=Path, required=True, help="the folder for health.json and health.html")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index.remote import is_url
    from index.store import load_version
    from recsys.health import health_report, write_report

    if not is_url(args.store) and not args.store.is_dir():
        raise UsageError(f"--store {args.store}: no such folder")
    loaded = _load(load_version, args.store, args.version, "--version")
    against = None if args.against is None else _load(load_version, args.store, args.against, "--against")
    health = health_report(loaded, against)
    json_path, html_path = write_report(health, args.out)
    r = health.report
    print(f"version {r['version']}: {r['items']} items, {len(r['duplicates'])} duplicate groups, "
          f"{len(r['placeholders'])} placeholders, {r['failures']['count']} failures, "
          f"cold items {r['cold_items']}")
    if r["drift"] is not None:
        d = r["drift"]
        print(f"drift against {d['against']}: {d['same_image_items']} unchanged images, cosine "
              f"min {d['same_image_cosine']['min']} mean {d['same_image_cosine']['mean']}, "
              f"neighbour overlap@10 {d['neighbour_overlap@10']}")
        shift = d["distribution"]
        if shift["spread"] is not None:
            spread = shift["spread"]
            print(f"distribution over {shift['items']} items: mean-vector length old {spread['old']} "
                  f"new {spread['new']}, cosine of the means {shift['centroid_cosine']}")
    print(f"{json_path}\n{html_path}")
    return 0


def _load(load_version, store: Path | str, version: str | None, option: str):
    from index.remote import local_copy

    try:
        return load_version(local_copy(store, (version,)), version)
    except IndexLoadError as exc:
        raise UsageError(f"{option} {version or 'CURRENT'}: {exc}") from None
