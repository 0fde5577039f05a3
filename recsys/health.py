"""Catalogue health and drift of one store version (DESIGN.md "Health report").

From a loaded version (its vectors, items, FAISS index and stored neighbour lists), optionally the
embedding set's failures and another version to compare with:

- placeholders: one picture shared by at least PLACEHOLDER_MIN_ITEMS items, by `image_sha256`
  (from items.parquet, else from the embedding set the version was built from) or, where no hash
  is known, by identical vectors. Their items are reported once, as a placeholder, never as
  duplicates.
- duplicates: other items whose vectors are near-identical (the same product shot re-uploaded,
  re-encoded, lightly cropped or flipped). Candidate pairs come from each item's DUPLICATE_K
  nearest neighbours (stored lists, else the index), never from all pairs; pairs at or above
  DUPLICATE_COSINE are grouped (connected components), each group with the lowest cosine of any
  two of its items.
- failures by error type, with examples.
- drift against another version: for items whose image bytes did not change, the cosine of the
  old and the new vector; neighbour overlap@10 of the items in both versions; the shift of the
  vector distribution over a sample of the items in both versions (their first two principal
  components in the old version's basis, the length of the mean vector, each item's cosine to its
  nearest other item), as histograms whose numbers health.json carries and health.html plots.
- cold items: catalogue items with no behaviour, where the version has behaviour data.

`write_report` writes `health.json` (the dict) and `health.html` (the same numbers and plots).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embeddings.vectors import l2_normalize

if TYPE_CHECKING:
    from index.loaded import LoadedIndex

# Chosen on real photographs (tests/test_health.py measures the same sets): light variants of
# scikit-image's photos (JPEG re-encodes at quality 40-85, half size, 88-95 % crops, flips) keep a
# cosine of 0.88-0.95 on average with tf_efficientnet_lite0 (the hardest, a small greyscale photo,
# 0.66-0.78); distinct scikit-image photos reach at most 0.49; distinct photos of one kind of thing
# (20 LFW faces) average 0.72 and reach 0.91. Precision first: a duplicate report that names
# different products loses the merchandiser's trust, a missed re-listing costs little.
DUPLICATE_COSINE = 0.92
DUPLICATE_HOW = ("lite0 cosines on scikit-image photos: light variants (re-encode, resize, crop, "
                 "flip) 0.88-0.95 mean; distinct photos max 0.49; distinct faces (LFW) mean 0.72, "
                 "max 0.91; threshold set above the distinct faces' maximum")
DUPLICATE_K = 10
PLACEHOLDER_MIN_ITEMS = 5
OVERLAP_K = 10
OVERLAP_SAMPLE = 5_000  # items (a seeded sample) whose neighbour lists are compared
DISTRIBUTION_SAMPLE = 20_000  # items (a seeded sample) whose vectors describe the distribution
DISTRIBUTION_BINS = 40
EXAMPLES = 3
GROUP_PAIRS_MAX = 2_000  # larger duplicate groups: the lowest cosine of their joining pairs
SEARCH_CHUNK = 10_000
_NO_HASH = {"", "0" * 64, "None", "nan"}


@dataclass
class Health:
    """The report (the health.json dict) and the numbers behind its plots."""

    report: dict[str, Any]
    nearest_cosines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    drift_cosines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def health_report(loaded: LoadedIndex, against: LoadedIndex | None = None,
                  failures: pd.DataFrame | None = None,
                  duplicate_cosine: float = DUPLICATE_COSINE,
                  placeholder_min_items: int = PLACEHOLDER_MIN_ITEMS) -> Health:
    """Health of `loaded` (and its drift from `against`); `failures`: the embedding set's
    failures.parquet (None: read from the set the version was built from, where it still exists)."""
    ids = np.asarray(loaded.items["item_id"].to_numpy(), dtype=object)
    shas = image_hashes(loaded)
    placeholders, in_placeholder = _placeholders(loaded, shas, placeholder_min_items)
    nearest_rows, nearest_scores = neighbour_rows(loaded, np.arange(len(loaded)), DUPLICATE_K)
    duplicates = _duplicates(loaded, nearest_rows, nearest_scores, in_placeholder, duplicate_cosine)
    if failures is None:
        failures = _set_failures(loaded)
    report: dict[str, Any] = {
        "version": loaded.version,
        "items": len(loaded),
        "duplicates": [{"items": [ids[r] for r in rows], "cosine": round(cos, 4)}
                       for rows, cos in duplicates],
        "placeholders": [{"items": [ids[r] for r in rows], "image_sha256": sha}
                         for rows, sha in placeholders],
        "failures": failure_summary(failures),
        "drift": None,
        "cold_items": cold_items(loaded),
        "thresholds": {"duplicate_cosine": duplicate_cosine, "duplicate_how": DUPLICATE_HOW,
                       "duplicate_k": DUPLICATE_K, "placeholder_min_items": placeholder_min_items},
    }
    health = Health(report, nearest_scores[:, 0].astype(np.float32) if nearest_scores.size else
                    np.zeros(0, np.float32))
    if against is not None:
        report["drift"], health.drift_cosines = drift(loaded, against, shas)
    return health


# -- image identity -------------------------------------------------------------------------------
def image_hashes(loaded: LoadedIndex) -> np.ndarray | None:
    """Each item's image_sha256 (None where unknown), from items.parquet, else from the embedding
    set the version was built from; None when neither holds real hashes."""
    items = loaded.items
    if "image_sha256" in items.columns:
        shas = items["image_sha256"].astype(object).to_numpy()
    else:
        by_item = _set_hashes(loaded)
        if by_item is None:
            return None
        shas = items["item_id"].map(by_item).to_numpy(dtype=object)
    shas = np.array([None if s is None or str(s) in _NO_HASH else str(s) for s in shas], dtype=object)
    return shas if any(s is not None for s in shas) else None


def _set_hashes(loaded: LoadedIndex) -> pd.Series | None:
    import pyarrow.parquet as pq

    folder = _set_dir(loaded)
    if folder is None:
        return None
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return None
    frames = [pq.read_table(p, columns=["item_id", "image_sha256"]).to_pandas() for p in parts]
    table = pd.concat(frames, ignore_index=True).drop_duplicates("item_id")
    return table.set_index("item_id")["image_sha256"]


def _set_dir(loaded: LoadedIndex) -> Path | None:
    path = (loaded.meta.get("embeddings") or {}).get("path")
    if not path or not Path(path).is_dir():
        return None
    return Path(path)


# -- placeholders and duplicates -----------------------------------------------------------------
def _placeholders(loaded: LoadedIndex, shas: np.ndarray | None,
                  min_items: int) -> tuple[list[tuple[list[int], str | None]], np.ndarray]:
    """Groups of at least `min_items` items sharing one image (by hash, else by identical vector)
    as (rows, sha or None), largest first, and a mask of the rows in any of them."""
    n = len(loaded)
    groups: list[tuple[list[int], str | None]] = []
    taken = np.zeros(n, dtype=bool)
    if shas is not None:
        known = pd.Series(shas).dropna()
        for sha, rows in known.groupby(known).groups.items():
            if len(rows) >= min_items:
                groups.append((sorted(int(r) for r in rows), str(sha)))
                taken[list(rows)] = True
    rest = np.flatnonzero(~taken)
    if len(rest):
        vectors = np.ascontiguousarray(np.asarray(loaded.vectors[rest]))
        keys = vectors.view(np.dtype((np.void, vectors.dtype.itemsize * vectors.shape[1]))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        for g in np.flatnonzero(counts >= min_items):
            rows = rest[inverse == g]
            groups.append((rows.tolist(), None))
            taken[rows] = True
    groups.sort(key=lambda g: (-len(g[0]), g[0][0]))
    return groups, taken


def neighbour_rows(loaded: LoadedIndex, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other items of each row as rows (-1: none) and cosines, best first: from the
    stored neighbour lists where they are long enough, else by a batched index search."""
    k = max(0, min(k, len(loaded) - 1))
    if loaded.neighbours is not None and loaded.neighbours.shape[1] >= k:
        return (np.asarray(loaded.neighbours[rows, :k], dtype=np.int64),
                np.asarray(loaded.neighbour_scores[rows, :k], dtype=np.float32))
    out_rows = np.full((len(rows), k), -1, dtype=np.int64)
    out_scores = np.zeros((len(rows), k), dtype=np.float32)
    if k == 0:
        return out_rows, out_scores
    row_of = pd.Index(loaded.items["item_id"].to_numpy())
    for start in range(0, len(rows), SEARCH_CHUNK):
        chunk = rows[start:start + SEARCH_CHUNK]
        scores, found = loaded.search(np.asarray(loaded.vectors[chunk], dtype=np.float32), k + 1)
        found_rows = row_of.get_indexer(found.ravel()).reshape(found.shape)
        keep = (found_rows != chunk[:, None]) & (found_rows >= 0)
        pick = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        ok = np.take_along_axis(keep, pick, 1)
        out_rows[start:start + len(chunk)] = np.where(ok, np.take_along_axis(found_rows, pick, 1), -1)
        out_scores[start:start + len(chunk)] = np.where(ok, np.take_along_axis(scores, pick, 1), 0)
    return out_rows, out_scores


