"""Loading a version for a hot reload: the index memory-mapped, each file read only once its checksum
has passed, the per-item work done once and shared, display metadata as pandas writes it, and the
old version serving until the new one is completely loaded (a failed load never replaces it)."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from pathlib import Path

import anyio
import numpy as np
import orjson
import pandas as pd
import pytest

import index.loaded
import index.store
import recsys.api.metadata
import recsys.api.serving
from index.build import BuildOptions, build_version
from index.errors import IndexLoadError
from index.loaded import ItemRows
from index.store import ChecksumCheck, IndexStore, load_version, read_meta
from jobs.bench.api import synthetic_embeddings
from recsys.answers import NO_CONSTRAINTS
from recsys.api import lookup
from recsys.api.metadata import HIDDEN_COLUMNS, DisplayMetadata
from recsys.api.metrics import Metrics
from recsys.api.reload import ServingState
from recsys.api.serving import Snapshot

N, DIM = 400, 16


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two versions of 400 synthetic items (HNSW, with neighbour lists), the first published."""
    root = tmp_path_factory.mktemp("reload-load")
    embeddings = synthetic_embeddings(root / "set", N, DIM)
    opts = BuildOptions(tune_queries=50)
    first = build_version(embeddings, root / "store", "HNSW16,Flat", options=opts)
    second = build_version(embeddings, root / "store", "HNSW16,Flat", publish=False, options=opts)
    return root / "store", [first, second]


def mapped_files() -> set[str]:
    return {line.split(maxsplit=5)[5] for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6}


def test_the_index_is_memory_mapped_from_its_size_threshold(store, tmp_path, monkeypatch) -> None:
    root, (first, _) = store
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    vdir = copy / "versions" / first
    assert index.loaded.MMAP_MIN_BYTES <= 64 << 20  # 100,000 x 256 in HNSW (130 MB) is mapped
    plain = load_version(copy, first)  # a few kB: under MMAP_MIN_BYTES, read into memory
    assert str(vdir / "index.faiss") not in mapped_files()
    assert str(vdir / "vectors.npy") in mapped_files()  # numpy's arrays are always mapped
    monkeypatch.setattr(index.loaded, "MMAP_MIN_BYTES", 0)
    mapped = load_version(copy, first)
    assert str(vdir / "index.faiss") in mapped_files()
    ids = plain.item_ids[:30]
    plain.neighbours = mapped.neighbours = None  # answered by the FAISS index itself
    assert [plain.similar(i, 10) for i in ids] == [mapped.similar(i, 10) for i in ids]
    vectors = np.asarray(plain.vectors[:5], dtype=np.float32)
    assert np.array_equal(plain.search(vectors, 5)[1], mapped.search(vectors, 5)[1])


def test_item_rows_are_built_once_and_shared(store, monkeypatch) -> None:
    root, (first, _) = store
    monkeypatch.setattr(index.loaded, "SLICE_ROWS", 7)  # many slices, a short last one
    loaded = load_version(root, first)
    snapshot = Snapshot.load(root, first)
    ids = loaded.items["item_id"].tolist()
    assert loaded.item_ids == ids and list(loaded.row_of) == ids
    assert all(loaded.row_of[item] == row for row, item in enumerate(ids))
    assert list(loaded._item_ids) == ids and loaded._item_ids.dtype == object
    answers = snapshot.answers
    assert answers.row_of is answers.index.row_of and answers.item_ids is answers.index.item_ids
    rows = ItemRows(pd.Series([30, 10, 20]), np.array([5, 1, 3]))  # ids that are not strings
    assert rows.ids == ["30", "10", "20"] and rows.row_of == {"30": 0, "10": 1, "20": 2}
    assert rows.sorted_fids.tolist() == [1, 3, 5] and rows.fid_order.tolist() == [1, 2, 0]


def test_each_file_is_checked_before_it_is_read_and_every_file_before_loading_ends(store, tmp_path) -> None:
    root, (first, _) = store
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    st = IndexStore(copy)
    with st.write_version(base=first) as writer:  # a version with one more checksummed file
        writer.file("extra/notes.bin").write_bytes(b"x" * 1000)
        writer.commit({})
    derived = writer.version
    check = ChecksumCheck(st.version_dir(derived), read_meta(st.version_dir(derived)))
    check.wait("items.parquet")
    check.wait()
    load_version(copy, derived)

    (st.version_dir(derived) / "extra" / "notes.bin").write_bytes(b"y" * 1000)  # read by no loader
    with pytest.raises(IndexLoadError, match=r"extra/notes.bin: checksum mismatch"):
        load_version(copy, derived)
    vectors = st.version_dir(first) / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(IndexLoadError, match=r"vectors.npy: checksum mismatch"):
        load_version(copy, first)
    check = ChecksumCheck(st.version_dir(first), read_meta(st.version_dir(first)))
    check.wait("index.faiss")  # the other files still pass
    with pytest.raises(IndexLoadError, match="vectors.npy"):
        check.wait()


