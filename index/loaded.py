"""A loaded index version: search by vector, similar items by id, item metadata.

FAISS returns stable int64 ids (index/ids.py); they are turned back into string item ids through a
sorted id array. `items` is in the version's add order (the order of items.parquet and
vectors.npy); neighbour lists, where the version has them, are rows of that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from index import threads
from index.errors import IndexLoadError, InputError
from index.lru import MISSING, LockedLRU
from index.tuning import apply_search_params, hnsw_of

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"
VECTORS_FILE = "vectors.npy"
NEIGHBOURS_FILE = "neighbours.npy"
NEIGHBOUR_SCORES_FILE = "neighbour_scores.npy"
# Index files from this size up are memory-mapped (LoadedIndex.open); smaller ones are read, which
# costs little. FAISS 1.15's memory-mapped reader crashes the process on a file cut short in the
# middle of a field, where its plain reader raises: the checksums verified before every load keep
# such files away from it, and the fuzz tests' forged checksums meet the plain reader.
MMAP_MIN_BYTES = 32 << 20
SLICE_ROWS = 16_384  # items converted at a time while a version loads (ItemRows)
SUBSET_CACHE = 64  # filter masks whose allowed rows (and ID selector) are kept
BRUTE_FORCE_MAX = 50_000  # with no ID selector, a filter leaving at most this many items: exact search
EXACT_MAX_FLOATS = 1 << 20  # a filter leaving items x dim at most this: exact search (a 4 MiB read)
# Below this share of the items, an ID-selector search of an approximate index loses too many of the
# true neighbours (IVF probes lists that hold few allowed items): exact search up to BRUTE_FORCE_MAX.
SELECTOR_MIN_SHARE = 0.05
# Exactly searched masks whose rows' vectors are kept as float32 (the stored vectors may be float16,
# and converting a few thousand rows costs more than the search), each at most SUBSET_VECTORS_MAX bytes.
SUBSET_VECTORS_CACHE = 8
SUBSET_VECTORS_MAX = 8 << 20  # 8 masks: at most 64 MiB per loaded version


class ItemRows:
    """A version's item ids in row order (a list of str: fastest to index one at a time; the same
    objects as an array, for vectorised indexing), each id's row, and the FAISS ids sorted (to turn
    search hits back into rows). Built once per version and shared with recsys.answers: this
    per-item work is most of what loading a large version costs. It is done SLICE_ROWS items at a
    time, since each step holds the GIL while a server beside it answers requests."""

    def __init__(self, item_ids: pd.Series, fids: np.ndarray) -> None:
        n = len(item_ids)
        if not pd.api.types.is_string_dtype(item_ids):
            item_ids = item_ids.astype(str)
        self.ids: list[str] = []
        for start in range(0, n, SLICE_ROWS):
            self.ids += item_ids.iloc[start:start + SLICE_ROWS].tolist()
        self.row_of: dict[str, int] = {}
        for start in range(0, n, SLICE_ROWS):
            stop = min(start + SLICE_ROWS, n)
            self.row_of.update(zip(self.ids[start:stop], range(start, stop)))
        self.array = np.array(self.ids, dtype=object)
        self.fid_order = np.argsort(fids, kind="stable")
        self.sorted_fids = fids[self.fid_order]


class LoadedIndex:
    version: str
    meta: dict[str, Any]
    dim: int
    path: Path
    items: pd.DataFrame

    def __init__(self, path: Path, meta: dict[str, Any], index: faiss.Index, items: pd.DataFrame,
                 fids: np.ndarray, vectors: np.ndarray, neighbours: np.ndarray | None = None,
                 neighbour_scores: np.ndarray | None = None, rows: ItemRows | None = None) -> None:
        self.path = Path(path)
        self.meta = meta
        self.version = str(meta["version"])
        self.dim = int(meta["dim"])
        self.index = index
        self.items = items.reset_index(drop=True)
        self.fids = fids
        # A plain array view of the memory-mapped vectors, like the lists below: np.memmap's
        # indexing costs microseconds more per read.
        self.vectors = np.asarray(vectors)
        self._count = len(items)
        # Plain array views of the memory-mapped lists: each row of an np.memmap costs ~2.5 us more.
        self.neighbours = None if neighbours is None else np.asarray(neighbours)
        self.neighbour_scores = None if neighbour_scores is None else np.asarray(neighbour_scores)
        if rows is None:
            rows = ItemRows(self.items["item_id"], fids)
        self.item_ids = rows.ids
        self.row_of = rows.row_of
        self._item_ids = rows.array
        self._fid_order, self._sorted_fids = rows.fid_order, rows.sorted_fids
        # Compressed codes (PQ, SQ) give approximate scores: re-score the hits with the stored vectors.
        factory = str(meta.get("factory", ""))
        self.rescore = any(code in factory for code in ("PQ", "SQ", "LSH", "RaBitQ"))
        self._hnsw = hnsw_of(index)
        self._ivf = faiss.try_extract_index_ivf(index)
        # (kind, id(mask)) -> (mask, its rows or its FAISS selector), for recsys.filters' read-only masks
        self._subsets: LockedLRU[tuple[np.ndarray, Any]] = LockedLRU(2 * SUBSET_CACHE)
        self._subset_vectors: LockedLRU[tuple[np.ndarray, Any]] = LockedLRU(SUBSET_VECTORS_CACHE)
        self._params: LockedLRU[tuple[np.ndarray, Any]] = LockedLRU(SUBSET_CACHE)
        self._wide: LockedLRU[faiss.SearchParameters] = LockedLRU(SUBSET_CACHE)  # k -> HNSW parameters

    @classmethod
    def open(cls, vdir: Path, meta: dict[str, Any], mmap: bool | None = None,
             verified: Callable[[str], None] | None = None) -> LoadedIndex:
        """Open a version's files. With `mmap` (None: for index files of MMAP_MIN_BYTES and more),
        the index's vectors, graph and lists are memory-mapped read-only from index.faiss (FAISS's
        IO_FLAG_MMAP_IFC), like vectors.npy and the neighbour lists: opening costs no copy, the page
        cache holds the data once however many versions and processes read it, and a version being
        loaded beside the serving one adds little memory of its own. mmap=False reads the index into
        memory, for callers that modify it (an update adds and removes vectors).

        `verified(name)`, where given, is called before each file is read and raises when it must
        not be (index/store.py's checksum check). The items come first, and their per-item work
        (`ItemRows`) is done before the larger files are needed, while their checks still run."""
        ready = verified or (lambda name: None)
        try:
            ready(ITEMS_FILE)
            items = pd.read_parquet(vdir / ITEMS_FILE)
        except IndexLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise IndexLoadError(f"{vdir}: cannot read the index version ({exc})") from None
        # The per-item work while the larger files are still being checked (a bad items table is
        # reported below, after the sizes and dimensions, as it always was).
        rows = None if _items_problem(vdir, items) else ItemRows(
            items["item_id"], items["faiss_id"].to_numpy(dtype=np.int64))
        try:
            ready(VECTORS_FILE)
            vectors = np.load(vdir / VECTORS_FILE, mmap_mode="r")
            neighbours = scores = None
            if (vdir / NEIGHBOURS_FILE).is_file():
                ready(NEIGHBOURS_FILE)
                ready(NEIGHBOUR_SCORES_FILE)
                neighbours = np.load(vdir / NEIGHBOURS_FILE, mmap_mode="r")
                scores = np.load(vdir / NEIGHBOUR_SCORES_FILE, mmap_mode="r")
            ready(INDEX_FILE)
            if mmap is None:
                mmap = (vdir / INDEX_FILE).stat().st_size >= MMAP_MIN_BYTES
            flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
            index = faiss.read_index(str(vdir / INDEX_FILE), flags)
        except IndexLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - FAISS and numpy raise many types for a bad file
            raise IndexLoadError(f"{vdir}: cannot read the index version ({exc})") from None
        _check_shapes(vdir, meta, index, items, vectors, neighbours, scores)
        try:
            apply_search_params(index, meta.get("search", {}))
        except RuntimeError as exc:
            raise IndexLoadError(f"{vdir}/meta.json: key 'search' does not fit the index ({exc})") from None
        threads.set_threads(threads.search_threads())
        fids = items.pop("faiss_id").to_numpy(dtype=np.int64)
        return cls(vdir, meta, index, items, fids, vectors, neighbours, scores, rows)

    # -- items ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def has_item(self, item_id: str) -> bool:
        return item_id in self.row_of

    def row(self, item_id: str) -> int:
        """Position of the item in `items`; KeyError for an unknown item."""
        return self.row_of[item_id]

    def vector(self, item_id: str) -> np.ndarray:
        return np.asarray(self.vectors[self.row(item_id)], dtype=np.float32)

    def metadata(self, item_id: str) -> dict[str, Any]:
        record = self.items.iloc[self.row(item_id)].to_dict()
        return {k: _plain(v) for k, v in record.items()}

    # -- search --------------------------------------------------------------------------------
    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores D (n, k) and item ids (n, k); "" (score NaN) where fewer than k items."""
        xq = self._queries(xq)
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        kk = min(k, len(self))
        D, rows = self._search_rows(xq, kk)
        ids = np.full((len(xq), k), "", dtype=object)
        scores = np.full((len(xq), k), np.nan, dtype=np.float32)
        found = rows >= 0
        ids[:, :kk][found] = self._item_ids[rows[found]]
        scores[:, :kk][found] = D[found]
        return scores, ids

    def similar(self, item_id: str, k: int, exclude: Collection[str] = (),
                where: Callable[[pd.DataFrame], pd.Series] | None = None,
                allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The k items most like `item_id` (never itself), best first, as (item_id, cosine score).

        `exclude` ids are left out; only rows where `allowed` (a boolean mask over `items`) is
        true, or where `where(items)` is (for example `lambda it: it["category"] == "shoes"`), may
        come back. Answers by lookup in the stored neighbour lists when they hold enough allowed
        items, else by `nearest` (a filtered search that never comes back short).
        """
        row = self.row(item_id)
        banned = {self.row_of[e] for e in exclude if e in self.row_of}
        if where is not None:
            mask = np.array(where(self.items), dtype=bool)
            allowed = mask if allowed is None else mask & allowed
        return self.similar_to_row(row, k, banned, allowed)

    def similar_to_row(self, row: int, k: int, banned: Collection[int] = (),
                       allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """`similar` for the item in `row`, leaving out the `banned` rows (callers that already
        know the rows: recsys.answers)."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        banned = {row, *banned}
        if allowed is not None and allowed.shape != (len(self),):
            raise InputError(f"the filter mask must hold one boolean per item ({len(self)}), "
                             f"got {allowed.shape}")
        stored = self.stored_neighbours(row, k, banned, allowed)
        if stored is not None:
            return stored
        return self.nearest(np.asarray(self.vectors[row], dtype=np.float32), k, banned, allowed)

    def stored_neighbours(self, row: int, k: int, banned: Collection[int] = (),
                          allowed: np.ndarray | None = None) -> list[tuple[str, float]] | None:
        """The k nearest items to the item in `row` from the version's stored neighbour lists, as
        (item_id, cosine score), leaving out the item itself, the `banned` rows and rows `allowed`
        says no to; None when the version has no lists or its list holds fewer such items (and not
        every other item)."""
        neighbours, scores = self.neighbours, self.neighbour_scores
        if neighbours is None:
            return None
        width = neighbours.shape[1]
        complete = width >= len(self.item_ids) - 1  # the lists hold every other item
        if k > width and not complete:
            return None
        ids = self.item_ids
        if allowed is not None or len(banned) > 1:
            # a filter's mask: which of the list it allows, at once, before building any pair
            found = neighbours[row]
            ok = found >= 0
            ok[ok] = found[ok] != row
            if allowed is not None:
                ok[ok] = allowed[found[ok]]
            for b in banned:
                ok &= found != b
            take = np.flatnonzero(ok)[:k]
            if len(take) < k and not complete:
                return None
            return list(zip([ids[r] for r in found[take].tolist()], scores[row][take].tolist()))
        pairs = []
        for r, score in zip(neighbours[row].tolist(), scores[row].tolist()):
            if r >= 0 and r != row and r not in banned and (allowed is None or allowed[r]):
                pairs.append((ids[r], score))
                if len(pairs) == k:
                    return pairs
        return pairs if complete else None

    def nearest(self, q: np.ndarray, k: int, banned: Collection[int] = (),
                allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The k rows nearest to the unit vector `q` among those `allowed` (a boolean mask over
        `items`; None: all) and not `banned`, as (item_id, cosine score), best first. Never short:
        min(k, allowed rows) come back.

        A small allowed set is searched exactly over its stored vectors; a larger one by the index
        with a FAISS ID selector where the index type takes one (HNSW, IVF), else by over-fetching;
        whenever the approximate search comes back short, exactly over the allowed rows."""
        banned = set(banned)
        if allowed is None:
            return self._search_filtered(q, k, banned, None)
        rows = self._subset(allowed)
        # positions in `rows` of the banned rows it holds (rows are sorted): most often none
        dropped = np.empty(0, dtype=np.int64)
        if banned:
            banned_rows = np.fromiter(banned, dtype=np.int64, count=len(banned))
            at = np.minimum(np.searchsorted(rows, banned_rows), max(len(rows) - 1, 0))
            dropped = at[rows[at] == banned_rows] if len(rows) else dropped
        shown = len(rows) - len(dropped)
        if len(rows) * self.dim <= EXACT_MAX_FLOATS or (
                len(rows) < SELECTOR_MIN_SHARE * len(self) and len(rows) <= BRUTE_FORCE_MAX):
            return self._exact_in_subset(q, allowed, rows, dropped, k)
        selector = self._selector(allowed, rows)
        if selector is not None:
            D, found = self._search_rows(q[None, :], min(k + len(banned), len(rows)),
                                         self._selector_params(allowed, selector, k + len(banned)))
            hits = [(self._item_ids[r], float(d)) for r, d in zip(found[0].tolist(), D[0].tolist())
                    if r >= 0 and r not in banned][:k]
            if len(hits) >= min(k, shown):
                return hits
        if shown <= BRUTE_FORCE_MAX:
            return self._exact_in_subset(q, allowed, rows, dropped, k)
        edited = np.array(allowed, dtype=bool)
        edited[list(banned)] = False
        return self._search_filtered(q, k, banned, edited)

    def nearest_many(self, xq: np.ndarray, k: int,
                     allowed: np.ndarray | None = None) -> list[list[tuple[str, float]]] | None:
        """`nearest` for a batch of unit vectors: exact over the allowed rows up to BRUTE_FORCE_MAX
        of them (a matrix product for a block of queries costs far less than a filtered graph
        search each), else one index search (with an ID selector under a mask). Answers may come
        back short where the index is approximate; None when a mask's rows are too many to search
        exactly and the index takes no selector."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if allowed is None:
            D, found = self._search_rows(xq, min(k, len(self)))
        else:
            rows = self._subset(allowed)
            if len(rows) == 0:
                return [[] for _ in xq]
            if len(rows) <= BRUTE_FORCE_MAX:
                D, found = self._exact_many(xq, k, rows)
            elif (selector := self._selector(allowed, rows)) is not None:
                params = self._selector_params(allowed, selector, k)
                D, found = self._search_rows(xq, min(k, len(rows)), params)
            else:
                return None
        ids = self.item_ids
        return [[(ids[r], float(d)) for r, d in zip(row_ids.tolist(), row_scores.tolist()) if r >= 0]
                for row_ids, row_scores in zip(found, D)]

    def _exact_many(self, xq: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k among `rows` for each query, a block of queries per matrix product."""
        vectors = np.asarray(self.vectors[rows], dtype=np.float32)
        kk = min(k, len(rows))
        D = np.empty((len(xq), kk), dtype=np.float32)
        found = np.empty((len(xq), kk), dtype=np.int64)
        block = max(1, (1 << 24) // len(rows))  # at most 64 MiB of scores at a time
        for start in range(0, len(xq), block):
            scores = xq[start:start + block] @ vectors.T  # (queries, rows)
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            top = np.take_along_axis(scores, part, 1)
            order = np.argsort(-top, axis=1, kind="stable")
            D[start:start + block] = np.take_along_axis(top, order, 1)
            found[start:start + block] = rows[np.take_along_axis(part, order, 1)]
        return D, found

    def _subset(self, allowed: np.ndarray) -> np.ndarray:
        """The rows a mask allows. Kept for read-only masks (the cached filter masks of
        recsys.filters), so a repeated filter does not scan its mask again."""
        return self._kept(("rows", allowed), lambda: np.flatnonzero(allowed))

    def _selector(self, allowed: np.ndarray, rows: np.ndarray) -> faiss.IDSelector | None:
        """An IDSelectorBatch over the allowed rows' FAISS ids where the index takes one (HNSW, IVF)
        and the set is large; built only where a search uses it, and kept like `_subset`'s rows."""
        if len(rows) * self.dim <= EXACT_MAX_FLOATS or (self._hnsw is None and self._ivf is None):
            return None

        def build() -> faiss.IDSelector:
            fids = np.ascontiguousarray(self.fids[rows], dtype=np.int64)
            selector = faiss.IDSelectorBatch(len(fids), faiss.swig_ptr(fids))
            selector.keep_alive = fids  # the selector reads `fids`
            return selector

        return self._kept(("selector", allowed), build)

    def _kept(self, key: tuple[str, np.ndarray], make: Callable[[], Any],
              cache: LockedLRU[tuple[np.ndarray, Any]] | None = None) -> Any:
        """`make()` for (kind, mask), kept per read-only mask (holding the mask pins its id)."""
        kind, allowed = key
        if allowed.flags.writeable:
            return make()
        cache = self._subsets if cache is None else cache
        hit = cache.get((kind, id(allowed)))
        if hit is not MISSING and hit[0] is allowed:
            return hit[1]
        return cache.put((kind, id(allowed)), (allowed, make()))[1]

    def _exact_in_subset(self, q: np.ndarray, allowed: np.ndarray, rows: np.ndarray, dropped: np.ndarray,
                         k: int) -> list[tuple[str, float]]:
        """`_exact_among` the mask's rows but those at positions `dropped`, reading their vectors
        as float32 from a copy kept per read-only mask where it is small enough. The scores are
        the same bits as `_exact_among`'s: the same float32 rows in the same order."""
        if len(rows) * self.dim * 4 > SUBSET_VECTORS_MAX:
            return self._exact_among(q, np.delete(rows, dropped) if len(dropped) else rows, k)
        vectors = self._kept(("vectors", allowed), lambda: np.asarray(self.vectors[rows], dtype=np.float32),
                             self._subset_vectors)
        if len(dropped):
            rows, vectors = np.delete(rows, dropped), np.delete(vectors, dropped, axis=0)
        return self._exact_scored(q, vectors, rows, k)

    def _selector_params(self, allowed: np.ndarray, selector: faiss.IDSelector,
                         k: int) -> faiss.SearchParameters:
        """Search parameters around a mask's selector, kept like the selector (FAISS only reads them)."""
        if self._hnsw is not None:
            kind: tuple = ("params", "hnsw", max(self._hnsw.hnsw.efSearch, 2 * k))
        else:
            kind = ("params", "ivf", self._ivf.nprobe)

        def build() -> faiss.SearchParameters:
            if kind[1] == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=kind[2])
            else:
                params = faiss.SearchParametersIVF(sel=selector, nprobe=kind[2])
            params.keep_alive = selector  # the search reads the selector: it must outlive the search
            return params

        return self._kept((kind, allowed), build, self._params)  # type: ignore[arg-type]

    def _search_filtered(self, q: np.ndarray, k: int, banned: set[int], allowed: np.ndarray | None) -> list:
        share = 1.0 if allowed is None else max(allowed.mean(), 1e-9)
        fetch = min(len(self), math.ceil((k + len(banned)) / share * 1.5) + 1)
        xq = q[None, :]
        while True:
            D, found = self._search_rows(xq, fetch)
            hits = found[0] >= 0
            rows = found[0][hits]
            # a few banned rows among a few dozen hits: a set lookup each costs less than np.isin
            ok = np.fromiter((r not in banned for r in rows.tolist()), dtype=bool, count=len(rows))
            if allowed is not None:
                ok &= allowed[rows]
            if ok.sum() >= k or fetch >= len(self):
                break
            fetch = min(len(self), fetch * 4)
        if ok.sum() < k:  # the approximate index ran dry: exact search over what is allowed
            if allowed is None:
                allowed = np.ones(len(self), dtype=bool)
                allowed[list(banned)] = False
            return self._exact_among(q, np.flatnonzero(allowed), k)
        return [(self._item_ids[r], float(s)) for r, s in zip(rows[ok][:k], D[0][hits][ok][:k], strict=True)]

    def _exact_among(self, q: np.ndarray, candidates: np.ndarray, k: int) -> list[tuple[str, float]]:
        if len(candidates) == 0:
            return []
        return self._exact_scored(q, np.asarray(self.vectors[candidates], dtype=np.float32), candidates, k)

    def _exact_scored(self, q: np.ndarray, vectors: np.ndarray, candidates: np.ndarray,
                      k: int) -> list[tuple[str, float]]:
        """The k best `candidates` (rows) by cosine to `q`, `vectors` being their float32 vectors."""
        if len(candidates) == 0:
            return []
        scores = vectors @ np.asarray(q, dtype=np.float32)
        if len(scores) > max(k, 2048):  # argpartition first; small sets sort stably (ties keep row order)
            part = np.argpartition(-scores, k - 1)[:k]
            top = part[np.argsort(-scores[part], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")[:k]
        return [(self._item_ids[candidates[t]], float(scores[t])) for t in top]

    def _search_rows(self, xq: np.ndarray, k: int,
                     params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search giving item rows (-1: none), with exact scores for compressed indexes."""
        if params is None and self._hnsw is not None and k > self._hnsw.hnsw.efSearch:
            # HNSW finds at most about efSearch results: widen the search for long lists
            params = self._wide.get(k)
            if params is MISSING:
                params = self._wide.put(k, faiss.SearchParametersHNSW(efSearch=2 * k))
        D, fids = self.index.search(xq, k, params=params)
        rows = np.full(fids.shape, -1, dtype=np.int64)
        found = fids >= 0
        rows[found] = self._rows_of_fids(fids[found])
        if self.rescore and found.any():
            hit_vectors = np.asarray(self.vectors[np.where(found, rows, 0)], np.float32)
            exact = np.einsum("qkd,qd->qk", hit_vectors, xq)
            D = np.where(found, exact, -np.inf).astype(np.float32)
            order = np.argsort(-D, axis=1, kind="stable")
            D, rows = np.take_along_axis(D, order, 1), np.take_along_axis(rows, order, 1)
        return D, rows

    def _rows_of_fids(self, fids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted_fids, fids)
        return self._fid_order[pos]

    def _queries(self, xq: np.ndarray) -> np.ndarray:
        xq = np.array(xq, dtype=np.float32, ndmin=2, copy=True)
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise InputError(f"query vectors must have shape (n, {self.dim}), got {xq.shape}")
        norms = np.linalg.norm(xq, axis=1, keepdims=True)
        if not np.all(np.isfinite(xq)) or np.any(norms == 0):
            raise InputError("query vectors must be finite and non-zero")
        return np.ascontiguousarray(xq / norms)



def _plain(value: Any) -> Any:
    """numpy / pandas scalars to plain Python (JSON-ready); missing values to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def _items_problem(vdir: Path, items: pd.DataFrame) -> str | None:
    """What items.parquet lacks that a version needs, or None."""
    missing = [c for c in ("item_id", "faiss_id") if c not in items.columns]
    if missing:
        return f"{vdir / ITEMS_FILE}: missing column(s) {missing}"
    if not pd.api.types.is_integer_dtype(items["faiss_id"]):
        return f"{vdir / ITEMS_FILE}: column 'faiss_id' holds {items['faiss_id'].dtype}, not integers"
    return None


def _check_shapes(vdir: Path, meta: dict[str, Any], index: faiss.Index, items: pd.DataFrame,
                  vectors: np.ndarray, neighbours: np.ndarray | None, scores: np.ndarray | None) -> None:
    """The version's files agree with each other and with meta.json (IndexLoadError otherwise)."""
    if not (index.ntotal == len(items) == len(vectors) == meta["count"]):
        raise IndexLoadError(
            f"{vdir}: sizes disagree (index {index.ntotal}, items {len(items)}, vectors {len(vectors)}, "
            f"meta.json count {meta['count']})")
    if index.d != meta["dim"] or vectors.ndim != 2 or vectors.shape[1] != meta["dim"]:
        raise IndexLoadError(f"{vdir}: dimensions disagree (index {index.d}, vectors {vectors.shape[1:]}, "
                             f"meta.json dim {meta['dim']})")
    if problem := _items_problem(vdir, items):
        raise IndexLoadError(problem)
    if neighbours is not None and (scores is None or neighbours.ndim != 2 or len(neighbours) != len(items)
                                   or scores.shape != neighbours.shape):
        raise IndexLoadError(f"{vdir}: {NEIGHBOURS_FILE} and {NEIGHBOUR_SCORES_FILE} do not fit the items")