def _duplicates(loaded: LoadedIndex, nearest: np.ndarray, scores: np.ndarray, in_placeholder: np.ndarray,
                threshold: float) -> list[tuple[list[int], float]]:
    """Connected components of the near-identical pairs among each item's nearest neighbours (no
    placeholder items), each with the lowest cosine of any two of its items, lowest first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(loaded)
    src = np.repeat(np.arange(n), nearest.shape[1])
    dst = nearest.ravel()
    # the index's scores may be approximate (compressed codes): candidates a little below the
    # threshold are re-scored on the stored vectors
    cand = (dst >= 0) & (scores.ravel() >= threshold - 0.05)
    src, dst = src[cand], dst[cand]
    cand = ~in_placeholder[src] & ~in_placeholder[dst]
    src, dst = src[cand], dst[cand]
    if len(src) == 0:
        return []
    exact = np.einsum("ij,ij->i", _unit(loaded.vectors[src]), _unit(loaded.vectors[dst]))
    keep = exact >= threshold
    src, dst, exact = src[keep], dst[keep], exact[keep]
    if len(src) == 0:
        return []
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    members = np.unique(np.concatenate([src, dst]))
    members = members[np.argsort(labels[members], kind="stable")]
    _, starts = np.unique(labels[members], return_index=True)
    edge_min = pd.Series(exact).groupby(labels[src]).min()
    groups = []
    for rows in np.split(members, starts[1:]):
        if len(rows) <= GROUP_PAIRS_MAX:
            vectors = _unit(loaded.vectors[rows])
            lowest = float((vectors @ vectors.T).min())
        else:  # a chain this long: the lowest cosine of the pairs that joined it
            lowest = float(edge_min[labels[rows[0]]])
        groups.append((rows.tolist(), min(lowest, 1.0)))
    groups.sort(key=lambda g: (g[1], g[0][0]))
    return groups


def _unit(vectors: np.ndarray) -> np.ndarray:
    return l2_normalize(np.asarray(vectors, dtype=np.float32))  # the stored vectors are float16


# -- failures, cold items ------------------------------------------------------------------------
def _set_failures(loaded: LoadedIndex) -> pd.DataFrame | None:
    folder = _set_dir(loaded)
    if folder is None or not (folder / "failures.parquet").is_file():
        return None
    return pd.read_parquet(folder / "failures.parquet")


def failure_summary(failures: pd.DataFrame | None) -> dict[str, Any]:
    """{"count", "by_type": {error_type: count}, "examples": {error_type: [rows]}} (count None when
    the failures are unknown)."""
    if failures is None:
        return {"count": None, "by_type": {}, "examples": {}}
    by_type = failures["error_type"].astype(str).value_counts()
    examples = {}
    for error_type in by_type.index:
        rows = failures[failures["error_type"].astype(str) == error_type].head(EXAMPLES)
        examples[error_type] = [{c: (None if pd.isna(r[c]) else str(r[c]))
                                 for c in ("item_id", "image", "message") if c in rows.columns}
                                for _, r in rows.iterrows()]
    return {"count": len(failures), "by_type": {str(t): int(c) for t, c in by_type.items()},
            "examples": examples}


def cold_items(loaded: LoadedIndex) -> int | None:
    """Catalogue items with no behaviour, where the version has behaviour data (else None)."""
    from recsys.interactions import Interactions

    path = loaded.path / "behaviour" / "interactions.npz"
    if not path.is_file():
        return None
    interactions = Interactions.load(path)
    warm = set(np.asarray(interactions.item_ids)[interactions.item_counts() > 0].tolist())
    return int(sum(1 for item in loaded.items["item_id"] if item not in warm))


# -- drift ---------------------------------------------------------------------------------------
def drift(loaded: LoadedIndex, against: LoadedIndex,
          shas: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Drift of `loaded` from `against`: the cosine of the two vectors of every item whose image
    did not change (same image_sha256 where both versions know it, else the same image reference),
    and the mean overlap of the items' top OVERLAP_K neighbours; with the cosines."""
    new_ids = loaded.items["item_id"].to_numpy()
    old_rows = pd.Index(against.items["item_id"].to_numpy()).get_indexer(new_ids)
    both = np.flatnonzero(old_rows >= 0)
    old_shas = image_hashes(against)
    if shas is None:
        shas = image_hashes(loaded)
    if shas is not None and old_shas is not None:
        new_key, old_key = shas[both], old_shas[old_rows[both]]
    else:
        column = "image" if "image" in loaded.items.columns and "image" in against.items.columns else None
        new_key = loaded.items[column].to_numpy(dtype=object)[both] if column else np.full(len(both), None)
        old_key = against.items[column].to_numpy(dtype=object)[old_rows[both]] if column else new_key
    same = np.array([a is not None and not pd.isna(a) and a == b for a, b in zip(new_key, old_key)],
                    dtype=bool)
    new_same, old_same = both[same], old_rows[both][same]
    comparable = loaded.dim == against.dim  # vectors of different sizes have no cosine
    cosines = np.zeros(0, np.float32)
    if len(new_same) and comparable:
        cosines = np.concatenate([
            np.einsum("ij,ij->i", _unit(loaded.vectors[new_same[s:s + SEARCH_CHUNK]]),
                      _unit(against.vectors[old_same[s:s + SEARCH_CHUNK]]))
            for s in range(0, len(new_same), SEARCH_CHUNK)])
    report = {
        "against": against.version,
        "same_image_items": int(len(new_same)),
        "same_image_cosine": {"min": round(float(cosines.min()), 4) if len(cosines) else None,
                              "mean": round(float(cosines.mean()), 4) if len(cosines) else None},
        f"neighbour_overlap@{OVERLAP_K}": neighbour_overlap(loaded, against, both, old_rows[both]),
        "common_items": int(len(both)),
        "distribution": distribution_shift(loaded, against, both, old_rows[both], cosines),
    }
    if not comparable:
        report["note"] = (f"the vectors changed size ({against.dim} -> {loaded.dim}): no old-new cosine "
                          "and no shared principal components")
    return report, cosines


