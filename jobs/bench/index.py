"""`recsys bench index`: the auto index against numpy brute force and hnswlib, into BENCHMARKS.md.

Clustered synthetic unit vectors (index/synthetic.py; default 1,000,000 x 256) plus held-out
queries from the same mixture. For each method: build time, memory (serialized index size),
recall@10 of the held-out queries against exact search, single-thread QPS (one query a call on one
thread, a server's situation) and batched QPS (all queries in one call, on the build threads).
Our index is built and tuned by the same code as `recsys index build` (build_tuned); hnswlib
gets the same M and efConstruction and is reported at the smallest ef whose recall reaches ours.
hnswlib is a dev-only dependency.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from jobs.bench.markdown import write_section
from jobs.errors import JobFailed, UsageError

SECTION = "## Index"
EF_CURVE = (16, 24, 32, 48, 64, 96, 128, 192, 256)
REPEATS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="the auto index vs numpy brute force and hnswlib")
    parser.add_argument("--n", type=int, default=1_000_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries")
    parser.add_argument("--factory", default="auto")
    parser.add_argument("--memory-budget", default=None)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-hnswlib", action="store_true", help="leave hnswlib out")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="'-' prints only")
    ondisk = parser.add_argument_group("--ondisk: IVF-PQ with inverted lists on disk, for 10M items and more "
                                       "(jobs/bench/index_ondisk.py; its own BENCHMARKS.md section)")
    ondisk.add_argument("--ondisk", action="store_true", help="run this benchmark instead of the comparison")
    ondisk.add_argument("--nlist", type=int, default=4096)
    ondisk.add_argument("--pq", type=int, default=32, help="PQ code bytes a vector")
    ondisk.add_argument("--train", type=int, default=163_840, help="training vectors (40 a list)")
    ondisk.add_argument("--block-rows", type=int, default=1_000_000, help="vectors added per block")
    ondisk.add_argument("--nprobe", type=lambda s: [int(v) for v in s.split(",")], default=[8, 16, 32, 64])
    ondisk.add_argument("--rerank", type=lambda s: [int(v) for v in s.split(",")], default=[100, 400],
                        help="PQ candidates re-ranked exactly (each value measured)")
    ondisk.add_argument("--work-dir", type=Path, default=Path("bench-ondisk"),
                        help="where the index and vectors files go (removed after unless --keep)")
    ondisk.add_argument("--keep", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index import threads
    from index.build import BuildOptions, build_tuned
    from index.factory import HNSW_EF_CONSTRUCTION, HNSW_M, choose_factory, parse_size
    from index.ids import stable_ids
    from index.synthetic import clustered_vectors
    from index.tuning import apply_search_params, exact_knn, hnsw_of

    if args.ondisk:
        from jobs.bench.index_ondisk import run_ondisk

        return run_ondisk(args)
    if args.n < 100 or args.queries < 10 or args.dim < 4:
        raise UsageError("--n must be at least 100, --queries at least 10, --dim at least 4")
    nthreads = threads.build_threads()
    load_before = os.getloadavg()[0]
    notes: list[str] = []  # CPU seconds of each build, to read through the load of other processes
    log = _Log()
    log(f"generating {args.n} + {args.queries} clustered vectors of dim {args.dim}")
    data = clustered_vectors(args.n + args.queries, args.dim, seed=args.seed)
    xb, xq = data[: args.n], np.ascontiguousarray(data[args.n:])
    ids = [f"item{i}" for i in range(args.n)]
    fids = stable_ids(ids)
    row_of = _row_lookup(fids)
    k = 10

    with threads.threads(nthreads):
        started = time.perf_counter()
        _, gt = exact_knn(xb, xq, k)
        faiss_flat_s = time.perf_counter() - started
    rows = []

    # -- numpy brute force (numpy's own BLAS threads) -------------------------------------------
    log("numpy brute force")
    started = time.perf_counter()
    np_ids = _numpy_knn(xb, xq, k)
    np_batched = len(xq) / (time.perf_counter() - started)
    single = xq[: min(20, len(xq))]
    started = time.perf_counter()
    for q in single:
        s = xb @ q
        np.argpartition(-s, k)[:k]
    np_single = len(single) / (time.perf_counter() - started)
    rows.append(("numpy brute force (xb @ q, argpartition)", 0.0, xb.nbytes, "exact",
                 _recall(np_ids, gt), np_single, np_batched))

    # -- ours ---------------------------------------------------------------------------------
    budget = parse_size(args.memory_budget)
    factory = args.factory
    reason = "given"
    if factory == "auto":
        factory, reason = choose_factory(args.n, args.dim, budget)
    log(f"ours: {factory} ({reason})")
    with threads.threads(nthreads):
        started, cpu_started = time.perf_counter(), time.process_time()
        index, _, tuned, build_s = build_tuned(xb, fids, factory, args.target_recall,
                                               BuildOptions(seed=args.seed))
        tune_s = time.perf_counter() - started - build_s
        notes.append(f"ours {time.process_time() - cpu_started:,.0f} s")
    memory = _faiss_size(index)
    label = f"ours: {factory}" + (f", efConstruction {HNSW_EF_CONSTRUCTION}" if hnsw_of(index) else "")
    tunable = hnsw_of(index) is not None

    h = None
    if not args.no_hnswlib:
        try:
            import hnswlib
        except ImportError:
            raise UsageError("hnswlib is not installed (pip install -e .[dev]); "
                             "or pass --no-hnswlib") from None
        log(f"hnswlib: M {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}")
        h = hnswlib.Index(space="ip", dim=args.dim)
        started, cpu_started = time.perf_counter(), time.process_time()
        h.init_index(max_elements=args.n, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION,
                     random_seed=args.seed)
        h.add_items(xb, np.arange(args.n), num_threads=nthreads)
        h_build = time.perf_counter() - started
        notes.append(f"hnswlib {time.process_time() - cpu_started:,.0f} s")
        h_memory = _hnswlib_size(h)

    # Measure both at each ef, interleaved and best of REPEATS, so that load from other processes on
    # the shared cores hits both alike.
    log("measuring recall and QPS")
    efs = sorted(set(EF_CURVE) | set(tuned.params.values())) if tunable else list(EF_CURVE)
    curve = []
    for i, ef in enumerate(efs):
        if tunable or i == 0:
            if tunable:
                apply_search_params(index, {"efSearch": ef})
            ours = [_measure_faiss(index, xq, gt, row_of, k, nthreads) for _ in range(REPEATS)]
            curve.append(("ours", ef if tunable else None, ours[0][0], max(m[1] for m in ours),
                          max(m[2] for m in ours)))
        if h is not None:
            h.set_ef(ef)
            theirs = [_measure_hnswlib(h, xq, gt, k, nthreads) for _ in range(REPEATS)]
            curve.append(("hnswlib", ef, theirs[0][0], max(m[1] for m in theirs), max(m[2] for m in theirs)))
    apply_search_params(index, tuned.params)
    at = tuned.params.get("efSearch")
    _, _, ours_recall, ours_single, ours_batched = next(c for c in curve if c[0] == "ours" and c[1] == at)
    rows.append((label, build_s + tune_s, memory, _params(tuned.params), ours_recall, ours_single,
                 ours_batched))
    hnsw_row = None
    if h is not None:
        measured = [c for c in curve if c[0] == "hnswlib"]
        reach = [c for c in measured if c[2] >= ours_recall] or [max(measured, key=lambda c: c[2])]
        _, ef, recall, single_qps, batched_qps = reach[0]
        hnsw_row = (f"hnswlib {getattr(hnswlib, '__version__', '')}".rstrip()
                    + f": M {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}",
                    h_build, h_memory, f"ef {ef}", recall, single_qps, batched_qps)
        rows.append(hnsw_row)
    curve = [c for c in curve if c[1] is not None]

    body = _report(args, factory, reason, tuned, rows, curve, hnsw_row, nthreads, faiss_flat_s)
    body += (f"\n\nBuild CPU time (all threads): {'; '.join(notes)}. Load average (1 min) "
             f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end: other jobs shared "
             "the cores, so wall-clock builds and QPS here are lower bounds for an idle machine.")
    print(body)
    if str(args.out) != "-":
        write_section(args.out, SECTION, body)
        log(f"wrote section {SECTION!r} of {args.out}")
    ok = ours_recall >= args.target_recall
    if not ok:
        raise JobFailed(f"recall@10 {ours_recall:.3f} below the target {args.target_recall}")
    return 0


def _measure_faiss(index, xq, gt, row_of, k, nthreads) -> tuple[float, float, float]:
    from index import threads

    with threads.threads(nthreads):
        started = time.perf_counter()
        _, found = index.search(xq, k)
        batched = len(xq) / (time.perf_counter() - started)
    with threads.threads(1):
        started = time.perf_counter()
        for i in range(len(xq)):
            index.search(xq[i:i + 1], k)
        single = len(xq) / (time.perf_counter() - started)
    return _recall(row_of(found), gt), single, batched


def _measure_hnswlib(h, xq, gt, k, nthreads) -> tuple[float, float, float]:
    started = time.perf_counter()
    labels, _ = h.knn_query(xq, k=k, num_threads=nthreads)
    batched = len(xq) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(len(xq)):
        h.knn_query(xq[i:i + 1], k=k, num_threads=1)
    single = len(xq) / (time.perf_counter() - started)
    return _recall(labels.astype(np.int64), gt), single, batched


def _numpy_knn(xb: np.ndarray, xq: np.ndarray, k: int, block: int = 100) -> np.ndarray:
    out = np.empty((len(xq), k), dtype=np.int64)
    for start in range(0, len(xq), block):
        s = xq[start:start + block] @ xb.T
        top = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
        out[start:start + block] = np.take_along_axis(top, order, 1)
    return out


def _recall(found: np.ndarray, gt: np.ndarray) -> float:
    from index.tuning import recall_at_k

    return recall_at_k(found, gt)


def _row_lookup(fids: np.ndarray):
    order = np.argsort(fids)
    sorted_fids = fids[order]

    def rows(found: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_fids, found), 0, len(fids) - 1)
        return np.where(found >= 0, order[pos], -1)

    return rows


def _faiss_size(index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def _hnswlib_size(h) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.bin")
        h.save_index(path)
        return os.path.getsize(path)


def _params(params: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in params.items()) or "exact"


def _report(args, factory, reason, tuned, rows, curve, hnsw_row, nthreads, faiss_flat_s) -> str:
    cmd = "recsys bench index " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "index"] else \
        "recsys bench index"
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores ({_cpu()}), faiss {faiss.__version__}. Command: `{cmd.strip()}`",
        "",
        f"Data: {args.n:,} x {args.dim} float32 unit vectors, clustered with a low intrinsic dimension "
        f"(index/synthetic.py, seed {args.seed}), and {args.queries:,} held-out queries from the same "
        "mixture; recall@10 against exact inner-product search. Single-thread QPS: one query a call on "
        f"one thread; batched: all queries in one call on {nthreads} threads. Memory: serialized index size.",
        "",
        f"Auto choice: `{factory}` ({reason}); tuned at build time to {_params(tuned.params)} "
        f"(recall@10 {tuned.recall:.3f} on up to 1,000 items held out of the index while tuning).",
        "",
        "| method | build + tune s | memory MiB | search | recall@10 | QPS 1 thread | QPS batched |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, build_s, memory, params, recall, single, batched in rows:
        lines.append(f"| {name} | {build_s:.1f} | {memory / 2**20:,.0f} | {params} | {recall:.4f} | "
                     f"{single:,.0f} | {batched:,.0f} |")
    lines.append("")
    lines.append(f"Exact ground truth by FAISS brute force took {faiss_flat_s:.1f} s for {args.queries:,} "
                 "queries. numpy's row uses numpy's own BLAS threads. QPS figures are the best of "
                 f"{REPEATS} passes, ours and hnswlib's interleaved.")
    if curve:
        lines += ["", "Recall and single-thread QPS by ef (same queries):", "",
                  "| ef | " + " | ".join(f"{m} recall@10 | {m} QPS" for m in sorted({c[0] for c in curve},
                                                                                   reverse=True)) + " |",
                  "|---:|" + "---:|---:|" * len({c[0] for c in curve})]
        for ef in sorted({c[1] for c in curve}):
            cells = []
            for method in sorted({c[0] for c in curve}, reverse=True):
                hit = [c for c in curve if c[0] == method and c[1] == ef]
                cells += [f"{hit[0][2]:.4f}", f"{hit[0][3]:,.0f}"] if hit else ["", ""]
            lines.append(f"| {ef} | " + " | ".join(cells) + " |")
    ours = rows[1]
    verdict = [f"recall@10 {ours[4]:.3f} (target {args.target_recall})",
               f"single-thread QPS {ours[5]:,.0f} (goal 3,000)",
               f"build + tune {ours[1]:.0f} s (goal < 600 s)"]
    if hnsw_row:
        verdict.append(f"QPS {ours[5] / hnsw_row[5]:.2f} x hnswlib's at recall {hnsw_row[4]:.3f} "
                       "(goal >= 0.80)")
    ratios = [o[3] / h[3] for o in curve for h in curve
              if o[0] == "ours" and h[0] == "hnswlib" and o[1] == h[1]]
    if ratios:
        verdict.append(f"at equal ef our QPS is {float(np.median(ratios)):.2f} x hnswlib's (median; "
                       f"{min(ratios):.2f} to {max(ratios):.2f})")
    lines += ["", "Against the goals: " + "; ".join(verdict) + "."]
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class _Log:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", file=sys.stderr, flush=True)
