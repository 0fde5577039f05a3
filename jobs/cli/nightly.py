"""`recsys nightly --config FILE`: the scheduled job (jobs/nightly/run.py).

Exit codes: 0 a new version was published; 1 a gate failed (nothing published, the report says
which), another run holds the lock, or the run died (the next run resumes it); 2 a bad config.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG_FILE = "nightly.log"
STORE_CACHE = "store-cache"  # under work_dir: the mirror of a store on object storage


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("nightly", help="embed, index, fit behaviour, gate, publish, prune")
    parser.add_argument("--config", type=Path, required=True,
                        help="the pipeline's TOML file (see examples/nightly.toml)")
    parser.add_argument("--accept-drift", action="store_true",
                        help="publish even if the visual neighbours moved (a deliberate model change)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from index.remote import synced_store
    from jobs.errors import UsageError
    from jobs.nightly.config import load_config
    from jobs.nightly.run import run_nightly

    config = load_config(args.config)
    config.accept_drift = config.accept_drift or args.accept_drift
    try:
        config.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission
        raise UsageError(f"{args.config}: work_dir {config.work_dir}: not a folder ({exc})") from None
    # The stage lines also go to a log file in the work folder, beside the reports.
    handler = logging.FileHandler(config.work_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        # A store on object storage: the run works on its mirror in work_dir; what it published is
        # uploaded afterwards (a rejected or failed run uploads nothing).
        with synced_store(config.store, keep=config.keep_versions,
                          cache=config.work_dir / STORE_CACHE) as store:
            report = run_nightly(replace(config, store=store))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    print(f"published {report['published']} (was {report['serving_before'] or 'nothing'}) in "
          f"{report['seconds']:.1f}s; report {report['report_path']}")
    return 0