def distribution_shift(loaded: LoadedIndex, against: LoadedIndex, new_rows: np.ndarray,
                       old_rows: np.ndarray, same_image_cosines: np.ndarray) -> dict[str, Any]:
    """How the vector distribution moved, over a seeded sample of DISTRIBUTION_SAMPLE of the items
    in both versions (`new_rows` in `loaded`, `old_rows` the same items in `against`):

    - `spread`: the length of each version's mean vector (0: spread over every direction; 1: every
      vector the same; the vectors are unit length, so their norms say nothing);
    - `centroid_cosine`: the cosine of the two mean vectors;
    - `principal_components`: both versions' vectors projected on the old version's first two
      principal components (mean, std and a histogram of each, old and new on the same bins);
    - `nearest_cosine`: each sampled item's cosine to its nearest other item, in either version;
    - `same_image_cosine`: the histogram of the old-new cosines of the unchanged images.

    Histograms are {"edges": [bins + 1], "old": [counts], "new": [counts]} (`counts` alone for the
    same-image cosines); health.html plots exactly these numbers."""
    out: dict[str, Any] = {"items": 0, "spread": None, "centroid_cosine": None,
                           "principal_components": None, "nearest_cosine": None,
                           "same_image_cosine": _counts(same_image_cosines)}
    if len(new_rows) < 2:
        return out
    pick = np.arange(len(new_rows))
    if len(pick) > DISTRIBUTION_SAMPLE:
        pick = np.sort(np.random.default_rng(0).choice(len(new_rows), DISTRIBUTION_SAMPLE, replace=False))
    new_pick, old_pick = new_rows[pick], old_rows[pick]
    new, old = _unit(loaded.vectors[new_pick]), _unit(against.vectors[old_pick])
    new_mean, old_mean = new.mean(axis=0, dtype=np.float64), old.mean(axis=0, dtype=np.float64)
    out["items"] = int(len(pick))
    out["spread"] = {"old": _round(np.linalg.norm(old_mean)), "new": _round(np.linalg.norm(new_mean))}
    _, old_nearest = neighbour_rows(against, old_pick, 1)
    _, new_nearest = neighbour_rows(loaded, new_pick, 1)
    out["nearest_cosine"] = _pair(old_nearest[:, 0], new_nearest[:, 0])
    if loaded.dim == against.dim:
        norms = np.linalg.norm(old_mean) * np.linalg.norm(new_mean)
        out["centroid_cosine"] = _round(old_mean @ new_mean / norms) if norms > 0 else None
        centred = old - old_mean
        variances, axes = _principal_axes(centred)
        basis = axes[:2].copy()
        basis *= np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])[:, None]
        old_pcs, new_pcs = centred @ basis.T, (new - old_mean) @ basis.T
        total = float(variances.clip(min=0).sum())
        out["principal_components"] = {
            "basis": "the old version's first principal components, on the old mean",
            "explained_variance_ratio": [_round(v / total) if total > 0 else None
                                         for v in variances[:2]],
            "old": {"mean": [_round(v) for v in old_pcs.mean(axis=0)],
                    "std": [_round(v) for v in old_pcs.std(axis=0)]},
            "new": {"mean": [_round(v) for v in new_pcs.mean(axis=0)],
                    "std": [_round(v) for v in new_pcs.std(axis=0)]},
            "histograms": [_pair(old_pcs[:, c], new_pcs[:, c]) for c in range(old_pcs.shape[1])],
        }
    return out


