"""The store: versions, publish, rollback, retention, stable ids, checksums, the version writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from index.build import BuildOptions, build_version
from index.errors import IndexLoadError, InputError
from index.ids import stable_id, stable_ids
from index.store import IndexStore, load_version, read_meta
from index.synthetic import clustered_vectors, write_embedding_set

OPTS = BuildOptions(tune_queries=200)


def make_set(path, ids, vectors):
    return write_embedding_set(path, ids, vectors, pd.DataFrame({"item_id": ids, "image": ids}))


@pytest.fixture(scope="module")
def data():
    vectors = clustered_vectors(1200, 16, latent=6, clusters=30, seed=5)
    return [f"item/{i}" for i in range(1200)], vectors


def test_stable_ids_are_hashes_and_refuse_duplicates() -> None:
    assert stable_id("a") == stable_id("a") != stable_id("b")
    assert stable_id("a") == 3405396810240292928  # pinned: the same in every version and every store
    assert np.all(stable_ids([f"x{i}" for i in range(10_000)]) >= 0)
    with pytest.raises(InputError, match="duplicate item_id: 'x1'"):
        stable_ids(["x1", "x2", "x1"])


def test_ids_are_stable_across_versions(data, tmp_path) -> None:
    ids, vectors = data
    v1 = build_version(make_set(tmp_path / "a", ids[:800], vectors[:800]), tmp_path / "store", options=OPTS)
    # another catalogue: some items gone, new ones, and a different order
    order = np.random.default_rng(0).permutation(np.arange(400, 1200))
    ids2 = [ids[i] for i in order]
    v2 = build_version(make_set(tmp_path / "b", ids2, vectors[order]), tmp_path / "store", options=OPTS)
    a, b = load_version(tmp_path / "store", v1), load_version(tmp_path / "store", v2)
    fid_a = dict(zip(a.items["item_id"], a.fids))
    fid_b = dict(zip(b.items["item_id"], b.fids))
    common = set(fid_a) & set(fid_b)
    assert len(common) == 400
    assert all(fid_a[i] == fid_b[i] for i in common)
    assert list(b.items["item_id"]) == ids2  # items keep the embedding set's order


def test_publish_list_rollback_and_retention(data, tmp_path) -> None:
    ids, vectors = data
    emb = make_set(tmp_path / "set", ids[:300], vectors[:300])
    store = IndexStore(tmp_path / "store")
    assert store.current_version() is None
    with pytest.raises(IndexLoadError, match="nothing published"):
        load_version(store.root)
    v1 = build_version(emb, store.root, options=OPTS)
    v2 = build_version(emb, store.root, options=OPTS)
    v3 = build_version(emb, store.root, publish=False, options=OPTS)
    assert store.current_version() == v2
    assert [m["version"] for m in store.versions()] == [v1, v2, v3]
    store.publish(v3)
    assert load_version(store.root).version == v3
    assert store.rollback() == v2
    assert store.rollback() == v1
    assert store.current_version() == v1
    with pytest.raises(InputError, match="no earlier published version"):
        store.rollback()
    with pytest.raises(InputError, match="no complete index version 'nope'"):
        store.publish("nope")
    # retention: keep 2, but never CURRENT
    v4 = build_version(emb, store.root, keep=2, publish=False, options=OPTS)
    v5 = build_version(emb, store.root, keep=2, options=OPTS)
    left = store.version_ids()
    # v1 stays: it was CURRENT until v5 came, so it is the rollback target
    assert v5 in left and v4 in left and len(left) == 3
    assert v1 in left and v2 not in left and v3 not in left
    assert not list((store.root / "versions").glob(".tmp-*"))


def test_corrupt_index_file_leaves_previous_version_serving(data, tmp_path) -> None:
    ids, vectors = data
    emb = make_set(tmp_path / "set", ids[:500], vectors[:500])
    store = IndexStore(tmp_path / "store")
    v1 = build_version(emb, store.root, options=OPTS)
    serving = load_version(store.root)
    before = serving.similar("item/7", 5)
    v2 = build_version(emb, store.root, publish=False, options=OPTS)
    index_file = store.version_dir(v2) / "index.faiss"
    raw = bytearray(index_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    index_file.write_bytes(bytes(raw))
    # publishing verifies the files: CURRENT does not move
    with pytest.raises(IndexLoadError, match=r"index\.faiss: checksum mismatch"):
        store.publish(v2)
    assert store.current_version() == v1
    # even if CURRENT is switched behind our back, loading refuses and the old index keeps answering
    store._set_current(v2)
    with pytest.raises(IndexLoadError, match=f"{v2}.*checksum mismatch"):
        load_version(store.root)
    assert serving.similar("item/7", 5) == before
    # a missing file is named too
    v3 = build_version(emb, store.root, publish=False, options=OPTS)
    (store.version_dir(v3) / "items.parquet").unlink()
    with pytest.raises(IndexLoadError, match=r"items\.parquet: missing"):
        load_version(store.root, v3)


def test_a_failed_write_leaves_no_version_and_no_staging_folder(tmp_path) -> None:
    store = IndexStore(tmp_path / "store")
    with pytest.raises(RuntimeError, match="disk full"):
        with store.write_version() as writer:
            np.save(writer.file("vectors.npy"), np.zeros((3, 2), dtype=np.float16))
            assert writer.path.name == f".tmp-{writer.version}" and writer.path.is_dir()
            raise RuntimeError("disk full")
    # meta.json cannot be written (a value JSON does not know): the commit fails half way
    with pytest.raises(TypeError, match="not JSON serializable"):
        with store.write_version() as writer:
            writer.file("a.txt").write_text("a")
            writer.commit({"bad": {1, 2}})
    # leaving the block without committing writes nothing either
    with store.write_version() as writer:
        writer.file("b.txt").write_text("b")
    assert store.version_ids() == []
    assert list((store.root / "versions").iterdir()) == []


def test_a_derived_version_links_unchanged_files_and_its_checksums_are_verified(data, tmp_path) -> None:
    ids, vectors = data
    store = IndexStore(tmp_path / "store")
    base = build_version(make_set(tmp_path / "set", ids[:300], vectors[:300]), store.root, options=OPTS)
    base_dir = store.version_dir(base)
    base_items = (base_dir / "items.parquet").read_bytes()
    items = pd.read_parquet(base_dir / "items.parquet").assign(brand="acme")
    with store.write_version(base=base) as writer:
        items.to_parquet(writer.file("items.parquet"), index=False)  # replaced
        writer.file("rules.toml").write_text('[[block]]\nitems = ["item/1"]\n')  # added
        writer.file("extra/notes.txt").write_text("notes")  # added, in a folder
        writer.commit({"rules": {"block": 1}})
    derived = writer.version
    vdir = store.version_dir(derived)
    for name in ("index.faiss", "vectors.npy", "neighbours.npy"):
        assert (vdir / name).stat().st_ino == (base_dir / name).stat().st_ino, name
    assert (vdir / "items.parquet").stat().st_ino != (base_dir / "items.parquet").stat().st_ino
    assert (base_dir / "items.parquet").read_bytes() == base_items  # nothing written through to the base
    meta = read_meta(vdir)
    base_meta = read_meta(base_dir)
    assert meta["version"] == derived != base and meta["base_version"] == base
    assert meta["rules"] == {"block": 1} and meta["recall@10"] == base_meta["recall@10"]
    assert sorted(meta["checksums"]) == sorted([*base_meta["checksums"], "rules.toml", "extra/notes.txt"])
    assert meta["checksums"]["index.faiss"] == base_meta["checksums"]["index.faiss"]
    assert meta["checksums"]["items.parquet"] != base_meta["checksums"]["items.parquet"]
    store.publish(derived)
    loaded = load_version(store.root)
    assert loaded.version == derived and set(loaded.items["brand"]) == {"acme"}
    assert loaded.similar("item/7", 3) == load_version(store.root, base).similar("item/7", 3)
    # a version derived from it without extra/ carries everything else
    with store.write_version(base=derived, without=("extra",)) as writer:
        writer.commit({})
    assert "extra/notes.txt" not in read_meta(store.version_dir(writer.version))["checksums"]
    assert (store.version_dir(writer.version) / "rules.toml").is_file()
    # every recorded file is verified on load, files in folders too
    (vdir / "extra" / "notes.txt").write_text("tampered")
    with pytest.raises(IndexLoadError, match=r"extra/notes\.txt: checksum mismatch"):
        load_version(store.root, derived)


def test_stale_staging_folders_are_cleaned_and_a_live_writers_kept(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from index.store import WRITER_FILE, _writer_tag

    store = IndexStore(tmp_path / "store")
    # a crashed writer: its staging folder names a process that is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = store.root / "versions" / ".tmp-crashed"
    crashed.mkdir(parents=True)
    (crashed / "index.faiss").write_bytes(b"half")
    (crashed / WRITER_FILE).write_text(_writer_tag(dead.pid))
    # a folder naming no writer: stale once old, kept while recent
    old, recent = store.root / "versions" / ".tmp-old", store.root / "versions" / ".tmp-recent"
    old.mkdir()
    recent.mkdir()
    os.utime(old, (0, 0))
    with store.write_version() as live:  # a live writer, this process
        live.file("a.txt").write_text("a")
        assert sorted(store.clean_stale_staging()) == [".tmp-crashed", ".tmp-old"]
        assert live.path.is_dir() and recent.is_dir()
        live.commit({})
    version = live.version
    assert WRITER_FILE not in read_meta(store.version_dir(version))["checksums"]
    assert not (store.version_dir(version) / WRITER_FILE).exists()
    assert store.clean_stale_staging() == []
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == [".tmp-recent", version]
