"""`recsys bench index --ondisk`: IVF-PQ with inverted lists on disk at 10M items and beyond.

Vectors come from the same kind of mixture as index/synthetic.py (clustered, low intrinsic
dimension, unit length), generated one block at a time so that no step holds the whole set: each
block is written to a raw float32 file (the re-ranking vectors), folded into the exact top-k of the
held-out queries (the ground truth, brute force over every vector), and added to its own copy of
the trained index, which is written out; the blocks' lists are then merged into one on-disk lists
file (index/ondisk.py). Reported: training and build time, peak memory of the build, the files, the
memory model, and per nprobe the recall@10 (tie-aware, against the exact truth: index.tuning's
ExactTruth) and single-thread QPS, for PQ alone and for PQ candidates re-ranked exactly from the
memory-mapped vectors. Written to BENCHMARKS.md under "## Index beyond 10M items".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from jobs.bench.behaviour_scale import _pythonpath
from jobs.bench.markdown import write_section
from jobs.errors import JobFailed, UsageError

SECTION = "## Index beyond 10M items"
K = 10


class Mixture:
    """index/synthetic.py's generator, drawable block by block (block b always gives the same rows)."""

    def __init__(self, dim: int, seed: int = 0, latent: int = 32, clusters: int = 1000,
                 noise: float = 0.1) -> None:
        rng = np.random.default_rng(seed)
        self.seed, self.latent, self.noise, self.dim = seed, latent, noise, dim
        self.centres = rng.standard_normal((clusters, latent)).astype(np.float32)
        self.spread = rng.uniform(0.3, 1.0, clusters).astype(np.float32)
        self.projection = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)

    def draw(self, m: int, stream: int, chunk: int = 65_536) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        out = np.empty((m, self.dim), dtype=np.float32)
        for start in range(0, m, chunk):  # in pieces: the transients stay small beside the block
            n = min(chunk, m - start)
            which = rng.integers(0, len(self.centres), n)
            noise = rng.standard_normal((n, self.latent), np.float32)
            z = self.centres[which] + self.spread[which, None] * noise
            x = z @ self.projection + self.noise * rng.standard_normal((n, self.dim), dtype=np.float32)
            out[start:start + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def run_ondisk(args: argparse.Namespace) -> int:
    from index import ondisk, threads
    from index.tuning import exact_knn

    if args.n < 10_000 or args.dim % args.pq:
        raise UsageError("--ondisk: --n at least 10000, and --pq must divide --dim")
    work = Path(args.work_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    nthreads = threads.build_threads()
    load_before = os.getloadavg()[0]
    factory = f"IVF{args.nlist}_HNSW32,PQ{args.pq}np"
    mixture = Mixture(args.dim, args.seed)
    xq = mixture.draw(args.queries, stream=1 << 30)  # held out: never indexed
    vectors_path = work / "vectors.f32"
    timings = {"generate and truth": 0.0}  # wall seconds
    cpu = {"generate and truth": 0.0}  # CPU seconds of this process (all threads): the load-free cost
    say = _Log()

    with threads.threads(nthreads):
        say(f"training {factory} on {args.train:,} vectors")
        started, cpu_started = time.perf_counter(), time.process_time()
        trained = ondisk.train(mixture.draw(args.train, stream=(1 << 30) + 1), factory)
        timings["train"], cpu["train"] = time.perf_counter() - started, time.process_time() - cpu_started
        best_s = np.full((len(xq), K), -np.inf, dtype=np.float32)
        best_i = np.full((len(xq), K), -1, dtype=np.int64)

        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            nonlocal best_s, best_i
            with open(vectors_path, "wb") as out:
                for b, start in enumerate(range(0, args.n, args.block_rows)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    m = min(args.block_rows, args.n - start)
                    block = mixture.draw(m, stream=b)
                    block.tofile(out)
                    scores, rows = exact_knn(block, xq, K)
                    both_s, both_i = np.hstack([best_s, scores]), np.hstack([best_i, rows + start])
                    top = np.argsort(-both_s, axis=1, kind="stable")[:, :K]
                    best_s, best_i = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
                    timings["generate and truth"] += time.perf_counter() - t0
                    cpu["generate and truth"] += time.process_time() - c0
                    say(f"block {b}: rows {start:,} to {start + m:,}")
                    yield block, np.arange(start, start + m, dtype=np.int64)

        started, cpu_started = time.perf_counter(), time.process_time()
        ondisk.build(trained, blocks(), work / "ivf")
        timings["add and merge"] = time.perf_counter() - started - timings["generate and truth"]
        cpu["add and merge"] = time.process_time() - cpu_started - cpu["generate and truth"]
    build_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    del trained

    say("measuring recall and single-thread QPS in a fresh process (its memory is the serving cost)")
    np.save(work / "queries.npy", xq)
    np.save(work / "truth.npy", best_i)
    child = subprocess.run([sys.executable, "-m", "jobs.bench.index_ondisk", str(work), str(args.n),
                            str(args.dim), ",".join(map(str, args.nprobe)),
                            ",".join(map(str, args.rerank))],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
    if child.returncode != 0:
        raise JobFailed(f"the search measurement failed: {child.stderr[-2000:]}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    rss_open, rss_serving, rows = measured["rss_open"], measured["rss_serving"], measured["rows"]
    for nprobe, candidates, recall, qps, cpu_qps in rows:
        say(f"nprobe {nprobe}, re-ranked {candidates or 'none'}: recall {recall:.3f} at {qps:,.0f} QPS "
            f"({cpu_qps:,.0f} a CPU second)")
    model = ondisk.MemoryModel(args.n, args.dim, args.nlist, args.pq)
    body = _report(args, factory, timings, cpu, build_peak, rss_open, rss_serving, rows, model,
                   os.path.getsize(work / "ivf" / ondisk.LISTS), os.path.getsize(vectors_path), nthreads,
                   load_before)
    print(body)
    if str(args.out) != "-":
        write_section(args.out, SECTION, body)
    if not args.keep:
        shutil.rmtree(work)
    return 0


def measure_search(work: Path, n: int, dim: int, nprobes: list[int], reranks: list[int]) -> dict:
    """In its own process: open the on-disk index and the vectors, search one query a call on one
    thread at each nprobe, PQ alone and re-ranked; recall against the saved exact truth."""
    from index import ondisk, threads
    from index.tuning import ExactTruth

    xq, truth_ids = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    index = ondisk.open_index(work / "ivf" / ondisk.POPULATED)
    vectors = np.memmap(work / "vectors.f32", dtype=np.float32, mode="r", shape=(n, dim))
    truth = ExactTruth(xq, truth_ids, vectors, np.arange(n, dtype=np.int64))
    rss_open = _rss()
    rows = []
    with threads.threads(1):
        for nprobe in nprobes:
            faiss.extract_index_ivf(index).nprobe = nprobe
            for candidates in [0, *reranks]:
                found, qps, cpu_qps = _measure(
                    (lambda q: index.search(q, K)[1]) if candidates == 0 else
                    (lambda q, c=candidates: ondisk.rerank(index, vectors, q, K, c)[1]), xq)
                rows.append((nprobe, candidates, truth.recall(found), qps, cpu_qps))
    return {"rss_open": rss_open, "rss_serving": _rss(), "rows": rows}


def _measure(search, xq: np.ndarray) -> tuple[np.ndarray, float, float]:
    """One query a call; the found ids, queries per wall second and per CPU second of this process."""
    found = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(len(xq)):
        found.append(search(xq[i:i + 1]))
    return (np.vstack(found), len(xq) / (time.perf_counter() - started),
            len(xq) / max(time.process_time() - cpu_started, 1e-9))


def _rss() -> dict[str, int]:
    """Resident bytes: `anon` (the process's own memory) and `file` (pages of memory-mapped files:
    the page cache, shared and given back under memory pressure)."""
    out = {"anon": 0, "file": 0}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            out["anon" if line.startswith("RssAnon") else "file"] = int(line.split()[1]) * 1024
    return out


def _report(args, factory, timings, cpu, build_peak, rss_open, rss_serving, rows, model, lists_bytes,
            vectors_bytes, nthreads, load_before) -> str:
    gib = 2**30
    cmd = "recsys " + " ".join(sys.argv[1:])
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs (load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; this process at nice {os.nice(0)}), "
        f"faiss {faiss.__version__}. Command: `{cmd}`",
        "",
        __doc__.strip().split("\n\n")[1].replace("\n", " "),
        "",
        f"Index: `{factory}` over {args.n:,} x {args.dim} float32 vectors "
        f"({args.n * args.dim * 4 / gib:.1f} GiB as floats), trained on {args.train:,} vectors, "
        f"filled in blocks of {args.block_rows:,}, "
        f"{nthreads} build threads. {args.queries:,} held-out queries from the same mixture.",
        "",
        "| step | wall seconds | CPU seconds (all threads) |", "|---|---:|---:|",
        *[f"| {name} | {seconds:,.1f} | {cpu[name]:,.1f} |" for name, seconds in timings.items()],
        f"| build (train + add and merge) | {timings['train'] + timings['add and merge']:,.1f} | "
        f"{cpu['train'] + cpu['add and merge']:,.1f} |",
        "",
        "| memory and files | measured | model (index/ondisk.py MemoryModel) |", "|---|---:|---:|",
        f"| peak RSS of the whole build (with the Python runtime, the queries and the truth) | "
        f"{build_peak / gib:.2f} GiB | {model.build_peak(args.block_rows) / gib:.2f} GiB "
        "(the index's part) |",
        "| a fresh process after opening the index and the vectors (memory-mapped): own memory, "
        f"mapped file pages | {rss_open['anon'] / gib:.2f} GiB, {rss_open['file'] / gib:.2f} GiB | "
        f"{model.ram / 2**20:.1f} MiB resident index |",
        "| the same after all searches: own memory, mapped file pages (the lists and vector rows they "
        f"touched, page cache) | {rss_serving['anon'] / gib:.2f} GiB, {rss_serving['file'] / gib:.2f} GiB | "
        f"{model.hot_lists(max(args.nprobe)) / 2**20:.1f} MiB read a query at nprobe {max(args.nprobe)} |",
        f"| inverted lists on disk | {lists_bytes / gib:.2f} GiB | {model.lists_disk / gib:.2f} GiB |",
        f"| float32 vectors on disk (re-ranking) | {vectors_bytes / gib:.2f} GiB | "
        f"{model.vectors_disk / gib:.2f} GiB |",
        "",
        "| nprobe | PQ candidates re-ranked exactly | recall@10 | QPS 1 thread (per CPU second) |",
        "|---:|---:|---:|---:|",
        *[f"| {p} | {c or 'none: PQ scores'} | {r:.4f} | {q:,.0f} ({qc:,.0f}) |" for p, c, r, q, qc in rows],
        "",
        "QPS: one query a call on one thread, wall clock; in brackets, queries per CPU second of the "
        "measuring process, which the load of other jobs on the shared cores does not lower.",
        "",
        "The lists and vectors files were just written, so the page cache held them while measuring: these "
        "are warm-cache figures. From a cold disk a query reads its nprobe lists (each one sequential run) "
        f"and {max(args.rerank)} scattered vector rows, each a random 4 KiB read (tens of microseconds on "
        "NVMe): milliseconds a query unless the vectors file stays in the page cache or the re-ranking "
        "uses 8-bit codes held in memory. Mapped file pages are page cache: shared, and given back under "
        "memory pressure; the process's own memory is the first figure.",
    ]
    return "\n".join(lines)


class _Log:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":  # the measuring child of run_ondisk
    work_dir, n_rows, dim_, nprobe_list, rerank_list = sys.argv[1:6]
    print(json.dumps(measure_search(Path(work_dir), int(n_rows), int(dim_),
                                    [int(v) for v in nprobe_list.split(",")],
                                    [int(v) for v in rerank_list.split(",")])))