def _principal_axes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The variances along the principal axes of `centred` (rows: samples), largest first, and
    those axes (rows). Fewer samples than dimensions: from the SVD of the samples themselves (the
    covariance has rank below the sample count, and its full eigendecomposition would cost
    dimensions cubed); else from the covariance's eigendecomposition."""
    samples, dims = centred.shape
    if samples < dims:
        _, singular, axes = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        return singular ** 2 / samples, axes
    variances, axes = np.linalg.eigh(centred.T.astype(np.float64) @ centred / samples)
    order = np.argsort(variances)[::-1]
    return variances[order], axes[:, order].T


def _round(value: float) -> float:
    return round(float(value), 4) + 0.0  # + 0.0: never -0.0


def _pair(old: np.ndarray, new: np.ndarray) -> dict[str, list]:
    """Histograms of two samples on the same bins."""
    edges = _edges(np.concatenate([old, new]))
    return {"edges": edges.tolist(), "old": np.histogram(old, edges)[0].tolist(),
            "new": np.histogram(new, edges)[0].tolist()}


def _counts(values: np.ndarray) -> dict[str, list] | None:
    if not len(values):
        return None
    edges = _edges(values)
    return {"edges": edges.tolist(), "counts": np.histogram(values, edges)[0].tolist()}


def _edges(values: np.ndarray) -> np.ndarray:
    """DISTRIBUTION_BINS bins over the values, edges at 6 decimals (the counts use those very
    edges, so health.json's numbers can be checked); values a float's rounding apart get one
    millesimal span."""
    values = np.asarray(values, dtype=np.float64)
    low, high = np.floor(values.min() * 1e6) / 1e6, np.ceil(values.max() * 1e6) / 1e6
    if high - low < 1e-3:
        low, high = low - 5e-4, high + 5e-4
    return np.round(np.linspace(low, high, DISTRIBUTION_BINS + 1), 6)


