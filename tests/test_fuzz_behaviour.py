"""A version's behaviour/ folder fuzzed: each file missing, truncated or garbled; behaviour.json
with keys removed or replaced; every array of the .npz files dropped or given another dtype, shape
or length than the item list. meta.json's checksums are mostly forged to match, as a buggy writer
would leave them, so the damage reaches the behaviour reader itself.

Through the real entry points: `recsys recommend` and `recsys similar --mode hybrid` answer or exit
2 naming the file (and for an array, its key), never a traceback; loading the version as `recsys
serve` does (`Snapshot.load`) answers or raises InputError naming the file; a hot reload that meets
such a version keeps the previous one serving."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from embeddings.files import file_sha256
from index.build import build_version
from index.errors import IndexLoadError
from index.store import CURRENT, META, IndexStore, load_version
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main
from recsys.answers import Answers
from recsys.api.metrics import Metrics
from recsys.api.reload import ServingState
from recsys.api.serving import Snapshot
from recsys.behaviour_store import BEHAVIOUR_DIR, FitOptions, fit_behaviour, write_version
from recsys.errors import InputError
from recsys.evaluation import VisualVectors
from recsys.events import EVENT_COLUMNS, load_events
from recsys.models.projection import fit_cold_factors, projected_donors
from tests.fuzzing import FUZZ, assert_exit_2, json_values, run_cli

N, WARM, USERS = 30, 20, 40  # items i00..i29; events only on the first WARM: the rest are cold
IDS = [f"i{i:02d}" for i in range(N)]
FILES = ["behaviour.json", "model.npz", "visual.npz", "interactions.npz", "cold_donors.npz", "ranker.txt"]
NPZ = FILES[1:5]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store whose CURRENT version holds every behaviour file: an ALS model (its factors too),
    projected cold donors and factors, a ranker."""
    root = tmp_path_factory.mktemp("behaviour")
    catalogue = pd.DataFrame({"item_id": IDS, "image": [f"/img/{i}.png" for i in IDS],
                              "brand": ["a" if i < N // 2 else "b" for i in range(N)],
                              "in_stock": [i % 7 != 3 for i in range(N)]})
    write_embedding_set(root / "emb", IDS, clustered_vectors(N, 8, latent=4, clusters=4, seed=3),
                        catalog=catalogue)
    build_version(root / "emb", root / "store", "Flat")
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", IDS[i], 1_700_000_000 + 60 * (u * 10 + t), "click")
            for u in range(USERS) for t, i in enumerate(rng.choice(WARM, 6, replace=False))]
    pd.DataFrame(rows, columns=EVENT_COLUMNS[:4]).to_csv(root / "events.csv", index=False)
    store = IndexStore(root / "store")
    base = store.current_version()
    loaded = load_version(store.root, base)
    behaviour = fit_behaviour(load_events(root / "events.csv"), loaded,
                              FitOptions(model="als", hybrid_weight=0.5, recency_half_life_days=0))
    vectors = VisualVectors.from_loaded(loaded)
    behaviour.donors = projected_donors(behaviour.interactions, vectors.item_ids, vectors.vectors)
    behaviour.cold_factors = fit_cold_factors(behaviour.interactions, vectors.item_ids, vectors.vectors,
                                              factors=8)
    behaviour.manifest.update(hybrid_cold="factors", hybrid_taste="projected", hybrid_cold_from=3)
    behaviour.ranker = "tree\nversion=v4\n"
    version = write_version(store.root, base, behaviour, "events.csv")
    assert sorted(p.name for p in (store.version_dir(version) / BEHAVIOUR_DIR).iterdir()) == sorted(FILES)
    return store.root, version


