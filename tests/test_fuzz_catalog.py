"""Catalogues fuzzed (CSV, Parquet, folders of images): the readers return a catalogue the runner can
embed and store (unique non-empty string ids, an image reference each, metadata pyarrow can write),
or raise InputError naming the file or folder and the row. One CLI run per format: exit 2, nothing
written."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embeddings.catalog import catalog_from_folder, read_catalog
from embeddings.errors import InputError
from tests.fuzzing import FUZZ, assert_exit_2, hostile_cells, parquet_columns, reads_or_names, run_cli

COLUMNS = ["item_id", "image", "category", "price", "faiss_id", "in_stock", "", "title"]


def check_catalog(frame: pd.DataFrame | None) -> None:
    if frame is None:
        return
    ids = frame["item_id"]
    assert ids.map(lambda v: isinstance(v, str) and v.strip() != "").all()
    assert not ids.duplicated().any()
    assert frame["image"].map(lambda v: isinstance(v, str) and v != "").all()
    pa.Table.from_pandas(frame, preserve_index=False)  # the runner writes it as catalog.parquet


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5))
    if draw(st.booleans()):
        header = list(dict.fromkeys(["item_id", "image", *header]))
    rows = draw(st.lists(st.lists(hostile_cells, min_size=len(header), max_size=len(header)), max_size=5))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@FUZZ
@given(text=csv_text(), junk=st.binary(max_size=40), raw=st.booleans())
def test_fuzzed_csv(tmp_path_factory, text, junk, raw) -> None:
    path = tmp_path_factory.mktemp("csv") / "catalog.csv"
    path.write_bytes(junk if raw else text.encode("utf-8", "surrogatepass"))
    check_catalog(reads_or_names(lambda: read_catalog(path), path))



@FUZZ
@given(columns=parquet_columns(COLUMNS, st.binary(max_size=3)), keep_required=st.booleans())
def test_fuzzed_parquet(tmp_path_factory, columns, keep_required) -> None:
    path = tmp_path_factory.mktemp("pq") / "catalog.parquet"
    if keep_required:
        columns = {"item_id": ["a", "b", "c"], "image": ["a.jpg", "b.jpg", "c.jpg"], **columns}
    try:
        pd.DataFrame(columns).to_parquet(path)
    except Exception:  # noqa: BLE001 - a frame pyarrow will not write is not an input we can be given
        return
    check_catalog(reads_or_names(lambda: read_catalog(path), path))


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@FUZZ
@given(files=st.lists(st.tuples(st.lists(names, max_size=2), names,
                                st.sampled_from([".jpg", ".JPG", ".png", ".webp", ".txt", ""])), max_size=6),
       loop=st.booleans())
def test_fuzzed_image_folder(tmp_path_factory, files, loop) -> None:
    folder = tmp_path_factory.mktemp("images") / "imgs"
    folder.mkdir()
    for parents, stem, suffix in files:
        path = folder.joinpath(*parents, stem + suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\xff\xd8 not really a jpeg")
        except OSError:  # a name the file system refuses (too long, a file where a folder is wanted)
            continue
    if loop:
        os.symlink(folder, folder / "again")  # a link back to the folder itself
    frame = reads_or_names(lambda: catalog_from_folder(folder), folder)
    check_catalog(frame)


# Found by the fuzzing above; each failed before its fix.
def test_found_by_fuzzing_a_faiss_id_column(tmp_path) -> None:
    # the index adds faiss_id to the catalogue's columns: a catalogue holding one failed the build
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,image,faiss_id\na,a.jpg,7\n")
    with pytest.raises(InputError, match="catalog.csv: column 'faiss_id' is reserved"):
        read_catalog(path)


def test_found_by_fuzzing_bytes_ids_in_parquet(tmp_path) -> None:
    # a binary item_id column was decoded by pandas: UnicodeDecodeError on b"\x80"
    path = tmp_path / "catalog.parquet"
    pd.DataFrame({"item_id": [b"\x80", b"ok"], "image": ["a.jpg", "b.jpg"]}).to_parquet(path)
    with pytest.raises(InputError, match="catalog.parquet: row 1: column 'item_id' holds bytes"):
        read_catalog(path)


def test_found_by_fuzzing_a_blank_file_name(tmp_path) -> None:
    # " .jpg" made the item id " ", which a catalogue file refuses as empty
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    (folder / "\r\n.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="a blank file name gives no item_id"):
        catalog_from_folder(folder)


def test_found_by_fuzzing_integers_past_64_bits(tmp_path) -> None:
    # pandas keeps them as Python ints, which pyarrow cannot write: the run died writing catalog.parquet
    path = tmp_path / "catalog.csv"
    path.write_text(f"item_id,image,ean\na,a.jpg,{'9' * 30}\nb,b.jpg,\n")
    frame = read_catalog(path)
    assert frame["ean"].iloc[0] == "9" * 30 and pd.isna(frame["ean"].iloc[1])
    pa.Table.from_pandas(frame, preserve_index=False)


def test_found_by_fuzzing_a_broken_url(tmp_path) -> None:
    # urlparse raised ValueError("Invalid IPv6 URL") out of the reader
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,image\na,a.jpg\nb,http://[::1\n")
    with pytest.raises(InputError, match="catalog.csv: row 2: image 'http://.::1' is not a path or URL"):
        read_catalog(path)


@pytest.mark.parametrize(("name", "write"), [
    ("catalog.csv", lambda p: p.write_text("item_id,image\na,a.jpg\na,b.jpg\n")),
    ("catalog.parquet", lambda p: p.write_bytes(b"PAR1\x00\x00junkPAR1")),
])
def test_cli_exits_2_naming_the_file_and_writes_nothing(tmp_path, name, write) -> None:
    path = tmp_path / name
    write(path)
    out = tmp_path / "set"
    assert_exit_2(run_cli("embed", "--catalog", str(path), "--out", str(out), "--device", "cpu"), path)
    assert not (out / "embedding_set.json").exists()


def test_cli_folder_exits_2(tmp_path) -> None:
    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"x")
    (folder / "a.png").write_bytes(b"x")  # two images, one item id
    out = tmp_path / "set"
    assert_exit_2(run_cli("embed", "--images", str(folder), "--out", str(out), "--device", "cpu"), folder)
    assert not (out / "embedding_set.json").exists()


def test_reader_accepts_what_it_should(tmp_path: Path) -> None:
    path = tmp_path / "catalog.parquet"
    pd.DataFrame({"item_id": [1, 2], "image": ["a.jpg", "b.jpg"], "price": [1.5, None]}).to_parquet(path)
    frame = read_catalog(path)
    assert frame["item_id"].tolist() == ["1", "2"] and frame["image"].tolist()[0] == str(tmp_path / "a.jpg")