def neighbour_overlap(loaded: LoadedIndex, against: LoadedIndex, new_rows: np.ndarray,
                      old_rows: np.ndarray, k: int = OVERLAP_K) -> float | None:
    """Mean share of an item's top k neighbours (by item id) that both versions agree on, over a
    seeded sample of OVERLAP_SAMPLE of the items in both (`new_rows` in `loaded`, `old_rows` the same
    items in `against`). Neighbours are searched among the common items only, so items added or
    removed do not count as drift."""
    if len(new_rows) < 2:
        return None
    pick = np.arange(len(new_rows))
    if len(pick) > OVERLAP_SAMPLE:
        pick = np.sort(np.random.default_rng(0).choice(len(new_rows), OVERLAP_SAMPLE, replace=False))
    a = _common_neighbours(loaded, new_rows, new_rows[pick], k)
    b = _common_neighbours(against, old_rows, old_rows[pick], k)
    shares = [len(sa & sb) / max(len(sa), len(sb)) for sa, sb in zip(a, b) if sa or sb]
    return round(float(np.mean(shares)), 4) if shares else None


def _common_neighbours(loaded: LoadedIndex, common: np.ndarray, queries: np.ndarray, k: int) -> list[set]:
    """The ids of the k nearest other items of each query row among the `common` rows."""
    ids = np.asarray(loaded.items["item_id"].to_numpy(), dtype=object)
    allowed = None
    if len(common) < len(loaded):
        allowed = np.zeros(len(loaded), dtype=bool)
        allowed[common] = True
    stored = loaded.neighbours is not None and loaded.neighbours.shape[1] >= min(k, len(loaded) - 1)
    if allowed is None and stored:
        rows, _ = neighbour_rows(loaded, queries, k)
        return [{ids[r] for r in row if r >= 0} for row in rows.tolist()]
    out: list[set] = []
    for start in range(0, len(queries), SEARCH_CHUNK):
        chunk = queries[start:start + SEARCH_CHUNK]
        xq = _unit(loaded.vectors[chunk])
        found = loaded.nearest_many(xq, k + 1, allowed)
        if found is None:  # too many rows to search exactly and no ID selector: the plain neighbours
            rows, _ = neighbour_rows(loaded, chunk, k)
            keep = set(common.tolist())
            found = [[(ids[r], 0.0) for r in row if r in keep] for row in rows.tolist()]
        for row, hits in zip(chunk.tolist(), found):
            out.append(set([item for item, _ in hits if item != ids[row]][:k]))
    return out