def copy(good: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the store, and its CURRENT version's behaviour folder."""
    store, version = good
    target = tmp_path_factory.mktemp("fz") / "store"
    shutil.copytree(store, target)
    return target, target / "versions" / version / BEHAVIOUR_DIR


def forge(folder: Path, name: str) -> None:
    """meta.json made to agree with the damaged file (or its absence)."""
    meta_path = folder.parent / META
    meta = json.loads(meta_path.read_text())
    key = f"{BEHAVIOUR_DIR}/{name}"
    if (folder / name).exists():
        meta["checksums"][key] = file_sha256(folder / name)
    else:
        meta["checksums"].pop(key, None)
    meta_path.write_text(json.dumps(meta))


def answers_work(answers: Answers) -> None:
    """What the API and the command line ask a loaded version: users known and unknown, item pages of
    warm and cold items in every mode, a session."""
    for user in ("u1", "stranger"):
        answers.recommend(user, 5)
    for item in ("i01", f"i{N - 1}"):
        for mode in ("hybrid", "behaviour", "visual"):
            answers.similar(item, 5, mode)
    answers.session(["i01", f"i{N - 1}"], ["i02"], 5)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def check_every_entry(store: Path, capsys: pytest.CaptureFixture, path: Path, *keys: str,
                      forged: bool = True) -> None:
    """The command line answers or exits 2 naming the damaged file's folder, the file (or the one it
    disagrees with) and one of `keys`; the server's load answers or raises InputError saying as
    much. Any other exception is the bug looked for. A damaged file whose checksum was not forged is
    the store's to catch: exit 1 and IndexLoadError, naming it."""
    def named(message: str) -> None:
        assert str(path.parent) in message and "Traceback" not in message, message
        if forged:
            files = [path.name, *(["model.npz"] if path.suffix == ".npz" else [])]
            assert any(name in message for name in files), f"names neither {files}: {message}"
            assert not keys or any(key in message for key in keys), f"names none of {keys}: {message}"
        else:
            assert str(path) in message, message

    failed, refused = (2, InputError) if forged else (1, IndexLoadError)
    for args in (("recommend", "u1", "--store", str(store), "-k", "5"),
                 ("similar", "i01", "--store", str(store), "--mode", "hybrid", "-k", "5")):
        code, err = cli(capsys, *args)
        assert code in (0, failed), (code, err)
        if code:
            named(err)
    try:
        snapshot = Snapshot.load(store)
    except refused as exc:
        named(str(exc))
        return
    assert snapshot.answers.behaviour is not None, snapshot.answers.behaviour_error
    answers_work(snapshot.answers)


# -- whole files ---------------------------------------------------------------------------------

@FUZZ
@given(name=st.sampled_from(FILES), how=st.sampled_from(["delete", "truncate", "junk"]), forged=st.booleans(),
       cut=st.floats(0, 1), junk=st.binary(max_size=64))
def test_fuzzed_files(good, tmp_path_factory, capsys, name, how, forged, cut, junk) -> None:
    store, folder = copy(good, tmp_path_factory)
    path = folder / name
    if how == "delete":
        path.unlink()
    else:
        body = path.read_bytes()
        path.write_bytes(body[: int(len(body) * cut)] + (junk if how == "junk" else b""))
    if forged:
        forge(folder, name)
    check_every_entry(store, capsys, path, forged=forged)


# -- behaviour.json ------------------------------------------------------------------------------

MANIFEST_KEYS = ["model", "params", "hybrid_weight", "hybrid_cold", "hybrid_cold_weight", "hybrid_donors",
                 "hybrid_cold_from", "hybrid_taste", "recency_half_life_days", "counts", "serving_stage"]
BAD_VALUES = st.sampled_from([None, -1, 0, 1.5, 2, 10**6, 1e308, -0.0, True, "0.5", "", "bogus", "factors",
                              [], {}, [0.5], {"weight": 1}])


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(MANIFEST_KEYS), st.booleans(), json_values() | BAD_VALUES),
                        min_size=1, max_size=3),
       whole=st.none() | json_values())
@example(changes=[("hybrid_weight", False, "0.5")], whole=None)
@example(changes=[("hybrid_donors", False, 1.5)], whole=None)
@example(changes=[("hybrid_cold_from", False, "3")], whole=None)
@example(changes=[("hybrid_cold_weight", False, None)], whole=None)
@example(changes=[("model", True, None)], whole=None)
def test_fuzzed_manifest(good, tmp_path_factory, capsys, changes, whole) -> None:
    store, folder = copy(good, tmp_path_factory)
    path = folder / "behaviour.json"
    manifest: Any = json.loads(path.read_text())
    for key, drop, value in changes:
        if drop:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest if whole is None else whole))
    forge(folder, path.name)
    check_every_entry(store, capsys, path, *(key for key, _, _ in changes) if whole is None else ())


# -- the arrays of the .npz files ----------------------------------------------------------------

