"""Index store folders fuzzed: meta.json with keys removed or replaced, version files missing,
truncated or garbled (with meta.json's checksums left as they were, or forged to match), CURRENT
and HISTORY holding junk, staging folders with junk `.writer` files. Loading, listing, rolling back,
pruning and cleaning either work or raise IndexLoadError/InputError naming the store's file; the
command line says so without a traceback (exit 1 for a store that cannot be served, 2 for bad ids)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embeddings.files import file_sha256
from index.build import BuildOptions, build_version
from index.errors import IndexLoadError, InputError
from index.store import CURRENT, HISTORY, META, IndexStore, load_version
from index.synthetic import clustered_vectors, write_embedding_set
from tests.fuzzing import FUZZ, json_values, run_cli

N, DIM = 60, 8
FILES = ["index.faiss", "items.parquet", "vectors.npy", "neighbours.npy", "neighbour_scores.npy"]


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("store")
    ids = [f"i{i}" for i in range(N)]
    emb = write_embedding_set(root / "set", ids, clustered_vectors(N, DIM, latent=4, clusters=4, seed=3))
    opts = BuildOptions(tune_queries=20)
    versions = [build_version(emb, root / "store", "Flat", options=opts) for _ in range(2)]
    return root / "store", versions


def every_reader(store: Path) -> None:
    """What the server, the command line and the nightly do with a store."""
    st_ = IndexStore(store)
    for call in (lambda: load_version(store), st_.versions, st_.history, st_.version_ids,
                 st_.clean_stale_staging, st_.rollback, st_.prune):
        try:
            call()
        except (IndexLoadError, InputError) as exc:
            assert str(store) in str(exc), f"the message names no file of the store: {exc}"


def copy(good_store, tmp_path_factory) -> tuple[Path, list[str]]:
    store, versions = good_store
    target = tmp_path_factory.mktemp("fz") / "store"
    shutil.copytree(store, target, symlinks=True)
    return target, versions


KEYS = ["version", "dim", "count", "checksums", "search", "factory", "checksums.index.faiss"]


@FUZZ
@given(key=st.sampled_from(KEYS), drop=st.booleans(),
       value=json_values() | st.sampled_from([0, -1, N, DIM, 10**12, "../../x", {"efSearch": 16},
                                              {"nprobe": "x"}, {"no_such_param": 3}, {"/etc/passwd": "0"}]))
def test_fuzzed_meta(good_store, tmp_path_factory, key, drop, value) -> None:
    store, versions = copy(good_store, tmp_path_factory)
    path = store / "versions" / versions[-1] / META
    meta = json.loads(path.read_text())
    holder, last = (meta["checksums"], "index.faiss") if key.startswith("checksums.") else (meta, key)
    if drop:
        holder.pop(last, None)
    else:
        holder[last] = value
    path.write_text(json.dumps(meta))
    every_reader(store)


@FUZZ
@given(name=st.sampled_from(FILES), how=st.sampled_from(["delete", "truncate", "junk"]), forge=st.booleans(),
       cut=st.floats(0, 1), junk=st.binary(max_size=64))
def test_fuzzed_version_files(good_store, tmp_path_factory, name, how, forge, cut, junk) -> None:
    store, versions = copy(good_store, tmp_path_factory)
    vdir = store / "versions" / versions[-1]
    path = vdir / name
    if how == "delete":
        path.unlink()
    else:
        body = path.read_bytes()
        path.write_bytes(body[: int(len(body) * cut)] + (junk if how == "junk" else b""))
    if forge and path.exists():  # meta.json made to agree: only the deeper checks can catch it
        meta = json.loads((vdir / META).read_text())
        meta["checksums"][name] = file_sha256(path)
        (vdir / META).write_text(json.dumps(meta))
    every_reader(store)


@FUZZ
@given(current=st.binary(max_size=30) | st.sampled_from([b"..", b"../x", b"a/b", b".tmp-x", b"\n", b"nope"]),
       history=st.binary(max_size=30) | st.sampled_from([b"../x\n", b"a/b\n.hidden\n", b""]),
       writer=st.binary(max_size=30) | st.sampled_from([b"1 host -", b"-5 x y", b"99999999 h 1"]))
def test_fuzzed_pointer_files(good_store, tmp_path_factory, current, history, writer) -> None:
    store, _ = copy(good_store, tmp_path_factory)
    (store / CURRENT).write_bytes(current)
    (store / HISTORY).write_bytes(history)
    staging = store / "versions" / ".tmp-crashed"
    staging.mkdir()
    (staging / ".writer").write_bytes(writer)
    every_reader(store)


# Found by the fuzzing above; each failed before its fix (AttributeError, KeyError, TypeError,
# UnicodeDecodeError or FAISS's RuntimeError, all as tracebacks out of the load).
@pytest.mark.parametrize(("change", "needle"), [
    ({"count": None}, "key 'count' must be a non-negative integer"),
    ({"version": None}, "key 'version' must be the version id"),
    ({"dim": "8"}, "key 'dim' must be a positive integer"),
    ({"checksums": ["index.faiss"]}, "key 'checksums' must be an object"),
    ({"checksums": {"../../CURRENT": "0"}}, "key 'checksums' must be an object"),
    ({"search": {"no_such_param": 3}}, "key 'search' does not fit the index"),
    ({"search": []}, "key 'search' must be an object"),
])
def test_found_by_fuzzing_meta(good_store, tmp_path, change, needle) -> None:
    store, versions = good_store
    target = tmp_path / "store"
    shutil.copytree(store, target)
    path = target / "versions" / versions[-1] / META
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(IndexLoadError, match=needle) as info:
        load_version(target)
    assert str(target) in str(info.value)


def test_found_by_fuzzing_forged_files_and_junk_pointers(good_store, tmp_path) -> None:
    store, versions = good_store
    target = tmp_path / "store"
    shutil.copytree(store, target)
    vdir = target / "versions" / versions[-1]
    np.save(vdir / "vectors.npy", np.zeros((N, DIM + 1), np.float32))
    pd.read_parquet(vdir / "items.parquet").drop(columns="faiss_id").to_parquet(vdir / "items.parquet")
    meta = json.loads((vdir / META).read_text())
    for name in ("vectors.npy", "items.parquet"):
        meta["checksums"][name] = file_sha256(vdir / name)
    (vdir / META).write_text(json.dumps(meta))
    with pytest.raises(IndexLoadError, match="dimensions disagree"):
        load_version(target)
    (vdir / "neighbours.npy").write_bytes(b"")  # numpy: EOFError
    meta["checksums"]["neighbours.npy"] = file_sha256(vdir / "neighbours.npy")
    (vdir / META).write_text(json.dumps(meta))
    with pytest.raises(IndexLoadError, match="cannot read the index version"):
        load_version(target)
    (target / CURRENT).write_bytes(b"\xff\xfe")
    with pytest.raises(IndexLoadError, match="CURRENT: not a version id"):
        load_version(target)
    (target / CURRENT).write_text("../elsewhere\n")
    with pytest.raises(IndexLoadError, match=f"{target}: '../elsewhere' is not an index version id"):
        load_version(target)
    (target / HISTORY).write_text(f"{versions[0]}\na/b\n")
    (target / CURRENT).write_text(versions[1])
    assert IndexStore(target).rollback() == versions[0]  # the junk entry is skipped, not a traceback


def test_cli_says_which_file_without_a_traceback(good_store, tmp_path) -> None:
    store, versions = good_store
    target = tmp_path / "store"
    shutil.copytree(store, target)
    path = target / "versions" / versions[-1] / META
    path.write_text(json.dumps({**json.loads(path.read_text()), "count": "many"}))
    result = run_cli("similar", "--store", str(target), "i1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr and "key 'count'" in result.stderr
    result = run_cli("index", "publish", "../x", "--store", str(target))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "'../x'" in result.stderr
