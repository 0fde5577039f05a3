"""Catalogues: the items to embed, read from Parquet, CSV or a folder of images."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa

from embeddings.errors import InputError
from embeddings.images import resolve_ref

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# Columns the index adds beside the catalogue's own (items.parquet): a catalogue may not bring them.
RESERVED_COLUMNS = ("faiss_id",)


def read_table(path: Path) -> pd.DataFrame:
    """A Parquet or CSV file as a DataFrame, with a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype={"item_id": str})
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many types
        raise InputError(f"{path}: cannot be read as a table ({exc})") from None
    raise InputError(f"{path}: unknown table format (expected .parquet or .csv)")


def read_catalog(path: Path) -> pd.DataFrame:
    """A catalogue file as `item_id`, `image` (resolved against the file's folder) and metadata."""
    path = Path(path)
    frame = read_table(path)
    return validate_catalog(frame, source=str(path), base_dir=path.parent)


def validate_catalog(frame: pd.DataFrame, *, source: str, base_dir: Path | None) -> pd.DataFrame:
    for column in ("item_id", "image"):
        if column not in frame.columns:
            raise InputError(f"{source}: missing column {column!r} (columns: {list(frame.columns)})")
    for column in RESERVED_COLUMNS:
        if column in frame.columns:
            raise InputError(f"{source}: column {column!r} is reserved (the index adds it); rename it")
    frame = frame.reset_index(drop=True).copy()
    for column in ("item_id", "image"):
        raw = next((i for i, v in enumerate(frame[column]) if isinstance(v, bytes | bytearray)), None)
        if raw is not None:  # pandas would decode bytes as UTF-8 or fail
            raise InputError(f"{source}: row {raw + 1}: column {column!r} holds bytes, not text")
    missing_id = frame["item_id"].isna() | (frame["item_id"].astype(str).str.strip() == "")
    if missing_id.any():
        row = int(missing_id.idxmax())
        raise InputError(f"{source}: row {row + 1}: empty item_id")
    frame["item_id"] = frame["item_id"].astype(str)
    duplicated = frame["item_id"].duplicated()
    if duplicated.any():
        row = int(duplicated.idxmax())
        raise InputError(
            f"{source}: row {row + 1}: item_id {frame.at[row, 'item_id']!r} appears more than once"
        )
    missing_image = frame["image"].isna() | (frame["image"].astype(str).str.strip() == "")
    if missing_image.any():
        row = int(missing_image.idxmax())
        raise InputError(f"{source}: row {row + 1}: empty image for item {frame.at[row, 'item_id']!r}")
    images = []
    for row, ref in enumerate(frame["image"].astype(str)):
        try:
            images.append(resolve_ref(ref, base_dir))
        except ValueError as exc:  # urlparse: "Invalid IPv6 URL"
            raise InputError(f"{source}: row {row + 1}: image {ref!r} is not a path or URL ({exc})") from None
    frame["image"] = images
    return _storable(frame, source)


def _storable(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Metadata columns Parquet cannot hold as they are (integers past 64 bits, mixed types) kept as
    text, so that the embedding set and the index can carry them."""
    for column in frame.columns:
        try:
            pa.array(frame[column], from_pandas=True)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            log.warning("%s: column %r kept as text (its values have no one Parquet type)", source, column)
            frame[column] = [None if pd.isna(v) else str(v) for v in frame[column]]
    return frame


def catalog_from_folder(folder: Path) -> pd.DataFrame:
    """Every image under `folder`; item_id is the path relative to it, without the extension."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rows = [{"item_id": p.relative_to(folder).with_suffix("").as_posix(), "image": str(p.resolve())}
            for p in files]
    frame = pd.DataFrame(rows)
    blank = frame["item_id"].str.strip() == ""
    if blank.any():
        raise InputError(f"{folder}: {frame.loc[blank, 'image'].iloc[0]}: a blank file name gives no item_id")
    duplicated = frame["item_id"].duplicated(keep=False)
    if duplicated.any():
        clash = frame.loc[duplicated, "image"].tolist()[:2]
        raise InputError(f"{folder}: two images give the same item_id: {clash}")
    return frame
