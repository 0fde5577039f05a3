"""Choosing a FAISS index for a catalogue's size under a memory budget (the `--factory auto` rule).

- Exact `Flat` while a brute-force query stays cheap (n x dim up to FLAT_MAX_COST multiply-adds,
  about a quarter of a millisecond on one core) and the vectors fit the budget.
- `HNSW32,Flat` when its graph and full vectors fit the budget: the fastest index at high recall.
- `IVF{nlist},Flat` when the full vectors fit but the graph does not.
- `OPQ{m}_{d},IVF{nlist},PQ{m}np` (m bytes a vector) when the full vectors do not fit; below
  OPQ_MIN_ITEMS items the OPQ rotation is left out (its training then costs far more than the
  whole rest of the build, and small sets only get here under a tiny --memory-budget). `np`: no
  polysemous training, a slow annealing step that only serves Hamming-distance filtering, which we
  do not use. PQ needs m to divide the dimension: OPQ outputs a multiple of m; without OPQ, a
  dimension m does not divide is first padded by a random rotation (`RR{d}`, which keeps inner
  products). PQ codes need PQ_MIN_TRAIN vectors to train (256 centroids a sub-quantizer).
nlist is sized to the set, about 4 x sqrt(n) rounded to a power of two, with at least 39 training
points per list (FAISS's k-means minimum).
Any FAISS factory string can be given instead of "auto"; the metric is always inner product on
unit vectors (cosine).

When the auto choice misses the target recall (hard data: whitened or high-intrinsic-dimension
embeddings), the build escalates through `auto_plans`, in order and within the budget: HNSW with
efSearch up to 4096; HNSW rebuilt with M 64 and efConstruction 320; IVF over full vectors;
exact Flat. The last plan over full vectors is always exact (Flat, or IVF at nprobe = nlist when
Flat's id map does not fit), so only a PQ budget can end without the target.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from index.errors import InputError

FLAT_MAX_COST = 4_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_M_LARGE = 64  # the escalation's rebuild
HNSW_EF_CONSTRUCTION_LARGE = 320
ID_OVERHEAD = 48  # bytes an item: IDMap2 id array and its reverse hash map
PQ_BYTES = (64, 48, 32, 16, 8)
OPQ_MIN_ITEMS = 65_536
PQ_MIN_TRAIN = 256

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str | int | None) -> int | None:
    """'8G', '512MiB', '1.5g', '1000000' -> bytes (powers of 1024); None stays None."""
    if text is None or isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"--memory-budget: cannot read {text!r} as a size (examples: 512M, 8G, 1.5T)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def default_memory_budget() -> int:
    """Half of the machine's physical memory: the index shares it with the server and the OS."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def ivf_lists(n: int) -> int:
    """About 4 x sqrt(n), a power of two, and no more lists than n / 39 training points allow."""
    target = 4 * math.sqrt(max(n, 1))
    nlist = 1 << max(0, round(math.log2(target)))
    return max(1, min(nlist, n // 39))


def estimate_memory(kind: str, n: int, dim: int, pq_bytes: int = 0, hnsw_m: int = HNSW_M) -> int:
    """Rough resident bytes of an index kind ('flat', 'hnsw', 'ivf_flat', 'ivf_pq') over n vectors."""
    vectors = 4 * dim
    if kind == "flat":
        return n * (vectors + ID_OVERHEAD)
    if kind == "hnsw":
        graph = 4 * 2 * hnsw_m * 1.1 + 16  # level 0 holds 2M links; upper levels add ~1/M of that
        return int(n * (vectors + graph + ID_OVERHEAD))
    centroids = ivf_lists(n) * vectors
    if kind == "ivf_flat":
        return n * (vectors + 8) + centroids
    if kind == "ivf_pq":
        return n * (pq_bytes + 8) + centroids + dim * dim * 4
    raise ValueError(kind)


def choose_factory(n: int, dim: int, memory_budget: int | None = None,
                   flat_max_cost: int = FLAT_MAX_COST) -> tuple[str, str]:
    """(FAISS factory string, the reason in words) for n vectors of dim under the budget."""
    budget = memory_budget if memory_budget is not None else default_memory_budget()
    if n * dim <= flat_max_cost and estimate_memory("flat", n, dim) <= budget:
        return "Flat", f"{n} x {dim} is small enough for exact search"
    if estimate_memory("hnsw", n, dim) <= budget:
        return f"HNSW{HNSW_M},Flat", f"HNSW fits the memory budget ({_mem(budget)})"
    nlist = ivf_lists(n)
    if estimate_memory("ivf_flat", n, dim) <= budget:
        return f"IVF{nlist},Flat", f"full vectors fit the budget ({_mem(budget)}) but the HNSW graph does not"
    for m in PQ_BYTES:
        if m <= dim and estimate_memory("ivf_pq", n, dim, m) <= budget:
            if n < PQ_MIN_TRAIN:
                raise InputError(f"--memory-budget {_mem(budget)} is too small for the full vectors of {n} x "
                                 f"{dim}, and PQ codes need at least {PQ_MIN_TRAIN} vectors to train")
            return (f"{pq_transform(n, dim, m)}IVF{nlist},PQ{m}np",
                    f"full vectors do not fit the budget ({_mem(budget)}); {m}-byte PQ codes do")
    raise InputError(
        f"--memory-budget {_mem(budget)} is too small for {n} vectors of dim {dim} even with "
        f"{PQ_BYTES[-1]}-byte PQ codes (needs about {_mem(estimate_memory('ivf_pq', n, dim, PQ_BYTES[-1]))})"
    )


@dataclass(frozen=True)
class Plan:
    """One index to build and tune: its factory string, why, and how far its search is tuned."""

    factory: str
    reason: str
    ef_construction: int | None = None  # HNSW; None: BuildOptions.ef_construction
    wide_search: bool = False  # HNSW: efSearch up to 4096 rather than 1024
    exhaustive: bool = True  # IVF: nprobe up to nlist (exact over full vectors) rather than below it


def auto_plans(n: int, dim: int, memory_budget: int | None = None,
               flat_max_cost: int = FLAT_MAX_COST) -> list[Plan]:
    """The `--factory auto` choice, then what to try in turn while the target recall is missed.

    Flat is exact and IVF-Flat reaches exact search at nprobe = nlist, so they stand alone; so
    does IVF-PQ, the most code bytes the budget allows (nothing bigger fits). HNSW escalates.
    """
    budget = memory_budget if memory_budget is not None else default_memory_budget()
    factory, reason = choose_factory(n, dim, budget, flat_max_cost)
    if not factory.startswith("HNSW"):
        return [Plan(factory, reason)]
    plans = [Plan(factory, reason, wide_search=True)]
    if estimate_memory("hnsw", n, dim, hnsw_m=HNSW_M_LARGE) <= budget:
        plans.append(Plan(f"HNSW{HNSW_M_LARGE},Flat", "rebuilt with larger M and efConstruction",
                          HNSW_EF_CONSTRUCTION_LARGE, wide_search=True))
    flat_fits = estimate_memory("flat", n, dim) <= budget
    plans.append(Plan(f"IVF{ivf_lists(n)},Flat", "IVF over full vectors" if flat_fits else
                      "IVF over full vectors, up to exhaustive nprobe", exhaustive=not flat_fits))
    if flat_fits:
        plans.append(Plan("Flat", "exact search, within the memory budget"))
    return plans


def pq_transform(n: int, dim: int, m: int) -> str:
    """The factory prefix that gives m-byte PQ a dimension m divides: OPQ (learnt rotation, output
    a multiple of m) for large sets; else a random rotation padding dim up to a multiple of m, or
    nothing when m already divides dim."""
    if n >= OPQ_MIN_ITEMS:
        return f"OPQ{m}_{m * max(1, dim // m)},"
    if dim % m:
        return f"RR{-(-dim // m) * m},"
    return ""


def _mem(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