# -- files ---------------------------------------------------------------------------------------
def write_report(health: Health, out_dir: str | Path) -> tuple[Path, Path]:
    """health.json and health.html (tables and matplotlib plots as embedded PNG) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "health.json", out / "health.html"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(health.report, indent=2, default=_plain))
    tmp.replace(json_path)
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(_html(health))
    tmp.replace(html_path)
    return json_path, html_path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _figure(figsize: tuple[float, float]):
    """A matplotlib Figure of its own: no pyplot (its import, its registry of open figures and the
    garbage collection each close runs), since the page only needs the PNG bytes."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _png(fig, title: str) -> str:
    """The figure as an <img> with its PNG inline (the page is one self-contained file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,' \
           f'{base64.b64encode(buffer.getvalue()).decode()}">'


def _shift_plot(distribution: dict[str, Any], title: str) -> str | None:
    """Old vs new histograms of the distribution numbers in health.json (principal components,
    nearest-item cosine), drawn from those very numbers."""
    panels = []
    pcs = distribution.get("principal_components")
    if pcs is not None:
        for c, histogram in enumerate(pcs["histograms"]):
            ratio = pcs["explained_variance_ratio"][c]
            panels.append((histogram, f"principal component {c + 1} of the old vectors"
                                      + (f" ({ratio:.0%} of the variance)" if ratio is not None else "")))
    if distribution.get("nearest_cosine") is not None:
        panels.append((distribution["nearest_cosine"], "cosine to the nearest other item"))
    if not panels:
        return None
    fig = _figure((4.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (histogram, xlabel) in zip(axes[0], panels):
        ax.stairs(histogram["old"], histogram["edges"], label="old", color="#888888", fill=True, alpha=0.5)
        ax.stairs(histogram["new"], histogram["edges"], label="new", color="#c0392b", linewidth=1.5)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("items")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig, title)


def _histogram(values: np.ndarray, title: str, xlabel: str, line: float | None = None) -> str:
    fig = _figure((6, 3))
    ax = fig.subplots()
    values = np.asarray(values, dtype=np.float64)
    # values a float's rounding apart (unchanged vectors) cannot be split into 50 bins
    ax.hist(values, bins=50 if np.ptp(values) > 1e-3 else 1, color="#4a7ab0")
    if line is not None:
        ax.axvline(line, color="#c0392b", linestyle="--", label=f"threshold {line}")
        ax.legend()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    fig.tight_layout()
    return _png(fig, title)


def _html(health: Health) -> str:
    r = health.report
    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>Catalogue health {esc(r['version'])}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;"
             "text-align:left;vertical-align:top}</style>",
             f"<h1>Catalogue health: version {esc(r['version'])}</h1>",
             f"<p>{r['items']} items; {len(r['duplicates'])} duplicate groups; "
             f"{len(r['placeholders'])} placeholders; {r['failures']['count']} failed images; "
             f"cold items: {r['cold_items']}</p>"]
    if len(health.nearest_cosines):
        parts.append(_histogram(health.nearest_cosines, "Each item's nearest other item",
                                "cosine", r["thresholds"]["duplicate_cosine"]))
    parts.append(f"<h2>Duplicates</h2><p>Threshold {r['thresholds']['duplicate_cosine']}: "
                 f"{esc(r['thresholds']['duplicate_how'])}</p><table><tr><th>cosine</th><th>items</th></tr>")
    parts += [f"<tr><td>{d['cosine']:.3f}</td><td>{esc(', '.join(map(str, d['items'])))}</td></tr>"
              for d in r["duplicates"][:200]]
    parts.append("</table><h2>Placeholders</h2><table><tr><th>items</th><th>image</th></tr>")
    parts += [f"<tr><td>{len(p['items'])}: {esc(', '.join(map(str, p['items'][:20])))}</td>"
              f"<td>{esc(str(p['image_sha256']))}</td></tr>" for p in r["placeholders"]]
    parts.append("</table><h2>Failures</h2><table><tr><th>type</th><th>count</th><th>examples</th></tr>")
    for error_type, count in r["failures"]["by_type"].items():
        examples = "; ".join(f"{e.get('item_id')}: {e.get('message')}"
                             for e in r["failures"]["examples"].get(error_type, []))
        parts.append(f"<tr><td>{esc(error_type)}</td><td>{count}</td><td>{esc(examples)}</td></tr>")
    parts.append("</table>")
    d = r["drift"]
    if d is not None:
        parts.append(f"<h2>Drift against {esc(d['against'])}</h2><p>{d['same_image_items']} items with "
                     f"unchanged images: cosine min {d['same_image_cosine']['min']}, mean "
                     f"{d['same_image_cosine']['mean']}; neighbour overlap@{OVERLAP_K}: "
                     f"{d[f'neighbour_overlap@{OVERLAP_K}']}</p>")
        if d.get("note"):
            parts.append(f"<p>{esc(d['note'])}</p>")
        if len(health.drift_cosines):
            parts.append(_histogram(health.drift_cosines, "Old vs new vector of unchanged images", "cosine"))
        parts.append(_shift_html(d.get("distribution")))
    return "\n".join(parts) + "\n"


SHIFT_TITLE = "Vector distribution: old vs new"


def _shift_html(distribution: dict[str, Any] | None) -> str:
    """The distribution shift: its numbers, and their plot."""
    if not distribution or not distribution["items"]:
        return ""
    spread, pcs = distribution["spread"], distribution["principal_components"]
    text = (f"<h3>Shift of the vector distribution</h3><p>Over {distribution['items']} items in both "
            f"versions: length of the mean vector (0 spread out, 1 all alike) old {spread['old']}, new "
            f"{spread['new']}; cosine of the two mean vectors {distribution['centroid_cosine']}.")
    if pcs is not None:
        old, new = pcs["old"], pcs["new"]
        text += "".join(f" Principal component {c + 1}: old mean {old['mean'][c]} std {old['std'][c]}, "
                        f"new mean {new['mean'][c]} std {new['std'][c]}."
                        for c in range(len(pcs["histograms"])))
    plot = _shift_plot(distribution, SHIFT_TITLE)
    return text + "</p>" + ("\n" + plot if plot else "")