def _keys(good: tuple[Path, str]) -> list[tuple[str, str]]:
    store, version = good
    folder = store / "versions" / version / BEHAVIOUR_DIR
    pairs = []
    for name in NPZ:
        with np.load(folder / name) as data:
            pairs += [(name, key) for key in data.files]
    return pairs


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {
    "drop": lambda a: None,
    "text": lambda a: a.astype(str),
    "float64": lambda a: a.astype(np.float64) if a.dtype.kind in "fiub" else a.astype(object),
    "int8": lambda a: a.astype(np.float64).astype(np.int8) if a.dtype.kind in "fiub" else a.astype("S"),
    "bool": lambda a: a.astype(bool) if a.dtype.kind in "fiub" else a,
    "complex": lambda a: a.astype(np.complex64) if a.dtype.kind in "fiub" else a,
    "shorter": lambda a: a.reshape(-1)[:-1],
    "longer": lambda a: np.concatenate([a.reshape(-1), a.reshape(-1)[:1]]),
    "2-d": lambda a: a.reshape(1, -1),
    "scalar": lambda a: a.reshape(-1)[0] if a.size else np.zeros(()),
    "empty": lambda a: a.reshape(-1)[:0],
    "nan": lambda a: np.full(a.shape, np.nan, np.float32),
    "negative": lambda a: -np.abs(a.astype(np.float64)).astype(a.dtype) - 1 if a.dtype.kind in "fi" else a,
    "huge": lambda a: (a.astype(np.float64) * 1e6 + 1e6).astype(a.dtype) if a.dtype.kind in "fi" else a,
    "reversed": lambda a: a[::-1].copy() if a.ndim else a,
}


def rewrite_npz(path: Path, key: str, change: str) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    changed = CHANGES[change](arrays[key])
    if changed is None:
        del arrays[key]
    else:
        arrays[key] = np.asarray(changed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@FUZZ
@given(data=st.data(), change=st.sampled_from(sorted(CHANGES)))
def test_fuzzed_arrays(good, tmp_path_factory, capsys, data, change) -> None:
    name, key = data.draw(st.sampled_from(_keys(good)))
    store, folder = copy(good, tmp_path_factory)
    rewrite_npz(folder / name, key, change)
    forge(folder, name)
    stem = key.rsplit("_", 1)[0] if key.endswith(("_data", "_indices", "_indptr", "_shape")) else key
    check_every_entry(store, capsys, folder / name, stem, "item_ids", "user_ids")


# -- hot reload ----------------------------------------------------------------------------------

def test_reload_keeps_serving_over_a_broken_behaviour_folder(good, tmp_path) -> None:
    """`recsys serve`'s reload (ServingState, as the watcher calls it) meets a published version whose
    behaviour files are broken though their checksums match: the good version keeps serving."""
    store, version = good
    target = tmp_path / "store"
    shutil.copytree(store, target)
    state = ServingState(target, Metrics(), cache_bytes=1 << 20, cache_max_k=100)
    damages = [("model.npz", lambda p: rewrite_npz(p, "item_ids", "shorter")),
               ("interactions.npz", lambda p: rewrite_npz(p, "matrix_indices", "huge")),
               ("behaviour.json", lambda p: p.write_text(json.dumps(
                   {**json.loads(p.read_text()), "hybrid_weight": "half"}))),
               ("visual.npz", lambda p: p.write_bytes(b"PK\x03\x04 not a zip"))]

    async def scenario() -> None:
        assert await state.reload() == (True, None)
        for n, (name, damage) in enumerate(damages):
            broken = f"2099010{n + 1}T000000Z-broken"
            shutil.copytree(target / "versions" / version, target / "versions" / broken)
            folder = target / "versions" / broken / BEHAVIOUR_DIR
            damage(folder / name)
            forge(folder, name)
            (target / CURRENT).write_text(broken + "\n")
            ok, message = await state.reload()
            assert not ok and str(folder / name) in message, message
            assert state.snapshot is not None and state.snapshot.version == version
            assert state.snapshot.has_behaviour
            assert state.last_failure is not None and state.last_failure.version == broken
            answers_work(state.snapshot.answers)

    asyncio.run(scenario())


# -- found by the fuzzing above; each failed before its fix ---------------------------------------

def damaged(good: tuple[Path, str], tmp_path: Path, name: str,
            damage: Callable[[Path], None]) -> tuple[Path, Path]:
    """A copy of the store with one behaviour file damaged and its checksum forged."""
    store, version = good
    target = tmp_path / "store"
    shutil.copytree(store, target)
    folder = target / "versions" / version / BEHAVIOUR_DIR
    damage(folder / name)
    forge(folder, name)
    return target, folder / name


def set_key(key: str, value: Any) -> Callable[[Path], None]:
    return lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))


