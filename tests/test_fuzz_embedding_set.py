"""Embedding sets fuzzed beyond their manifest (tests/test_embedding_manifest.py has that): parts,
catalog.parquet and failures.parquet missing, truncated, garbled or rewritten with wrong columns,
types, sizes, nulls and repeated ids; and a run folder's `_work` files, which decide what a resumed
run redoes. Readers return a usable set or raise InputError naming the file; `recsys index build`
exits 2 and publishes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embeddings.embedding_set import (
    CATALOG,
    FAILURES,
    MANIFEST,
    WORK_DIR,
    finished_parts,
    part_name,
    read_embedding_set,
)
from embeddings.errors import InputError
from index.synthetic import clustered_vectors, write_embedding_set
from tests.fuzzing import FUZZ, assert_exit_2, reads_or_names, run_cli

N, DIM, PART = 30, 8, 10


@pytest.fixture(scope="module")
def good_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_embedding_set(tmp_path_factory.mktemp("good") / "set", [f"m{i}" for i in range(N)],
                               clustered_vectors(N, DIM, latent=4, clusters=3, seed=2), part_size=PART)


def read_all(folder: Path):
    es = read_embedding_set(folder)
    catalog, failures = es.catalog(), es.failures()
    return es, catalog, failures


def check(result) -> None:
    if result is None:
        return
    es, catalog, _ = result
    assert es.vectors.shape == (len(es.item_ids), DIM) and es.vectors.dtype == np.float32
    assert len(set(es.item_ids)) == len(es.item_ids)
    assert catalog["item_id"].tolist() == es.item_ids.tolist()


def rewritten_part(draw: st.DrawFn, table: pa.Table) -> pa.Table:
    """The part with one column dropped, retyped, resized, nulled or its ids repeated."""
    how = draw(st.sampled_from(["drop", "ids-int", "ids-null", "dup", "short-vec", "vec-str", "vec-null",
                                "vec-nan", "sha-null", "empty", "extra"]))
    columns = {name: table.column(name) for name in table.column_names}
    n = table.num_rows
    if how == "drop":
        columns.pop(draw(st.sampled_from(sorted(columns))))
    elif how == "ids-int":
        columns["item_id"] = pa.array(range(n))
    elif how == "ids-null":
        columns["item_id"] = pa.array([None] + [f"x{i}" for i in range(n - 1)], pa.string())
    elif how == "dup":
        columns["item_id"] = pa.array(["m0"] * n, pa.string())
    elif how == "short-vec":
        columns["embedding"] = pa.array([[0.5] * draw(st.integers(0, DIM + 3))] * n)
    elif how == "vec-str":
        columns["embedding"] = pa.array([["a"] * DIM] * n)
    elif how == "vec-null":
        columns["embedding"] = pa.array([None] * n, pa.list_(pa.float32()))
    elif how == "vec-nan":
        columns["embedding"] = pa.array([[float("nan")] * DIM] * n, pa.list_(pa.float32()))
    elif how == "sha-null":
        columns["image_sha256"] = pa.array([None] * n, pa.string())
    elif how == "empty":
        return table.slice(0, 0)
    else:
        columns["more"] = pa.array(range(n))
    return pa.table(columns)


@FUZZ
@given(data=st.data())
def test_fuzzed_parts(good_set, tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("fz") / "set"
    shutil.copytree(good_set, folder)
    part = folder / part_name(data.draw(st.integers(0, N // PART - 1)))
    how = data.draw(st.sampled_from(["truncate", "junk", "delete", "rewrite"]))
    if how == "delete":
        part.unlink()
    elif how == "rewrite":
        pq.write_table(rewritten_part(data.draw, pq.read_table(part)), part)
    else:
        body = part.read_bytes()
        cut = data.draw(st.integers(0, len(body)))
        part.write_bytes(body[:cut] + (data.draw(st.binary(max_size=40)) if how == "junk" else b""))
    check(reads_or_names(lambda: read_all(folder), folder))


@FUZZ
@given(name=st.sampled_from([CATALOG, FAILURES]), cut=st.floats(0, 1), junk=st.binary(max_size=40),
       how=st.sampled_from(["truncate", "junk", "no-ids", "delete"]))
def test_fuzzed_side_files(good_set, tmp_path_factory, name, how, cut, junk) -> None:
    folder = tmp_path_factory.mktemp("fzs") / "set"
    shutil.copytree(good_set, folder)
    path = folder / name
    if how == "delete":
        path.unlink()
    elif how == "no-ids":
        pq.write_table(pa.table({"image": ["a"]}), path)
    else:
        body = path.read_bytes()
        path.write_bytes(body[: int(len(body) * cut)] + (junk if how == "junk" else b""))
    check(reads_or_names(lambda: read_all(folder), folder))


@FUZZ
@given(part=st.integers(0, 2), which=st.sampled_from(["stats", "failures", "part"]),
       body=st.binary(max_size=30) | st.sampled_from([b"", b"{}", b"[]", b"null", b'{"computed": 3}']))
def test_fuzzed_work_files_decide_what_a_resumed_run_redoes(good_set, tmp_path_factory, part, which,
                                                            body) -> None:
    folder = tmp_path_factory.mktemp("fzw") / "set"
    shutil.copytree(good_set, folder)
    (folder / MANIFEST).unlink()  # an unfinished run
    path = {"stats": folder / WORK_DIR / f"stats-{part:05d}.json",
            "failures": folder / WORK_DIR / f"failures-{part:05d}.parquet",
            "part": folder / part_name(part)}[which]
    path.write_bytes(body)
    (folder / "part-notanumber.parquet").write_bytes(b"stray")
    done = finished_parts(folder)
    assert set(done) <= {0, 1, 2} and all(isinstance(stats, dict) for stats in done.values())
    if which != "stats" or not body.startswith(b"{"):
        assert part not in done  # the slice whose file was garbled is redone


# Found by the fuzzing above; each failed before its fix (ArrowInvalid, KeyError, ValueError,
# TypeError, or a set with one id twice that the index took).
@pytest.mark.parametrize(("how", "needle"), [
    ("ids-int", "column 'item_id' must be strings"),
    ("dup", "item_id 'm0' is in more than one row"),
    ("vec-str", "column 'embedding' must be lists of numbers"),
    ("drop-sha", "missing column(s) ['image_sha256']"),
    ("short", "row 1 has 3 embedding values"),
    ("truncate", "not a readable Parquet file"),
])
def test_found_by_fuzzing_parts(good_set, tmp_path, how, needle) -> None:
    folder = tmp_path / "set"
    shutil.copytree(good_set, folder)
    part = folder / part_name(1)
    table = pq.read_table(part)
    if how == "truncate":
        part.write_bytes(part.read_bytes()[:100])
    else:
        columns = {name: table.column(name) for name in table.column_names}
        if how == "ids-int":
            columns["item_id"] = pa.array(range(PART))
        elif how == "dup":
            columns["item_id"] = pa.array(["m0"] * PART)
        elif how == "vec-str":
            columns["embedding"] = pa.array([["a"] * DIM] * PART)
        elif how == "drop-sha":
            columns.pop("image_sha256")
        else:
            columns["embedding"] = pa.array([[0.5] * 3] * PART)
        pq.write_table(pa.table(columns), part)
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")) as info:
        read_embedding_set(folder)
    assert str(folder) in str(info.value)


def test_found_by_fuzzing_a_corrupt_catalog_and_stats(good_set, tmp_path) -> None:
    folder = tmp_path / "set"
    shutil.copytree(good_set, folder)
    (folder / CATALOG).write_bytes(b"PAR1garbage")
    with pytest.raises(InputError, match="catalog.parquet: not a readable Parquet file"):
        read_embedding_set(folder).catalog()
    (folder / WORK_DIR / "stats-00001.json").write_text("{")  # a crash mid-write, before atomic renames
    (folder / "part-x.parquet").write_bytes(b"")
    assert sorted(finished_parts(folder)) == [0, 2]


def test_cli_index_build_exits_2_and_publishes_nothing(good_set, tmp_path) -> None:
    folder = tmp_path / "set"
    shutil.copytree(good_set, folder)
    (folder / part_name(2)).write_bytes(b"PAR1 garbage")
    store = tmp_path / "store"
    assert_exit_2(run_cli("index", "build", "--embeddings", str(folder), "--store", str(store),
                          "--factory", "Flat"), folder / part_name(2))
    assert not (store / "CURRENT").exists()
    assert json.loads((folder / MANIFEST).read_text())["dim"] == DIM
