"""Building index versions from an embedding set: full builds and in-place updates.

A version holds (index/store.py): the FAISS index over stable int64 ids (index/ids.py);
`items.parquet` (item_id, faiss_id, image, metadata) in add order; `vectors.npy`, the unit
vectors in float16 in the same order (for `vector(item_id)`, exact re-scoring of filtered queries
and exact recall measurement with any index type, at half the size of float32); for sets up to
`neighbours_max` items, the top `neighbours_k` neighbours of every item from one batched search;
and `meta.json`. Search parameters are tuned to the target recall before the version is written;
under `--factory auto`, a missed target moves on to the next of `auto_plans` (index/factory.py),
each attempt logged and recorded in meta.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from embeddings.embedding_set import EmbeddingSet, read_embedding_set
from index import threads
from index.errors import InputError, RecallNotMet, UpdateNotSupported
from index.factory import FLAT_MAX_COST, HNSW_EF_CONSTRUCTION, Plan, auto_plans, estimate_memory
from index.ids import stable_ids
from index.loaded import (
    INDEX_FILE,
    ITEMS_FILE,
    NEIGHBOUR_SCORES_FILE,
    NEIGHBOURS_FILE,
    VECTORS_FILE,
)
from index.store import DEFAULT_KEEP, IndexStore, load_version
from index.tuning import TuneResult, held_out_rows, hnsw_of, tune, tune_held_out

log = logging.getLogger(__name__)

RECALL_K = 10
HELD_OUT_METHOD = ("held-out items (kept out of the index while tuning, added after) as queries, "
                   "vs exact inner-product search over the rest")
IN_INDEX_METHOD = "sampled indexed items as queries, each left out of its own results, vs exact search"
ADD_CHUNK = 100_000


@dataclass
class BuildOptions:
    """Knobs of a build beyond the command line's; the defaults are what `recsys index build` uses."""

    ef_construction: int = HNSW_EF_CONSTRUCTION
    tune_queries: int = 1000
    neighbours_k: int = 50
    neighbours_max: int = 250_000  # above this, no stored neighbour lists (the batched search costs minutes)
    flat_max_cost: int = FLAT_MAX_COST
    seed: int = 0


@dataclass
class MeasuredRecall:
    """The tuned search parameter and the recall@10 it reaches, and how that was measured."""

    tuned: TuneResult
    target: float
    queries: int
    method: str

    def meta(self) -> dict[str, Any]:
        return {
            "search": self.tuned.params,
            "recall@10": round(self.tuned.recall, 4),
            "recall": {"k": RECALL_K, "target": self.target, "met": self.tuned.met, "queries": self.queries,
                       "method": self.method, "curve": [[v, round(r, 4)] for v, r in self.tuned.curve]},
        }


@dataclass
class BuiltIndex:
    """A filled and tuned index with what a version stores beside it; rows in the index's add order."""

    index: faiss.Index
    es: EmbeddingSet
    vectors: np.ndarray
    fids: np.ndarray
    items: pd.DataFrame
    recall: MeasuredRecall
    origin: dict[str, Any]  # meta.json fields saying how it came about: factory, build or update, parent


# -- the FAISS part: usable on plain arrays (the benchmark calls these directly) -------------------
def make_index(vectors: np.ndarray, fids: np.ndarray, factory: str,
               ef_construction: int = HNSW_EF_CONSTRUCTION, seed: int = 0,
               skip: np.ndarray | None = None) -> tuple[faiss.Index, int]:
    """Create, train (on a sample) and fill an inner-product index; returns it and the training size.

    Rows in `skip` are left out (held out for tuning, added afterwards). Index types that cannot
    hold their own ids (all but IVF) are wrapped in IDMap2.
    """
    dim = vectors.shape[1]
    index = _factory(dim, factory)
    if faiss.try_extract_index_ivf(index) is None and not hasattr(index, "id_map"):
        index = _factory(dim, "IDMap2," + factory)
    hnsw = hnsw_of(index)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = ef_construction
    train_size = 0
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        want = max(64 * ivf.nlist, 20_000) if ivf is not None else 100_000
        train_size = min(len(vectors), want, 300_000)
        sample = np.random.default_rng(seed).choice(len(vectors), train_size, replace=False)
        log.info("training %s on %d of %d vectors", factory, train_size, len(vectors))
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    add_vectors(index, vectors, fids, _rows_except(len(vectors), skip))
    return index, train_size


def build_tuned(vectors: np.ndarray, fids: np.ndarray, factory: str, target: float,
                opts: BuildOptions) -> tuple[faiss.Index, int, TuneResult, float]:
    """Build with held-out rows, tune the search parameter on them, then add them too.

    Returns the index, the training size, the tuning result and the build seconds (tuning excluded).
    """
    return build_plan(vectors, fids, Plan(factory, "given"), target, opts)