def rich_catalogue(n: int = 3000) -> pd.DataFrame:
    """Every kind of column a catalogue may hold, with missing values."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n)],
        "image": [f"/x/{i}.jpg" for i in range(n)],
        "category": rng.choice(["bags", "shoes", None, 'naïve "q" \\ /é😀\x01'], n),
        "price": np.where(rng.random(n) < 0.1, np.nan, rng.standard_normal(n) * 1e3),
        "tiny": rng.standard_normal(n) * 1e-7,
        "big": rng.standard_normal(n) * 1e17,
        "stock": rng.integers(-2**62, 2**62, n),
        "small": rng.integers(0, 255, n).astype(np.uint8),
        "in_stock": rng.random(n) < 0.5,
        "maybe": pd.array(np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.5), dtype="boolean"),
        "count": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 100, n)), dtype="Int64"),
        "added": pd.to_datetime(rng.integers(0, 2**40, n) * 1000, unit="us"),
        "added_utc": pd.to_datetime(rng.integers(0, 2**40, n) * 1000, unit="us", utc=True),
        "mixed": pd.Series([["a", 1], {"k": 2}, None, 3.5, "s"] * (n // 5), dtype=object),
        "note": pd.Series(rng.choice(["a", None, "é"], n), dtype=pd.StringDtype("python")),
        "kind": pd.Categorical(rng.choice(["x", "y"], n)),
        7: rng.integers(0, 5, n),
        "score": rng.random(n),
        "nothing": [None] * n,
    })


def records_reference(items: pd.DataFrame) -> list[bytes]:
    """What the API sent before metadata was assembled per item: pandas' records, re-serialised."""
    shown = items.drop(columns=[c for c in HIDDEN_COLUMNS if c in items.columns])
    records = orjson.loads(shown.to_json(orient="records", date_format="iso"))
    return [orjson.dumps({k: v for k, v in record.items() if v is not None})[1:-1] for record in records]


def test_display_metadata_is_what_pandas_records_give(monkeypatch) -> None:
    monkeypatch.setattr(recsys.api.metadata, "SLICE_ROWS", 1000)
    items = rich_catalogue()
    buffer = io.BytesIO()
    items.drop(columns=["mixed", 7]).to_parquet(buffer)  # parquet: string columns come back as str
    for frame in (items, pd.read_parquet(io.BytesIO(buffer.getvalue()))):
        metadata = DisplayMetadata(frame)
        assert [metadata.members(row) for row in range(len(frame))] == records_reference(frame)
        assert metadata.members(7) is metadata.members(7)  # assembled once, then kept
        assert metadata.columns == {str(c) for c in frame.columns} - set(HIDDEN_COLUMNS)
    assert DisplayMetadata(items[["item_id", "image"]]).members(0) == b""


class Gate:
    """Holds a load at its last step (the display metadata) until released; or fails it there."""

    def __init__(self, fail: bool = False) -> None:
        self.entered, self.release, self.fail = threading.Event(), threading.Event(), fail

    def install(self, monkeypatch) -> None:
        gate = self

        class GatedMetadata(DisplayMetadata):
            def __init__(self, items: pd.DataFrame) -> None:
                gate.entered.set()
                assert gate.release.wait(30)
                if gate.fail:
                    raise IndexLoadError("the load failed at its last step")
                super().__init__(items)

        monkeypatch.setattr(recsys.api.serving, "DisplayMetadata", GatedMetadata)


@pytest.mark.parametrize("fail", [False, True])
def test_the_old_version_serves_until_the_new_one_is_loaded(store, tmp_path, monkeypatch, fail) -> None:
    root, (first, second) = store
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    state = ServingState(copy, Metrics(), 1 << 20, 100)
    limiter = anyio.CapacityLimiter(2)
    item = "item0000001"

    async def served_version() -> str:
        body = await lookup.similar_answer(state.snapshot, item, 5, "visual", NO_CONSTRAINTS, limiter)
        return orjson.loads(body)["version"]

    async def scenario() -> None:
        assert await state.reload() == (True, None)
        gate = Gate(fail)
        gate.install(monkeypatch)
        IndexStore(copy).publish(second)
        reload = asyncio.create_task(state.reload())
        assert await asyncio.to_thread(gate.entered.wait, 30)
        # the new version is read, its items and index opened; only its last step is left
        for _ in range(3):
            assert state.snapshot.version == first and await served_version() == first
        gate.release.set()
        ok, message = await reload
        assert ok is not fail
        assert state.snapshot.version == (first if fail else second)
        assert await served_version() == state.snapshot.version
        if fail:
            assert "failed at its last step" in message and state.last_failure.version == second

    asyncio.run(scenario())


def test_checksums_prefetched_at_start_serve_the_next_load_once(store, tmp_path) -> None:
    root, (first, _) = store
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    vdir = IndexStore(copy).version_dir(first)
    index.store.prefetch_checksums(copy)  # CURRENT: what `recsys serve` loads first
    prefetched = index.store._prefetched[vdir]
    assert load_version(copy).version == first and vdir not in index.store._prefetched
    prefetched.wait()  # it did the work the load waited for
    index.store.prefetch_checksums(tmp_path / "no-store")  # nothing to hash: left to the load
    (vdir / "items.parquet").write_bytes(b"changed after the prefetch")
    index.store.prefetch_checksums(copy)
    with pytest.raises(IndexLoadError, match="items.parquet: checksum mismatch"):
        load_version(copy)
