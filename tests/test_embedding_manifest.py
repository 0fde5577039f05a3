"""embedding_set.json with missing, mistyped or corrupt keys: always InputError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embeddings.embedding_set import MANIFEST, read_embedding_set
from embeddings.errors import InputError
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main

N, DIM = 40, 8


@pytest.fixture(scope="module")
def good_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_embedding_set(tmp_path_factory.mktemp("good") / "set", [f"m{i}" for i in range(N)],
                               clustered_vectors(N, DIM, latent=4, clusters=4, seed=1))


def json_values() -> st.SearchStrategy:
    scalars = (st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False)
               | st.text(max_size=5))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


KEYS = ("dim", "model", "model.id", "counts", "counts.total", "counts.failed")


@st.composite
def broken_manifests(draw: st.DrawFn, good: dict) -> tuple[str, str]:
    """A good manifest with one key removed or replaced by any JSON value, or broken text."""
    manifest = json.loads(json.dumps(good))
    how = draw(st.sampled_from(["drop", "replace", "text", "top"]))
    if how == "text":
        return "text", draw(st.sampled_from(["", "{", "not json", '{"dim": 8,}', "\xff\xfe"]))
    if how == "top":
        return "top", json.dumps(draw(json_values().filter(lambda v: not isinstance(v, dict))))
    key = draw(st.sampled_from(KEYS))
    *parents, last = key.split(".")
    holder = manifest
    for p in parents:
        holder = holder[p]
    if how == "drop":
        del holder[last]
    else:
        holder[last] = draw(json_values())
    return key, json.dumps(manifest)


def test_a_good_set_reads(good_set) -> None:
    assert read_embedding_set(good_set).vectors.shape == (N, DIM)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_broken_manifest_is_an_input_error_naming_the_file(good_set, tmp_path_factory, data) -> None:
    good = json.loads((good_set / MANIFEST).read_text())
    key, text = data.draw(broken_manifests(good))
    folder = tmp_path_factory.mktemp("broken") / "set"
    shutil.copytree(good_set, folder)
    (folder / MANIFEST).write_bytes(text.encode("utf-8", "surrogatepass") if key != "text"
                                    else text.encode("latin-1"))
    try:
        es = read_embedding_set(folder)
    except InputError as exc:
        assert str(folder / MANIFEST) in str(exc) or "part-" in str(exc)
        if key not in ("text", "top"):
            # the message names the key (or, for a wrong dim, the part it does not fit)
            assert f"key '{key.split('.')[0]}" in str(exc) or (key == "dim" and "says dim" in str(exc))
    else:
        # a replacement that is still valid: the set reads as before
        assert es.vectors.shape == (N, DIM) and isinstance(es.model_id, str) and es.dim == DIM


def test_index_build_without_dim_exits_2_naming_file_and_key(good_set, tmp_path, capsys) -> None:
    folder = tmp_path / "set"
    shutil.copytree(good_set, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["dim"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    code = main(["index", "build", "--embeddings", str(folder), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2 and str(folder / MANIFEST) in err and "'dim'" in err and "Traceback" not in err
    assert not np.any([p.name == "CURRENT" for p in (tmp_path / "store").glob("*")])