def build_plan(vectors: np.ndarray, fids: np.ndarray, plan: Plan, target: float,
               opts: BuildOptions) -> tuple[faiss.Index, int, TuneResult, float]:
    """`build_tuned` for a plan: its own efConstruction and search range."""
    held_out = held_out_rows(len(vectors), opts.tune_queries, opts.seed)
    ef_construction = plan.ef_construction or opts.ef_construction
    started = time.perf_counter()
    index, train_size = make_index(vectors, fids, plan.factory, ef_construction, opts.seed, held_out)
    build_s = time.perf_counter() - started
    tuned = tune_held_out(index, vectors, fids, held_out, target, RECALL_K, plan.wide_search, plan.exhaustive)
    started = time.perf_counter()
    add_vectors(index, vectors, fids, held_out)
    return index, train_size, tuned, build_s + time.perf_counter() - started


def _rows_except(n: int, skip: np.ndarray | None) -> np.ndarray | None:
    if skip is None or len(skip) == 0:
        return None
    keep = np.ones(n, dtype=bool)
    keep[skip] = False
    return np.flatnonzero(keep)


def _factory(dim: int, factory: str) -> faiss.Index:
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"--factory {factory!r}: FAISS cannot build this index for dim {dim} "
                         f"({reason})") from None


def add_vectors(index: faiss.Index, vectors: np.ndarray, fids: np.ndarray,
                rows: np.ndarray | None = None) -> None:
    """Add vectors (only `rows` of them when given) with their ids, a chunk at a time."""
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, ADD_CHUNK):
        pick = slice(start, start + ADD_CHUNK) if rows is None else rows[start:start + ADD_CHUNK]
        block = np.ascontiguousarray(vectors[pick], dtype=np.float32)
        index.add_with_ids(block, np.ascontiguousarray(fids[pick], dtype=np.int64))


def supports_remove(index: faiss.Index) -> bool:
    """FAISS's HNSW cannot remove vectors; Flat, IVF and PQ variants can."""
    return hnsw_of(index) is None


