"""Events loaders (Parquet, CSV, MovieLens u.data, RecBole .inter), their errors, and cleaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cleaning import CleaningConfig, clean_events, decay
from recsys.errors import InputError
from recsys.events import EVENT_COLUMNS, load_events


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_events_iso_times_and_weights(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user_id,item_id,timestamp,event,weight\n"
                 "u1,a,2026-01-01T00:00:10Z,view,1\n"
                 "u1,b,1767225600,PURCHASE,2\n"
                 "u2,a,2026-01-01T01:00:00+01:00,click,1\n")
    events = load_events(path)
    assert list(events.columns) == EVENT_COLUMNS
    assert events.timestamp.tolist() == [1767225610, 1767225600, 1767225600]
    assert events.event.tolist() == ["view", "purchase", "click"]
    assert events.weight.tolist() == [1.0, 16.0, 2.0]  # purchase 8 x weight 2


def test_parquet_and_custom_event_weights(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": ["a", "b"], "timestamp": [10, 20],
                          "event": ["like", "view"]})
    frame.to_parquet(tmp_path / "e.parquet")
    events = load_events(tmp_path / "e.parquet", {"like": 3.0, "view": 1.0})
    assert events.user_id.tolist() == ["1", "2"]
    assert events.weight.tolist() == [3.0, 1.0]


def test_movielens_u_data(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    events = load_events(path)
    assert events.user_id.tolist() == ["196", "186"]
    assert events.item_id.tolist() == ["242", "302"]
    assert events.timestamp.tolist() == [881250949, 891717742]
    assert set(events.event) == {"rating"}


def test_recbole_inter(tmp_path: Path) -> None:
    path = write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                 "196\t242\t3\t881250949\n22\t377\t1\t878887116\n")
    events = load_events(path)
    assert events.item_id.tolist() == ["242", "377"]
    assert events.timestamp.tolist() == [881250949, 878887116]


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("missing.csv", "user_id,item_id\nu,a\n", "missing column(s) ['timestamp']"),
    ("event.csv", "user_id,item_id,timestamp,event\nu,a,1,view\nu,b,2,teleport\n",
     "row 2, column 'event': unknown event 'teleport'"),
    ("time.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,c,yesterday\n",
     "row 3, column 'timestamp': 'yesterday'"),
    ("id.csv", "user_id,item_id,timestamp\nu,a,1\n,b,2\n", "row 2, column 'user_id': empty id"),
    ("weight.csv", "user_id,item_id,timestamp,weight\nu,a,1,-3\n", "row 1, column 'weight'"),
    ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\t6\n", "malformed row"),
    ("bad.inter", "user:token\titem_id:token\n1\t2\n", "no user_id:token field"),
    ("events.json", "{}", "unknown events format '.json'"),
    ("empty.csv", "user_id,item_id,timestamp\n", "holds no events"),
])
def test_bad_files_name_file_row_and_column(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(InputError) as err:
        load_events(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_bad_parquet_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_events(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="not a readable Parquet"):
        load_events(write(tmp_path / "bad.parquet", "not parquet"))


def test_cleaning_drops_duplicates_and_bots_and_decays() -> None:
    rows = [("u", "a", 100, "view", 1.0), ("u", "a", 100, "view", 1.0), ("u", "b", 200, "click", 2.0)]
    rows += [("bot", f"i{i}", 5000 + i, "view", 1.0) for i in range(30)]
    events = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    clean = clean_events(events, CleaningConfig(bot_events_per_hour=20))
    assert sorted(clean.user_id.unique()) == ["u"]
    assert len(clean) == 2
    half = clean_events(events.iloc[:3], CleaningConfig(decay_half_life_days=1.0))
    assert half.weight.tolist() == pytest.approx([0.5 ** (100 / 86400), 2.0])
    assert decay(np.array([0]), 86400 * 2, 1.0)[0] == pytest.approx(0.25)
