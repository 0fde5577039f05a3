"""Events files of every format the loader accepts (CSV, TSV, Parquet, MovieLens u.data, RecBole
.inter), fuzzed: load_events returns clean events or raises InputError naming the file; never any
other exception. One CLI run per format checks exit 2 and the message as a user sees it."""

from __future__ import annotations

import csv
import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.errors import InputError
from recsys.events import EVENT_COLUMNS, load_events
from tests.fuzzing import FUZZ, assert_exit_2, hostile_cells, parquet_columns, reads_or_names, run_cli

COLUMNS = ["user_id", "item_id", "timestamp", "event", "weight", "rating", "extra"]


def check_events(events: pd.DataFrame | None) -> None:
    if events is None:
        return
    assert list(events.columns) == EVENT_COLUMNS and len(events) > 0
    assert events["user_id"].map(lambda v: isinstance(v, str) and v != "").all()
    assert events["item_id"].map(lambda v: isinstance(v, str) and v != "").all()
    assert events["timestamp"].dtype == np.int64 and (events["timestamp"] >= 0).all()
    assert events["weight"].dtype == np.float64
    assert np.isfinite(events["weight"]).all() and (events["weight"] >= 0).all()


@st.composite
def text_table(draw: st.DrawFn, sep: str) -> str:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6, unique=True))
    if draw(st.booleans()):  # mostly the real columns, so that the cells get checked
        header = list(dict.fromkeys(["user_id", "item_id", "timestamp", *header]))
    rows = draw(st.lists(st.lists(hostile_cells, min_size=len(header), max_size=len(header)),
                         max_size=5))
    if rows and draw(st.booleans()):
        rows[-1] = rows[-1][: draw(st.integers(0, len(header)))]  # a short (or long) last row
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@FUZZ
@given(text=text_table(","), raw=st.booleans(), junk=st.binary(max_size=40))
def test_fuzzed_csv(tmp_path_factory, text, raw, junk) -> None:
    path = tmp_path_factory.mktemp("csv") / "events.csv"
    path.write_bytes(junk if raw else text.encode("utf-8", "surrogatepass"))
    check_events(reads_or_names(lambda: load_events(path), path))


@FUZZ
@given(text=text_table("\t"))
def test_fuzzed_tsv(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("tsv") / "events.tsv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_events(reads_or_names(lambda: load_events(path), path))


@FUZZ
@given(rows=st.lists(st.lists(hostile_cells, min_size=1, max_size=6), max_size=5),
       junk=st.binary(max_size=30), raw=st.booleans())
def test_fuzzed_movielens(tmp_path_factory, rows, junk, raw) -> None:
    path = tmp_path_factory.mktemp("ml") / "u.data"
    text = "\n".join("\t".join(row) for row in rows)
    path.write_bytes(junk if raw else text.encode("utf-8", "surrogatepass"))
    check_events(reads_or_names(lambda: load_events(path), path))


@FUZZ
@given(fields=st.lists(st.sampled_from(["user_id:token", "item_id:token", "timestamp:float", "rating:float",
                                        "user_id", "item_id:float", "timestamp", ":", "x:token_seq"]),
                       min_size=1, max_size=5),
       rows=st.lists(st.lists(hostile_cells, min_size=1, max_size=5), max_size=4))
def test_fuzzed_recbole(tmp_path_factory, fields, rows) -> None:
    path = tmp_path_factory.mktemp("rb") / "shop.inter"
    text = "\n".join("\t".join(row) for row in [fields, *rows])
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_events(reads_or_names(lambda: load_events(path), path))


DATETIMES = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)) | st.none()


@FUZZ
@given(columns=parquet_columns(COLUMNS, DATETIMES), keep_required=st.booleans())
def test_fuzzed_parquet(tmp_path_factory, columns, keep_required) -> None:
    path = tmp_path_factory.mktemp("pq") / "events.parquet"
    if keep_required:
        columns = {"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3],
                   **columns}
    try:
        pd.DataFrame(columns).to_parquet(path)
    except Exception:  # noqa: BLE001 - a frame pyarrow will not write is not an input we can be given
        return
    check_events(reads_or_names(lambda: load_events(path), path))


@FUZZ
@given(data=st.binary(min_size=0, max_size=200))
def test_corrupt_parquet_bytes(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("pqx") / "events.parquet"
    good = io.BytesIO()
    pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1]}).to_parquet(good)
    body = good.getvalue()
    path.write_bytes(body[: len(body) // 2] + data)  # truncated and followed by junk
    check_events(reads_or_names(lambda: load_events(path), path))


# Found by the fuzzing above; each failed before its fix.
@pytest.mark.parametrize(("name", "text", "needle"), [
    # two header fields that are one name once their types are cut: raw["user_id"] was a frame
    ("dup.inter", "user_id:token\titem_id:token\tuser_id\n1\t2\t3\n", "more than once"),
    # inf and 1e30 seconds were cast to int64's minimum and reported as "before 1970"
    ("inf.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,inf\n",
     "row 2, column 'timestamp': 'inf' is not epoch"),
    ("huge.csv", "user_id,item_id,timestamp\nu,a,1e30\n", "between 1970 and 9999"),
    ("nan.data", "1\t2\t3\tnan\n", "'nan' is neither epoch seconds nor"),
])
def test_found_by_fuzzing(tmp_path, name, text, needle) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_events(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_found_by_fuzzing_datetimes_before_1970_in_parquet(tmp_path) -> None:
    # a Parquet timestamp column skipped the "before 1970" check that text times get
    path = tmp_path / "old.parquet"
    pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"],
                  "timestamp": pd.to_datetime(["2020-01-01", "1960-01-01"])}).to_parquet(path)
    with pytest.raises(InputError, match="row 2, column 'timestamp'.*before 1970"):
        load_events(path)


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("events.csv", "user_id,item_id,timestamp\nu1,a,yesterday\n", "row 1"),
    ("events.tsv", "user_id\titem_id\ttimestamp\tweight\nu1\ta\t5\t-3\n", "weight"),
    ("u.data", "196\t242\t3\n", "timestamp"),
    ("shop.inter", "user:token\titem_id:token\n1\t2\n", "user_id"),
    ("events.parquet", None, "events.parquet"),
])
def test_cli_exits_2_naming_the_file(tmp_path, name, text, needle) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b"PAR1 not really parquet PAR1")
    else:
        path.write_text(text)
    result = run_cli("evaluate", "--events", str(path))
    assert_exit_2(result, path)
    assert needle in result.stderr
