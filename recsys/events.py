"""Interaction events in: Parquet, CSV, MovieLens `u.data` and RecBole `.inter`, validated.

Every loader returns one frame with the columns of EVENT_COLUMNS: `user_id` and `item_id` (str),
`timestamp` (int64 epoch seconds), `event` (str) and `weight` (float64). A bad file raises
`InputError` naming the file, the row (1-based, counting data rows) and the column.

`load_events` reads a whole file; `iter_events` reads it in chunks of rows (Parquet record batches,
CSV chunks), each validated alike, so that a file of 50M events never sits in memory as one frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import InputError

log = logging.getLogger(__name__)

EVENT_COLUMNS = ["user_id", "item_id", "timestamp", "event", "weight"]
MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31T23:59:59Z

# purchase > cart > click > view; a rating (MovieLens, RecBole) counts as one interaction.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "cart": 4.0,
    "purchase": 8.0,
    "rating": 1.0,
    "interaction": 1.0,
}


def detect_format(path: Path) -> str:
    """`parquet`, `csv`, `movielens` (u.data and other tab-separated `.data`) or `recbole` (.inter)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".data":
        return "movielens"
    if suffix == ".inter":
        return "recbole"
    raise InputError(
        f"{path}: unknown events format {suffix or '(no suffix)'!r}; "
        "expected .parquet, .csv, MovieLens u.data (.data) or RecBole .inter"
    )


