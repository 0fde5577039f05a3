"""`recsys export`: every item's top-k neighbours and, with --users, every known user's
recommendations, to Parquet (DESIGN.md), for shops that push answers into their own cache.

    similar_items.parquet         item_id, rank (1 = best), neighbour_id, score
    user_recommendations.parquet  user_id, rank, item_id, score

Answers come from the same path as the API's (`recsys.answers`, so --filter, --group-by and
--diversity mean what they mean there), a batch of items at a time (one FAISS search per batch for
unconstrained visual answers; --workers batches side by side in threads), and are written in order,
batch by batch, with one ParquetWriter under a temporary name that is renamed into place when
the file is complete.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.cli.query import add_shop_options, check_k, shop_constraints
from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError
from recsys.answers import DEFAULT_MODE, MODES

if TYPE_CHECKING:
    import pyarrow as pa

    from recsys.answers import Answer

SIMILAR_FILE = "similar_items.parquet"
USERS_FILE = "user_recommendations.parquet"
BATCH = 2048  # query items (or users) per batch, and per Parquet row group


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export",
                                   help="every item's neighbours (and users' recommendations) to Parquet")
    parser.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the Parquet files into")
    parser.add_argument("-k", type=int, default=20, help="neighbours per item (and items per user)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE)
    parser.add_argument("--users", action="store_true", help="also every known user's recommendations")
    parser.add_argument("--version", default=None, help="an index version (default: CURRENT)")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="items per batch and row group")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="batches answered side by side in threads (default: every core)")
    add_shop_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index.remote import local_copy
    from recsys.answers import Answers
    from recsys.errors import InputError

    check_k(args.k)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    behaviour = "required" if args.users else ("none" if args.mode == "visual" else "optional")
    try:  # IndexLoadError: exit 1 (jobs/cli/__init__.py)
        answers = Answers.load(local_copy(args.store, (args.version,)), args.version, behaviour=behaviour)
    except InputError as exc:  # no behaviour data for --users; a broken behaviour/ folder or rules.toml
        raise UsageError(f"--users: {exc}" if args.users else str(exc)) from None
    constraints = shop_constraints(args, answers)
    used, note = answers.answering_mode(args.mode)
    if note:
        print(f"recsys export: --mode {args.mode}: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def item_batch(batch: list[str]) -> pa.Table:
        found = answers.similar_batch(batch, args.k, args.mode, constraints)
        return _table("item_id", "neighbour_id", batch, found)

    tables = _in_order(item_batch, _batches(answers.item_ids, args.batch_size), args.workers)
    rows = write_parquet(args.out / SIMILAR_FILE, _schema("item_id", "neighbour_id"), tables)
    print(f"{args.out / SIMILAR_FILE}: {rows} rows for {len(answers)} items, mode {used}, "
          f"version {answers.version} ({time.perf_counter() - started:.1f} s)")
    if args.users:
        users = [str(u) for u in answers.behaviour.interactions.user_ids]

        def user_batch(batch: list[str]) -> pa.Table:
            found = [answers.recommend(u, args.k, constraints) for u in batch]
            return _table("user_id", "item_id", batch, found)

        tables = _in_order(user_batch, _batches(users, args.batch_size), args.workers)
        rows = write_parquet(args.out / USERS_FILE, _schema("user_id", "item_id"), tables)
        print(f"{args.out / USERS_FILE}: {rows} rows for {len(users)} users "
              f"({time.perf_counter() - started:.1f} s)")
    return 0


def _in_order(work: Callable[[list[str]], pa.Table], batches: Iterator[list[str]],
              workers: int) -> Iterator[pa.Table]:
    """work(batch) for every batch, `workers` threads side by side, yielded in batch order; at most
    2 x workers batches are in flight, so memory stays bounded whatever the output's size."""
    workers = max(1, workers)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[pa.Table]] = deque()
        for batch in batches:
            pending.append(pool.submit(work, batch))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _batches(ids: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _schema(key: str, value: str) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(key, pa.string()), ("rank", pa.int32()), (value, pa.string()),
                      ("score", pa.float32())])


def _table(key: str, value: str, queries: list[str], answers: list[Answer]) -> pa.Table:
    import pyarrow as pa

    keys, ranks, values, scores = [], [], [], []
    for query, answer in zip(queries, answers, strict=True):
        for rank, (item_id, score) in enumerate(answer.rows, 1):
            keys.append(query)
            ranks.append(rank)
            values.append(item_id)
            scores.append(score)
    return pa.table({key: pa.array(keys, pa.string()), "rank": pa.array(ranks, pa.int32()),
                     value: pa.array(values, pa.string()), "score": pa.array(scores, pa.float32())})


def write_parquet(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> int:
    """Tables into one Parquet file (a row group each) under a temporary name, renamed into place
    once complete; nothing is left behind on failure. Returns the number of rows."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table.cast(schema))
                rows += table.num_rows
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
