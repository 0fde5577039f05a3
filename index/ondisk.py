"""IVF-PQ with its inverted lists on disk: an index over more items than memory holds vectors for.

FAISS's recipe (faiss.contrib.ondisk): train an empty IVF-PQ index on a sample, fill a copy of it
with one block of vectors at a time and write each block out, then merge the blocks' lists into
one `OnDiskInvertedLists` file (`lists.ivfdata`), which searches read through a memory map. Only
the coarse centroids (and their small HNSW graph), the PQ codebooks and one block of vectors are
ever in memory while building; a search touches only the `nprobe` lists it scans, so the page cache
holds what is hot and the rest stays on disk.

`memory_model` says what each part costs at a given size (the benchmark compares it with what it
measures and extrapolates with it); `rerank` re-scores the PQ candidates with the exact vectors from a
memory-mapped float32 file, the usual way to buy back the recall that PQ codes lose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

TRAINED = "trained.faiss"
POPULATED = "index.faiss"
LISTS = "lists.ivfdata"


def train(sample: np.ndarray, factory: str) -> faiss.Index:
    """An empty inner-product IVF index of `factory`, trained: e.g. `IVF4096_HNSW32,PQ32np` (`np`: no
    polysemous training, minutes of annealing that only Hamming-distance filtering uses)."""
    index = faiss.index_factory(sample.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError(f"{factory!r} is not an IVF index; on-disk lists need one")
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def build(trained: faiss.Index, blocks: Iterable[tuple[np.ndarray, np.ndarray]], folder: str | Path) -> Path:
    """Fill the trained index block by block ((vectors, int64 ids) each) into lists on disk.

    Returns the path of the populated index, which `open_index` reads; its lists file sits beside it.
    The block files are removed once merged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(trained, str(folder / TRAINED))
    block_files = []
    for i, (vectors, ids) in enumerate(blocks):
        part = faiss.read_index(str(folder / TRAINED))
        part.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                          np.ascontiguousarray(ids, dtype=np.int64))
        block_files.append(folder / f"block-{i:05d}.faiss")
        faiss.write_index(part, str(block_files[-1]))
        del part
    from faiss.contrib.ondisk import merge_ondisk

    index = faiss.read_index(str(folder / TRAINED))
    lists = folder / LISTS
    if lists.exists():
        lists.unlink()
    merge_ondisk(index, [str(f) for f in block_files], str(lists))
    out = folder / POPULATED
    faiss.write_index(index, str(out))  # refers to lists.ivfdata by name
    for f in block_files:
        f.unlink()
    log.info("on-disk IVF: %d vectors in %d blocks, lists %.0f MB", index.ntotal, len(block_files),
             lists.stat().st_size / 1e6)
    return out


def open_index(path: str | Path, nprobe: int = 32) -> faiss.Index:
    """The populated index, its lists memory-mapped from the file beside it."""
    index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def rerank(index: faiss.Index, vectors: np.ndarray, xq: np.ndarray, k: int,
           candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by exact inner product among the index's top `candidates` (ids are rows of `vectors`,
    which may be an np.memmap: only the candidates' rows are read)."""
    _, found = index.search(np.ascontiguousarray(xq, dtype=np.float32), candidates)
    scores = np.full(found.shape, -np.inf, dtype=np.float32)
    for q, row in enumerate(found):
        ok = row >= 0
        order = np.argsort(row[ok])  # read the memory map in file order
        picked = row[ok][order]
        scores[q, np.flatnonzero(ok)[order]] = np.asarray(vectors[picked], dtype=np.float32) @ xq[q]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, 1), np.take_along_axis(found, top, 1)


@dataclass(frozen=True)
class MemoryModel:
    """Bytes of each part of an on-disk IVF-PQ index of n vectors (HNSW coarse quantizer, M 32)."""

    n: int
    dim: int
    nlist: int
    code_bytes: int

    @property
    def ram(self) -> int:
        """Always resident: centroids, their HNSW graph, PQ codebooks, list offsets, an id per item
        in the serving process's id map (ids are FAISS ids inside the lists; items.parquet maps them)."""
        centroids = self.nlist * (4 * self.dim + 4 * 2 * 32 + 16)
        codebooks = self.dim * 256 * 4
        return centroids + codebooks + self.nlist * 24

    @property
    def lists_disk(self) -> int:
        """lists.ivfdata: a code and an int64 id per vector."""
        return self.n * (self.code_bytes + 8)

    @property
    def vectors_disk(self) -> int:
        """The float32 vectors for re-ranking (memory-mapped, read for candidates only)."""
        return self.n * self.dim * 4

    def hot_lists(self, nprobe: int) -> int:
        """Bytes one query reads from the lists: nprobe lists of average length."""
        return int(nprobe * self.lists_disk / max(self.nlist, 1))

    def build_peak(self, block_rows: int) -> int:
        """Building: the trained index plus one block of float32 vectors, their residuals to the
        centroids (another block of floats, while FAISS encodes) and their codes and ids."""
        return self.ram + block_rows * (2 * 4 * self.dim + self.code_bytes + 8)


def file_size(path: str | Path) -> int:
    return os.path.getsize(path)