def change(key: str, how: str) -> Callable[[Path], None]:
    return lambda path: rewrite_npz(path, key, how)


@pytest.mark.parametrize(("name", "key", "change", "needle"), [
    # a segmentation fault or heap corruption in scipy, killing the process
    ("model.npz", "similarity_indices", "huge", "similarity_indices: column indices outside 0..29"),
    ("model.npz", "similarity_indices", "negative", "similarity_indices: column indices outside 0..29"),
    ("cold_donors.npz", "donors_indptr", "int8", "donors_indptr: not 31 non-decreasing offsets"),
])
def test_found_by_fuzzing_crashes(good, tmp_path, name, key, change, needle) -> None:
    store, path = damaged(good, tmp_path, name, lambda p: rewrite_npz(p, key, change))
    result = run_cli("recommend", "u1", "--store", str(store))  # a process of its own: a crash is a failure
    assert_exit_2(result, str(path))
    assert needle in result.stderr


@pytest.mark.parametrize(("name", "damage", "needle"), [
    # tracebacks (TypeError, BadZipFile) out of the load
    ("model.npz", change("params", "shorter"), "key 'params' is not a als model's settings"),
    ("model.npz", change("similarity_shape", "scalar"), "similarity_shape: expected 2 sizes"),
    ("model.npz", lambda p: p.write_bytes(p.read_bytes()[:100]), "BadZipFile"),
    ("behaviour.json", set_key("hybrid_donors", None), "key 'hybrid_donors' must be a positive integer"),
    ("behaviour.json", set_key("hybrid_cold_weight", [1]), "key 'hybrid_cold_weight' must be a number"),
    # loaded, then failed every request that reached it (IndexError, TypeError, ValueError: HTTP 500)
    ("behaviour.json", set_key("hybrid_cold_from", "3"), "key 'hybrid_cold_from' must be null or an integer"),
    ("model.npz", change("item_factors", "shorter"), "key 'item_factors' has shape (959,)"),
    ("model.npz", change("popularity", "empty"), "key 'popularity' has shape (0,)"),
    ("model.npz", change("similarity_data", "bool"), "similarity: expected real values"),
    ("model.npz", change("similarity_indices", "nan"), "similarity: expected real values and integer"),
    ("visual.npz", change("similarity_data", "text"), "similarity: expected real values"),
    # read with its imaginary part dropped (a ComplexWarning)
    ("cold_donors.npz", change("cold_fold", "complex"), "key 'cold_fold' must hold real numbers"),
    # refused without naming the file or the key
    ("behaviour.json", set_key("hybrid_weight", 1.5), "key 'hybrid_weight' must be a number from 0 to 1"),
    ("model.npz", change("kind", "float64"), "key 'kind': Object arrays cannot be loaded"),
    ("model.npz", change("item_ids", "shorter"), "key 'similarity_shape' is (30, 30), expected (29, 29)"),
    # served by image similarity alone, as if the version had no behaviour data
    ("behaviour.json", lambda p: p.unlink(), "behaviour.json: missing"),
])
def test_found_by_fuzzing(good, tmp_path, capsys, name, damage, needle) -> None:
    store, path = damaged(good, tmp_path, name, damage)
    with pytest.raises(InputError) as info:
        Snapshot.load(store)
    assert str(path.parent) in str(info.value) and needle in str(info.value)
    code, err = cli(capsys, "recommend", "u1", "--store", str(store))
    assert code == 2 and needle in err and "Traceback" not in err


def test_export_names_the_broken_file(good, tmp_path, capsys) -> None:
    """`recsys export` (hybrid by default) refuses a broken behaviour folder, saying which file,
    without blaming --users it was not given; nothing is written."""
    store, path = damaged(good, tmp_path, "behaviour.json", set_key("hybrid_taste", "sepia"))
    code, err = cli(capsys, "export", "--store", str(store), "--out", str(tmp_path / "out"))
    assert code == 2 and str(path) in err and "key 'hybrid_taste'" in err and "--users" not in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