def neighbour_lists(index: faiss.Index, vectors: np.ndarray, fids: np.ndarray, k: int,
                    chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Rows (int32, -1 padded) and cosine scores of every item's top k others, by batched search."""
    n = len(vectors)
    k = min(k, n - 1)
    order = np.argsort(fids, kind="stable")
    sorted_fids = fids[order]
    rows_out = np.full((n, k), -1, dtype=np.int32)
    scores_out = np.zeros((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        xq = np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32)
        D, found = index.search(xq, k + 1)
        own = fids[start:start + len(xq)][:, None]
        keep = (found != own) & (found >= 0)
        pick = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # first k kept entries, in rank order
        found = np.take_along_axis(found, pick, axis=1)
        ok = np.take_along_axis(keep, pick, axis=1)
        rows = order[np.searchsorted(sorted_fids, np.where(ok, found, sorted_fids[0]))]
        rows_out[start:start + len(xq)] = np.where(ok, rows, -1)
        scores_out[start:start + len(xq)] = np.where(ok, np.take_along_axis(D, pick, axis=1), 0)
    return rows_out, scores_out


# -- versions -------------------------------------------------------------------------------------
def build_version(embeddings_dir: str | Path, store_dir: str | Path, factory: str = "auto",
                  memory_budget: int | None = None, target_recall: float = 0.95, publish: bool = True,
                  keep: int = DEFAULT_KEEP, options: BuildOptions | None = None) -> str:
    """Build a new version of the whole embedding set; returns its id.

    Publishes it (unless publish=False) when the tuned recall@10 reaches `target_recall`; otherwise
    the version stays in the store unpublished and RecallNotMet is raised.
    """
    opts = options or BuildOptions()
    _check_target(target_recall)
    es = _read_set(embeddings_dir)
    n, dim = es.vectors.shape
    auto = factory == "auto"
    plans = auto_plans(n, dim, memory_budget, opts.flat_max_cost) if auto else [Plan(factory, "given")]
    fids = stable_ids(es.item_ids.tolist())
    with threads.threads(threads.build_threads()):
        chosen, attempts = build_until_met(es.vectors, fids, plans, target_recall, opts)
        index, plan = chosen.index, chosen.plan
        recall = MeasuredRecall(chosen.tuned, target_recall,
                                len(held_out_rows(n, opts.tune_queries, opts.seed)), HELD_OUT_METHOD)
        origin = {
            "factory": plan.factory,
            "factory_reason": plan.reason,
            "build": {"seconds": round(chosen.build_s, 2), "train_size": chosen.train_size,
                      "threads": threads.build_threads(),
                      "ef_construction": (plan.ef_construction or opts.ef_construction)
                      if hnsw_of(index) is not None else None,
                      "memory_budget": memory_budget},
        }
        if auto:
            origin["auto"] = {"attempts": attempts}
        built = BuiltIndex(index, es, es.vectors, fids, _items(es, fids), recall, origin)
        return _finish(IndexStore(store_dir), built, publish, keep, opts)


@dataclass
class Attempt:
    """One plan built and tuned."""

    plan: Plan
    index: faiss.Index
    train_size: int
    tuned: TuneResult
    build_s: float

    def record(self) -> dict[str, Any]:
        return {"factory": self.plan.factory, "reason": self.plan.reason, "search": self.tuned.params,
                "recall@10": round(self.tuned.recall, 4), "met": self.tuned.met,
                "build_seconds": round(self.build_s, 2)}


def build_until_met(vectors: np.ndarray, fids: np.ndarray, plans: list[Plan], target: float,
                    opts: BuildOptions) -> tuple[Attempt, list[dict[str, Any]]]:
    """Build and tune the plans in turn until one meets the target; returns that one (or the last)
    and the record of every attempt."""
    n, dim = vectors.shape
    records: list[dict[str, Any]] = []
    for number, plan in enumerate(plans, 1):
        log.info("building %s over %d x %d (%s)%s", plan.factory, n, dim, plan.reason,
                 f"; plan {number} of {len(plans)}" if len(plans) > 1 else "")
        attempt = Attempt(plan, *build_plan(vectors, fids, plan, target, opts))
        records.append(attempt.record())
        if attempt.tuned.met or number == len(plans):
            return attempt, records
        log.warning("%s reaches recall@10 %.4f at best (%s), below the target %.4f; trying the next plan",
                    plan.factory, attempt.tuned.recall, attempt.tuned.params or "no parameter", target)
        attempt.index.reset()  # free its memory before the next build
    raise ValueError("no plans to build")


def update_version(embeddings_dir: str | Path, store_dir: str | Path, base: str | None = None,
                   target_recall: float = 0.95, publish: bool = True, keep: int = DEFAULT_KEEP,
                   options: BuildOptions | None = None) -> str:
    """A new version from `base` (default CURRENT) by adding, removing and replacing only what changed.

    UpdateNotSupported when items must be removed or replaced and the index type cannot remove
    (HNSW); InputError when the embedding model differs from the base version's.
    """
    opts = options or BuildOptions()
    _check_target(target_recall)
    old = load_version(store_dir, base, mmap=False)
    es = _read_set(embeddings_dir)
    if es.model_id != old.meta.get("model_id") or es.vectors.shape[1] != old.dim:
        raise InputError(f"{embeddings_dir}: embedded with model {es.model_id} (dim {es.vectors.shape[1]}), "
                         f"version {old.version} with {old.meta.get('model_id')} (dim {old.dim}); "
                         "vectors of different models cannot share an index: run a full build")
    fids = stable_ids(es.item_ids.tolist())
    new_pos = pd.Index(es.item_ids)
    old_ids = old.items["item_id"].to_numpy()
    in_new = new_pos.get_indexer(old_ids)
    removed = old.fids[in_new < 0]
    same_item = in_new >= 0
    old_vecs = np.asarray(old.vectors[same_item])
    changed = np.any(old_vecs != es.vectors[in_new[same_item]].astype(np.float16), axis=1)
    replaced = old.fids[same_item][changed]
    added = ~np.isin(es.item_ids, old_ids)
    if (len(removed) or len(replaced)) and not supports_remove(old.index):
        raise UpdateNotSupported(
            f"version {old.version} is {old.meta['factory']}: FAISS HNSW cannot remove items, and this "
            f"update removes {len(removed)} and replaces {len(replaced)}; run a full build instead")
    # Keep the base's order for the items that stay unchanged; changed and new items go at the end.
    stay = np.flatnonzero(same_item)[~changed]
    order = np.concatenate([in_new[stay], in_new[same_item][changed], np.flatnonzero(added)])
    started = time.perf_counter()
    with threads.threads(threads.build_threads()):
        index = old.index
        gone = np.concatenate([removed, replaced])
        if len(gone):
            index.remove_ids(np.ascontiguousarray(gone, dtype=np.int64))
        todo = order[len(stay):]
        add_vectors(index, es.vectors[todo], fids[todo])
        build_s = time.perf_counter() - started
        tuned = tune(index, es.vectors[order], fids[order], target_recall, RECALL_K, opts.tune_queries,
                     opts.seed)
        recall = MeasuredRecall(tuned, target_recall, min(opts.tune_queries, len(order)), IN_INDEX_METHOD)
        origin = {
            "factory": old.meta["factory"],
            "factory_reason": f"update of {old.version}",
            "parent": old.version,
            "update": {"added": int(added.sum()), "removed": int(len(removed)),
                       "replaced": int(len(replaced)), "seconds": round(build_s, 2)},
            "build": old.meta.get("build", {}),
        }
        items = _items(es, fids).iloc[order].reset_index(drop=True)
        built = BuiltIndex(index, es, es.vectors[order], fids[order], items, recall, origin)
        return _finish(IndexStore(store_dir), built, publish, keep, opts)


def _finish(store: IndexStore, built: BuiltIndex, publish: bool, keep: int, opts: BuildOptions) -> str:
    """Write the version, then publish and prune if its recall met the target (RecallNotMet if not)."""
    version = _write(store, built, opts)
    tuned, factory = built.recall.tuned, built.origin["factory"]
    log.info("version %s: %s, recall@10 %.4f with %s", version, factory, tuned.recall, tuned.params)
    if not tuned.met:
        detail = f"{factory}, best parameters {tuned.params or 'none'}"
        attempts = built.origin.get("auto", {}).get("attempts", [])
        if attempts:
            tried = "; ".join(f"{a['factory']} {a['recall@10']:.4f}" for a in attempts)
            detail = (f"--factory auto tried {tried}: no index that fits the memory budget reaches the "
                      f"target; raise --memory-budget or lower --target-recall")
        raise RecallNotMet(version, tuned.recall, built.recall.target, detail)
    if publish:
        store.publish(version)
        store.prune(keep)
    return version


def _write_index(index: faiss.Index, path: Path) -> None:
    """faiss.write_index, with a failed write (a full disk) as the OSError it is, not a RuntimeError."""
    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:
        raise OSError(f"{path}: cannot write the index ({str(exc).rsplit(': ', 1)[-1]})") from exc


def _write(store: IndexStore, built: BuiltIndex, opts: BuildOptions) -> str:
    """The version's files and meta.json, through the store's writer (staging, checksums, rename)."""
    index, es, vectors = built.index, built.es, built.vectors
    n, dim = vectors.shape
    with store.write_version() as writer:
        _write_index(index, writer.file(INDEX_FILE))
        built.items.to_parquet(writer.file(ITEMS_FILE), index=False)
        np.save(writer.file(VECTORS_FILE), vectors.astype(np.float16))
        neighbours_k = 0
        if n <= opts.neighbours_max and n > 1:
            rows, scores = neighbour_lists(index, vectors, built.fids, opts.neighbours_k)
            np.save(writer.file(NEIGHBOURS_FILE), rows)
            np.save(writer.file(NEIGHBOUR_SCORES_FILE), scores)
            neighbours_k = rows.shape[1]
        writer.commit({
            **built.origin,
            **built.recall.meta(),
            "index_type": type(faiss.downcast_index(index)).__name__,
            "dim": int(dim),
            "count": int(n),
            "metric": "inner_product",
            "score": "cosine",
            "model_id": es.model_id,
            "model": es.manifest.get("model", {}),
            "embeddings": {"path": str(es.path.resolve()), "counts": es.manifest.get("counts")},
            "memory_estimate_bytes": _memory_estimate(index, n, dim),
            "supports_remove": supports_remove(index),
            "vectors": {"file": VECTORS_FILE, "dtype": "float16"},
            "neighbours": {"k": neighbours_k} if neighbours_k else None,
            "ids": "faiss_id = blake2b-64(item_id) & (2**63 - 1), stable across versions",
        })
    return writer.version


def _read_set(path: str | Path) -> EmbeddingSet:
    es = read_embedding_set(Path(path))
    if len(es.item_ids) == 0:
        raise InputError(f"{path}: the embedding set holds no vectors")
    if not np.all(np.isfinite(es.vectors)):
        bad = int(np.flatnonzero(~np.isfinite(es.vectors).all(axis=1))[0])
        raise InputError(f"{path}: item {es.item_ids[bad]!r} has a non-finite embedding")
    return es


def _items(es: EmbeddingSet, fids: np.ndarray) -> pd.DataFrame:
    items = es.catalog()
    if "image" not in items.columns:
        items["image"] = None
    items.insert(1, "faiss_id", fids)
    return items


def _memory_estimate(index: faiss.Index, n: int, dim: int) -> int:
    if faiss.try_extract_index_ivf(index) is None:
        return estimate_memory("hnsw" if hnsw_of(index) is not None else "flat", n, dim)
    return int(faiss.extract_index_ivf(index).code_size * n + 8 * n)


def _check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise InputError(f"--target-recall must be in (0, 1], got {target}")
