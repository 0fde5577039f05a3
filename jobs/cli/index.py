"""`recsys index build|eval|list|publish|rollback`: the versioned FAISS index store."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from index.errors import IndexLoadError, RecallNotMet, UpdateNotSupported
from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import JobFailed, UsageError

log = logging.getLogger("recsys.index")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="build, evaluate and publish FAISS index versions")
    sub = parser.add_subparsers(dest="index_command", required=True)

    build = sub.add_parser("build", help="build a version from an embedding set (prints its id)")
    build.add_argument("--embeddings", type=Path, required=True, help="the embedding set folder")
    build.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    build.add_argument("--factory", default="auto", help="auto, or any FAISS index factory string")
    build.add_argument("--memory-budget", default=None, help="e.g. 8G (default: half the machine's memory)")
    build.add_argument("--target-recall", type=float, default=0.95, help="recall@10 to tune search for")
    build.add_argument("--no-publish", action="store_true", help="build but leave CURRENT as it is")
    build.add_argument("--keep", type=int, default=5, help="versions to keep (older ones are deleted)")
    build.add_argument("--update", action="store_true",
                       help="add, remove and replace only what changed since CURRENT where the index "
                            "type allows it; otherwise a full build")
    build.set_defaults(func=run_build)

    ev = sub.add_parser("eval", help="recall@k and QPS of a stored version")
    ev.add_argument("--store", type=store_location, required=True)
    ev.add_argument("--version", default=None, help="default: CURRENT")
    ev.add_argument("-k", type=int, default=10)
    ev.add_argument("--queries", type=int, default=1000)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=run_eval)

    ls = sub.add_parser("list", help="the store's versions, oldest first")
    ls.add_argument("--store", type=store_location, required=True)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    pub = sub.add_parser("publish", help="make a version CURRENT")
    pub.add_argument("version")
    pub.add_argument("--store", type=store_location, required=True)
    pub.set_defaults(func=run_publish)

    rb = sub.add_parser("rollback", help="publish the previously published version again")
    rb.add_argument("--store", type=store_location, required=True)
    rb.set_defaults(func=run_rollback)


def run_build(args: argparse.Namespace) -> int:
    from index.build import build_version, update_version
    from index.factory import parse_size
    from index.remote import synced_store
    from index.store import IndexStore

    if args.keep < 1:
        raise UsageError(f"--keep must be at least 1, not {args.keep}")
    budget = parse_size(args.memory_budget)
    # A remote store: built in its local mirror, uploaded (then published) when the build succeeds.
    with synced_store(args.store, versions=(None,) if args.update else (), keep=args.keep) as store:
        IndexStore(store).clean_stale_staging()  # left by a crashed build
        try:
            version = None
            if args.update:
                try:
                    version = update_version(args.embeddings, store, target_recall=args.target_recall,
                                             publish=not args.no_publish, keep=args.keep)
                except (UpdateNotSupported, IndexLoadError) as exc:
                    log.warning("no in-place update (%s); building the whole set", exc)
            if version is None:
                version = build_version(args.embeddings, store, args.factory, budget, args.target_recall,
                                        publish=not args.no_publish, keep=args.keep)
        except RecallNotMet as exc:
            raise JobFailed(f"{exc}; lower --target-recall or choose another --factory") from None
    print(version)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from index.evaluate import evaluate

    if args.k < 1 or args.queries < 1:
        raise UsageError("-k and --queries must be at least 1")
    report = evaluate(_load(args.store, args.version), args.k, args.queries)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from index.remote import open_store

    store = open_store(args.store)
    current = store.current_version()
    metas = store.versions()
    if args.json:
        print(json.dumps([{**_summary(m), "current": m["version"] == current} for m in metas], indent=2))
        return 0
    print(f"{'':2}{'version':26} {'created_at':26} {'factory':28} {'count':>10} {'recall@10':>9}")
    for m in metas:
        s = _summary(m)
        mark = "* " if m["version"] == current else "  "
        print(f"{mark}{s['version']:26} {s['created_at']:26} {s['factory']:28} {s['count']:>10} "
              f"{s['recall@10']:>9}")
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from index.remote import open_store

    try:
        open_store(args.store).publish(args.version)
    except IndexLoadError as exc:
        raise JobFailed(f"{exc}; CURRENT unchanged") from None
    print(args.version)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from index.remote import open_store

    try:
        version = open_store(args.store).rollback()
    except IndexLoadError as exc:
        raise JobFailed(f"{exc}; CURRENT unchanged") from None
    print(version)
    return 0


def _load(store: Path | str, version: str | None):
    from index.remote import local_copy
    from index.store import load_version

    # IndexLoadError: exit 1 (jobs/cli/__init__.py)
    return load_version(local_copy(store, (version,)), version)


def _summary(meta: dict) -> dict:
    return {key: meta.get(key) for key in ("version", "created_at", "factory", "count", "dim", "recall@10",
                                           "search", "model_id", "parent")}
