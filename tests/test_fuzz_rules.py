"""Business rules (rules.toml) fuzzed: valid TOML whose sections, entries, filters, items, names
and factors have any shape, type or value, unknown keys, invalid TOML and bytes that are not UTF-8.

Through the real entry points: `recsys rules set` publishes a version whose rules load and move
answers, or exits 2 naming the file (and the rule and field), never a traceback; a version whose
rules.toml is broken though its checksum matches fails to load as `recsys serve` loads it (InputError
naming the file, so a reload keeps the old version), and `recsys similar` and `recsys rules show`
exit 2 naming it."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from embeddings.files import file_sha256
from index.build import build_version
from index.store import META, IndexStore
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main
from recsys.api.serving import Snapshot
from recsys.errors import InputError
from recsys.rules import KINDS, RULES_FILE, parse_rules
from tests.fuzzing import FUZZ, toml_value

N = 20
IDS = [f"i{i:02d}" for i in range(N)]
COLUMNS = ["brand", "price", "in_stock", "category"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rules")
    catalogue = pd.DataFrame({"item_id": IDS, "image": [f"/img/{i}.png" for i in IDS],
                              "brand": ["acme" if i % 2 else "other" for i in range(N)],
                              "price": [float(i) for i in range(N)],
                              "in_stock": [i % 5 != 0 for i in range(N)],
                              "category": [["bags", "shoes"][i % 2] for i in range(N)]})
    vectors = clustered_vectors(N, 8, latent=4, clusters=2, seed=1)
    write_embedding_set(root / "emb", IDS, vectors, catalog=catalogue)
    build_version(root / "emb", root / "store", "Flat")
    return root / "store"


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def exits_2_naming(code: int, err: str, path: Path) -> None:
    assert code == 2, (code, err)
    assert str(path) in err and "Traceback" not in err, err


def answers_under_rules(store: Path, version: str) -> None:
    """The version loads as the server loads it and answers with its rules applied."""
    answers = Snapshot.load(store, version).answers
    blocked = answers.rules.blocked
    for mode in ("visual", "hybrid"):
        rows = answers.similar("i01", 10, mode).rows
        assert all(blocked is None or not blocked[answers.row_of[item]] for item, _ in rows)
    answers.session(["i01", "i02"], [], 5, "visual")


# -- documents ------------------------------------------------------------------------------------
# (TOML has no null: no None anywhere)

scalars = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=5)
           | st.sampled_from(["acme", "bags", "i03", "", "1e6", "{}", '{"brand": "acme"}', "not json"])
           | st.dates())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=5)
conditions = st.one_of(
    values,
    st.sampled_from(["acme", "shoes", 3.0, True, ["acme", "other"], [], {"ne": "acme"},
                     {"gte": 2, "lt": 9}, {"gte": "2"}, {"between": 1}, {"ne": [1]}, {}]),
    st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte", "ne", "eq"]), values, max_size=2))
filters = st.one_of(values, st.dictionaries(st.sampled_from(COLUMNS + ["colour", "item_id", ""]), conditions,
                                            min_size=1, max_size=3))
entries = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=6) | values,
    "filter": filters,
    "items": st.lists(st.sampled_from(IDS + ["nope", ""]), max_size=3) | values,
    "factor": st.sampled_from([1.5, 0.5, 0, -1, 1e6, 1e300, math.inf, math.nan, True, "2", 2]) | values,
    "weight": values,
})
documents = st.dictionaries(st.sampled_from([*KINDS, "boosts", "Block", "rules"]),
                            st.lists(entries | values, max_size=3) | values, max_size=3)


def to_toml(document: dict[str, Any]) -> str:
    """Each section as `kind = [ {...}, ... ]`: the same document as `[[kind]]` tables."""
    return "".join(f"{json.dumps(kind)} = {toml_value(value)}\n" for kind, value in document.items())


@FUZZ
@given(document=documents)
@example(document={"boost": [{"filter": {"brand": "acme"}, "factor": 1.5, "name": ["x"]}]})
@example(document={"bury": [{"filter": {"colour": "red"}}]})
@example(document={"block": [{"filter": {"category": {"gte": 1}}}]})
def test_fuzzed_rules_set(store, tmp_path_factory, capsys, document) -> None:
    path = tmp_path_factory.mktemp("doc") / RULES_FILE
    path.write_text(to_toml(document), encoding="utf-8", errors="surrogatepass")
    try:
        expected = parse_rules(path.read_text(encoding="utf-8"), str(path))
    except (InputError, UnicodeDecodeError):  # the command must say so too (checked below)
        expected = None
    code, out, err = cli(capsys, "rules", "set", "--store", str(store), str(path), "--no-publish")
    if code == 0:
        assert expected is not None
        version = out.split(":")[0]
        assert f"{len(expected)} rules" in out
        answers_under_rules(store, version)
    else:
        exits_2_naming(code, err, path)


@FUZZ
@given(text=st.text(max_size=80), junk=st.binary(max_size=40), how=st.sampled_from(["text", "cut", "bytes"]),
       cut=st.floats(0, 1))
@example(text="", junk=b"\xff\xfe", how="bytes", cut=1.0)
def test_fuzzed_rules_text(store, tmp_path_factory, capsys, text, junk, how, cut) -> None:
    good = '[[boost]]\nname = "house"\nfilter = {brand = "acme"}\nfactor = 1.5\n[[block]]\nitems = ["i03"]\n'
    body = {"text": text.encode("utf-8", "surrogatepass"), "bytes": junk,
            "cut": good.encode()[: int(len(good) * cut)] + junk}[how]
    path = tmp_path_factory.mktemp("txt") / RULES_FILE
    path.write_bytes(body)
    code, out, err = cli(capsys, "rules", "set", "--store", str(store), str(path), "--no-publish")
    if code == 0:
        answers_under_rules(store, out.split(":")[0])
    else:
        exits_2_naming(code, err, path)


def forged_rules(store: Path, body: bytes) -> tuple[str, Path]:
    """The serving version's rules.toml replaced by `body`, meta.json made to agree: the damage a
    buggy writer or a hand edit leaves, past the checksums."""
    version = IndexStore(store).current_version()
    vdir = IndexStore(store).version_dir(version)
    (vdir / RULES_FILE).write_bytes(body)
    meta = json.loads((vdir / META).read_text())
    meta["checksums"][RULES_FILE] = file_sha256(vdir / RULES_FILE)
    (vdir / META).write_text(json.dumps(meta))
    return version, vdir / RULES_FILE


@FUZZ
@given(document=documents, raw=st.none() | st.binary(max_size=30))
@example(document={"block": [{"filter": {"colour": "red"}}]}, raw=None)
@example(document={}, raw=b"\xff[[block]]")
def test_fuzzed_rules_in_a_version(store, tmp_path_factory, capsys, document, raw) -> None:
    copy = tmp_path_factory.mktemp("ver") / "store"
    shutil.copytree(store, copy)
    body = raw if raw is not None else to_toml(document).encode("utf-8", "surrogatepass")
    version, path = forged_rules(copy, body)
    try:
        answers_under_rules(copy, version)
        loaded = True
    except InputError as exc:
        assert str(path) in str(exc), exc
        loaded = False
    code, _, err = cli(capsys, "similar", "i01", "--store", str(copy), "-k", "5")
    if loaded:
        assert code == 0, err
    else:
        exits_2_naming(code, err, path)
    code, _, err = cli(capsys, "rules", "show", "--store", str(copy))  # shows any text, even broken rules
    if code:
        exits_2_naming(code, err, path)


# Found by the fuzzing above; each failed before its fix.
@pytest.mark.parametrize(("body", "needle"), [
    (b'[[boost]]\nname = ["x"]\nfactor = 1.5\nitems = ["i01"]\n', "[[boost]] number 1: name must be"),
    (b'[[bury]]\nfilter = {colour = "red"}\n', "[[bury]] rule 'bury 1': filter: unknown column 'colour'"),
    (b'[[block]]\nitems = ["i01"]\n\xff\n', "not UTF-8"),
])
def test_found_by_fuzzing(store, tmp_path, capsys, body, needle) -> None:
    path = tmp_path / RULES_FILE
    path.write_bytes(body)
    code, _, err = cli(capsys, "rules", "set", "--store", str(store), str(path), "--no-publish")
    exits_2_naming(code, err, path)
    assert needle in err
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    version, inside = forged_rules(copy, body)
    with pytest.raises(InputError, match=re.escape(str(inside))) as info:
        Snapshot.load(copy, version)
    assert needle in str(info.value)
    code, _, err = cli(capsys, "similar", "i01", "--store", str(copy))
    exits_2_naming(code, err, inside)


def test_rules_that_load_move_answers(store, tmp_path, capsys) -> None:
    """The positive case the fuzzing leans on: a good document is published and obeyed."""
    path = tmp_path / RULES_FILE
    path.write_text('[[block]]\nitems = ["i02"]\n[[bury]]\nfilter = {brand = "acme"}\n')
    code, out, err = cli(capsys, "rules", "set", "--store", str(store), str(path), "--no-publish")
    assert code == 0, err
    answers = Snapshot.load(store, out.split(":")[0]).answers
    rows = [item for item, _ in answers.similar("i04", 10, "visual").rows]
    assert "i02" not in rows
    brands = ["acme" if int(item[1:]) % 2 else "other" for item in rows]
    assert brands == sorted(brands, key=lambda b: b == "acme")  # acme buried after the others
    assert np.count_nonzero(answers.rules.blocked) == 1