def load_events(path: str | Path, event_weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Read and validate an events file of any supported format (DESIGN.md, Events)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: events file not found")
    weights = dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
    fmt = detect_format(path)
    if fmt == "parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    elif fmt == "csv":
        raw = _read_text(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", header=0)
    elif fmt == "movielens":
        raw = _read_text(path, sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"])
        raw["event"] = "rating"
    else:
        raw = _read_recbole(path)
        raw["event"] = "rating"
    events = _validate(raw, path, weights)
    log.info("%s: %d events, %d users, %d items", path, len(events), events.user_id.nunique(),
             events.item_id.nunique())
    return events


def iter_events(path: str | Path, event_weights: Mapping[str, float] | None = None,
                batch_rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
    """The events of a file as validated frames of at most `batch_rows` rows, in file order.

    Parquet and CSV are read chunk by chunk (an error names the row within the whole file);
    MovieLens and RecBole files, small by nature, come as one chunk."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: events file not found")
    weights = dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
    fmt = detect_format(path)
    if fmt not in ("parquet", "csv"):
        yield load_events(path, weights)
        return
    first_row = 0
    for raw in _raw_chunks(path, fmt, batch_rows):
        if len(raw) == 0:
            continue
        yield _validate(raw, path, weights, first_row)
        first_row += len(raw)
    if first_row == 0:
        raise InputError(f"{path}: holds no events")


def _raw_chunks(path: Path, fmt: str, batch_rows: int) -> Iterator[pd.DataFrame]:
    if fmt == "csv":
        try:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            yield from pd.read_csv(path, sep=sep, header=0, dtype=str, keep_default_na=False,
                                   skip_blank_lines=True, chunksize=batch_rows)
        except pd.errors.ParserError as exc:
            raise InputError(f"{path}: malformed row ({exc})") from None
        except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"{path}: not a readable text events file ({exc})") from None
        return
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        for batch in reader.iter_batches(batch_size=batch_rows):
            yield batch.to_pandas()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def _read_text(path: Path, sep: str, header: int | None, names: list[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, header=header, names=names, dtype=str, keep_default_na=False,
                           skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed row ({exc})") from None
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable text events file ({exc})") from None


def _read_recbole(path: Path) -> pd.DataFrame:
    """RecBole atomic file: a header of `name:type` fields, tab-separated rows."""
    raw = _read_text(path, sep="\t", header=0)
    renamed = {}
    for column in raw.columns:
        name = str(column).split(":", 1)[0]
        renamed[column] = name
    names = list(renamed.values())
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"{path}: header names field(s) {twice} more than once (fields: {names})")
    raw = raw.rename(columns=renamed)
    for required in ("user_id", "item_id"):
        if required not in raw.columns:
            raise InputError(f"{path}: header has no {required}:token field (fields: {list(renamed)})")
    if "timestamp" not in raw.columns:
        raw["timestamp"] = "0"  # RecBole files may lack time; order is then unknown
    return raw


def _fail(path: Path, row: int, column: str, problem: str) -> InputError:
    return InputError(f"{path}: row {row + 1}, column {column!r}: {problem}")


def _validate(raw: pd.DataFrame, path: Path, weights: Mapping[str, float],
              first_row: int = 0) -> pd.DataFrame:
    """`first_row`: where this chunk starts in the file (0-based), for the row an error names."""
    try:
        return _validate_chunk(raw.reset_index(drop=True), path, weights)
    except _BadRow as bad:
        raise _fail(path, first_row + bad.row, bad.column, bad.problem) from None


class _BadRow(Exception):
    def __init__(self, row: int, column: str, problem: str) -> None:
        super().__init__(problem)
        self.row, self.column, self.problem = row, column, problem


def _validate_chunk(raw: pd.DataFrame, path: Path, weights: Mapping[str, float]) -> pd.DataFrame:
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(raw.columns)}")
    if len(raw) == 0:
        raise InputError(f"{path}: holds no events")
    out = pd.DataFrame(index=raw.index)
    for column in ("user_id", "item_id"):
        values = raw[column]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise _BadRow(int(np.flatnonzero(empty)[0]), column, "empty id")
        out[column] = values.astype(str).str.strip()
    out["timestamp"] = _parse_timestamps(raw["timestamp"], path)
    if "event" in raw.columns:
        event = raw["event"].astype(str).str.strip().str.lower()
        unknown = ~event.isin(list(weights))
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise _BadRow(row, "event", f"unknown event {event.iloc[row]!r}; known: {sorted(weights)}")
        out["event"] = event
    else:
        out["event"] = "interaction"
    base = out["event"].map(weights).astype(np.float64)
    if "weight" in raw.columns:
        given = pd.to_numeric(raw["weight"], errors="coerce")
        bad = given.isna().to_numpy() | ~np.isfinite(given.to_numpy(dtype=float, na_value=np.nan)) | (
            given.to_numpy(dtype=float, na_value=0.0) < 0
        )
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _BadRow(row, "weight", f"{raw['weight'].iloc[row]!r} is not a number >= 0")
        base = base * given.astype(np.float64)
    out["weight"] = base
    return out.reset_index(drop=True)[EVENT_COLUMNS]


def _parse_timestamps(values: pd.Series, path: Path) -> np.ndarray:
    """Epoch seconds (numbers) or ISO 8601 strings to int64 epoch seconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
        if parsed.isna().any():
            raise _BadRow(int(np.flatnonzero(parsed.isna().to_numpy())[0]), "timestamp", "missing")
        if parsed.dt.tz is None:
            parsed = parsed.dt.tz_localize("UTC")
        return _after_1970(_epoch_seconds(parsed).to_numpy(), values)
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":  # epoch seconds already: no text
        wild = ~values.between(0, MAX_EPOCH_SECONDS).to_numpy()
        if wild.any():
            row = int(np.flatnonzero(wild)[0])
            raise _BadRow(row, "timestamp", f"{values.iloc[row]!r} is not {EPOCH_RANGE}")
        return values.to_numpy(np.int64)
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    is_number = numbers.notna().to_numpy()
    out = np.zeros(len(values), dtype=np.int64)
    if is_number.any():
        seconds = numbers.to_numpy(dtype=float, na_value=0.0)
        wild = is_number & ~((seconds >= 0) & (seconds <= MAX_EPOCH_SECONDS))  # also inf, nan
        if wild.any():
            row = int(np.flatnonzero(wild)[0])
            raise _BadRow(row, "timestamp", f"{values.iloc[row]!r} is not {EPOCH_RANGE}")
        out[is_number] = np.floor(seconds[is_number]).astype(np.int64)
    if (~is_number).any():
        rest = text[~is_number]
        dates = pd.to_datetime(rest, errors="coerce", utc=True, format="ISO8601")
        bad = dates.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(~is_number)[np.flatnonzero(bad)[0]])
            raise _BadRow(row, "timestamp",
                          f"{values.iloc[row]!r} is neither epoch seconds nor an ISO 8601 time")
        out[~is_number] = _epoch_seconds(dates).to_numpy()
    return _after_1970(out, values)


EPOCH_RANGE = "epoch seconds between 1970 and 9999"


def _after_1970(out: np.ndarray, values: pd.Series) -> np.ndarray:
    if (out < 0).any():
        row = int(np.flatnonzero(out < 0)[0])
        raise _BadRow(row, "timestamp", f"{values.iloc[row]!r} is before 1970")
    return out


def _epoch_seconds(times: pd.Series) -> pd.Series:
    """Timezone-aware datetimes to int64 seconds, whatever their resolution (ns, us, s)."""
    return ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s")).astype(np.int64)
