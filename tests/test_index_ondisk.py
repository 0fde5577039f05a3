"""IVF-PQ with inverted lists on disk: built in blocks, merged, searched from the memory-mapped file."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from index import ondisk
from index.synthetic import clustered_vectors
from index.tuning import exact_knn, recall_at_k


def test_blocks_merged_on_disk_search_like_the_same_index_in_memory(tmp_path: Path) -> None:
    data = clustered_vectors(12_050, 32, seed=3)
    xb, xq = data[:12_000], data[12_000:]
    factory = "IVF64,PQ8np"
    trained = ondisk.train(xb, factory)
    ids = np.arange(len(xb), dtype=np.int64)
    blocks = ((xb[s:s + 5000], ids[s:s + 5000]) for s in range(0, len(xb), 5000))  # 3 uneven blocks
    path = ondisk.build(trained, blocks, tmp_path / "ivf")

    assert sorted(p.name for p in path.parent.iterdir()) == [ondisk.POPULATED, ondisk.LISTS, ondisk.TRAINED]
    index = ondisk.open_index(path, nprobe=8)
    assert index.ntotal == len(xb)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists) and lists.filename.endswith(ondisk.LISTS)

    memory = faiss.read_index(str(tmp_path / "ivf" / ondisk.TRAINED))
    memory.add_with_ids(xb, ids)
    faiss.extract_index_ivf(memory).nprobe = 8
    d_disk, i_disk = index.search(xq, 10)
    d_mem, i_mem = memory.search(xq, 10)
    np.testing.assert_array_equal(i_disk, i_mem)
    np.testing.assert_allclose(d_disk, d_mem, rtol=1e-6)

    _, truth = exact_knn(xb, xq, 10)
    pq_recall = recall_at_k(i_disk, truth)
    vectors = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+", dtype=np.float32, shape=xb.shape)
    vectors[:] = xb
    _, reranked = ondisk.rerank(index, vectors, xq, 10, candidates=100)
    assert recall_at_k(reranked, truth) > max(pq_recall, 0.9)


def test_memory_model_counts_codes_and_ids_on_disk(tmp_path: Path) -> None:
    model = ondisk.MemoryModel(n=10_000_000, dim=128, nlist=4096, code_bytes=32)
    assert model.lists_disk == 10_000_000 * 40
    assert model.ram < 5 * 2**20  # centroids and codebooks only
    assert model.hot_lists(32) == 32 * model.lists_disk // 4096
