"""Embedding set files (DESIGN.md): parts, failures and the manifest that marks the set complete.

Layout of a set folder:
- `part-NNNNN.parquet`: `item_id`, `embedding` (fixed-size list of float32 or float16,
  L2-normalised), `image_sha256`. Part N covers a fixed slice of the catalogue, so a resumed run
  knows which slices are finished by the parts present.
- `failures.parquet`: `item_id`, `image`, `error_type`, `message`.
- `catalog.parquet`: the catalogue as embedded (item_id, resolved image, metadata columns), which
  the index carries for filters and display.
- `embedding_set.json`: written last; its presence means the set is complete.
- `_work/`: per-part failure lists while the run is in progress.
Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embeddings.errors import InputError
from embeddings.files import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

MANIFEST = "embedding_set.json"
FAILURES = "failures.parquet"
CATALOG = "catalog.parquet"
WORK_DIR = "_work"
FAILURE_COLUMNS = ["item_id", "image", "error_type", "message"]


def part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def atomic_write_table(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def embeddings_table(item_ids: list[str], vectors: np.ndarray, shas: list[str]) -> pa.Table:
    """Rows of a part: the vectors as a fixed-size list column of their own dtype."""
    vectors = np.ascontiguousarray(vectors)
    if vectors.dtype not in (np.float32, np.float16):
        vectors = vectors.astype(np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    values = pa.array(vectors.reshape(-1))
    embedding = pa.FixedSizeListArray.from_arrays(values, dim)
    return pa.table(
        {
            "item_id": pa.array(item_ids, pa.string()),
            "embedding": embedding,
            "image_sha256": pa.array(shas, pa.string()),
        }
    )


def failures_table(rows: list[dict[str, str]]) -> pa.Table:
    return pa.table({col: pa.array([r[col] for r in rows], pa.string()) for col in FAILURE_COLUMNS})


def write_part(out_dir: Path, part: int, item_ids: list[str], vectors: np.ndarray, shas: list[str],
               failures: list[dict[str, str]], stats: dict[str, Any] | None = None) -> None:
    """Write one finished slice: its failures and stats first, then the part, whose presence
    marks the slice done (so a crash between the two only redoes this slice)."""
    work = Path(out_dir) / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_table(failures_table(failures), work / f"failures-{part:05d}.parquet")
    atomic_write_json(stats or {}, work / f"stats-{part:05d}.json")
    atomic_write_table(embeddings_table(item_ids, vectors, shas), Path(out_dir) / part_name(part))


def finished_parts(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Finished slices (part, failure list and stats all present and readable) and their stats.

    A slice whose files a crash or a full disk left unreadable is not finished: the run redoes it.
    """
    done = {}
    work = Path(out_dir) / WORK_DIR
    for path in Path(out_dir).glob("part-*.parquet"):
        number = path.stem.split("-", 1)[1]
        if not number.isdigit():
            continue
        part = int(number)
        stats = _readable_json(work / f"stats-{part:05d}.json")
        if stats is not None and _readable_parquet(work / f"failures-{part:05d}.parquet") \
                and _readable_parquet(path):
            done[part] = stats
        elif path.exists():
            log.warning("%s: unreadable or incomplete slice files; the slice is redone", path)
    return done


def _readable_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _readable_parquet(path: Path) -> bool:
    """The file exists and its footer reads (a truncated or garbled file does not)."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def merge_failures(out_dir: Path) -> pd.DataFrame:
    """Gather the per-part failure lists into failures.parquet."""
    files = sorted((out_dir / WORK_DIR).glob("failures-*.parquet"))
    frames = [pd.read_parquet(f) for f in files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FAILURE_COLUMNS)
    atomic_write_table(pa.Table.from_pandas(frame[FAILURE_COLUMNS].astype(str), preserve_index=False),
                       out_dir / FAILURES)
    return frame


@dataclass
class EmbeddingSet:
    """A complete embedding set read back: ids, vectors (float32, row-aligned) and its manifest."""

    path: Path
    item_ids: np.ndarray  # of str
    vectors: np.ndarray  # (n, dim) float32
    image_sha256: np.ndarray  # of str
    manifest: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def model_id(self) -> str:
        return str(self.manifest["model"]["id"])

    def catalog(self) -> pd.DataFrame:
        """The catalogue rows (item_id, image, metadata) of the set's items, in set order."""
        path = self.path / CATALOG
        frame = _read_frame(path) if path.exists() else pd.DataFrame({"item_id": []})
        if "item_id" not in frame.columns:
            raise InputError(f"{path}: has no item_id column (columns: {list(frame.columns)})")
        frame = frame.drop_duplicates("item_id").set_index("item_id")
        return frame.reindex(self.item_ids).rename_axis("item_id").reset_index()

    def failures(self) -> pd.DataFrame:
        path = self.path / FAILURES
        return _read_frame(path) if path.exists() else pd.DataFrame(columns=FAILURE_COLUMNS)


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise InputError(f"{path}: not a readable Parquet file ({str(exc)[:200]})") from None


def read_manifest(path: Path) -> dict[str, Any]:
    """The set's manifest, checked for the keys readers rely on (InputError naming file and key)."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{path}: not a complete embedding set (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest_path}: not valid JSON ({exc})") from None
    _check_manifest(manifest, manifest_path)
    return manifest


def _check_manifest(manifest: Any, manifest_path: Path) -> None:
    """dim a positive integer; model an object with a non-empty string id; counts an object of
    non-negative integers (total, computed, reused, failed)."""
    def bad(key: str, want: str, value: Any = None) -> InputError:
        got = "missing or null" if value is None else f"got {json.dumps(value)[:80]}"
        return InputError(f"{manifest_path}: key {key!r} must be {want} ({got})")

    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path}: must be a JSON object, not {type(manifest).__name__}")
    dim = manifest.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise bad("dim", "a positive integer", dim)
    model = manifest.get("model")
    if not isinstance(model, dict):
        raise bad("model", "an object", model)
    if not isinstance(model.get("id"), str) or not model["id"]:
        raise bad("model.id", "a non-empty string", model.get("id"))
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        raise bad("counts", "an object", counts)
    for key in ("total", "computed", "reused", "failed"):
        value = counts.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"counts.{key}", "a non-negative integer", value)


def read_embedding_set(path: Path) -> EmbeddingSet:
    """Read a complete set; refuses an unfinished one (no manifest)."""
    path = Path(path)
    manifest = read_manifest(path)
    parts = sorted(path.glob("part-*.parquet"))
    dim = int(manifest["dim"])
    ids, shas, blocks = [], [], []
    for part in parts:
        part_ids, part_shas, block = _read_part(part, dim, path / MANIFEST)
        ids.append(part_ids)
        shas.append(part_shas)
        blocks.append(block)
    if not blocks:
        return EmbeddingSet(path, np.array([], dtype=str), np.zeros((0, dim), np.float32),
                            np.array([], dtype=str), manifest)
    item_ids = np.concatenate(ids)
    unique, counts = np.unique(item_ids, return_counts=True)
    if (counts > 1).any():
        twice = str(unique[counts > 1][0])
        raise InputError(f"{path}: item_id {twice!r} is in more than one row of its parts")
    return EmbeddingSet(path, item_ids, np.concatenate(blocks), np.concatenate(shas), manifest)


def _read_part(part: Path, dim: int, manifest: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One part's ids, image hashes and (n, dim) float32 vectors; InputError naming the part."""
    try:
        table = pq.read_table(part)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{part}: not a readable Parquet file ({str(exc)[:200]})") from None
    missing = [c for c in ("item_id", "embedding", "image_sha256") if c not in table.column_names]
    if missing:
        raise InputError(f"{part}: missing column(s) {missing} (columns: {table.column_names})")
    n = table.num_rows
    columns = {}
    for name in ("item_id", "image_sha256"):
        column = table.column(name)
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if not text or column.null_count:
            raise InputError(f"{part}: column {name!r} must be strings without nulls (type {column.type}, "
                             f"{column.null_count} nulls)")
        columns[name] = column.to_numpy(zero_copy_only=False).astype(str)
    embedding = table.column("embedding")
    kind = embedding.type
    if not (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)) \
            or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)) \
            or embedding.null_count:
        raise InputError(f"{part}: column 'embedding' must be lists of numbers without nulls (type {kind})")
    values = embedding.combine_chunks()
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    if (lengths != dim).any():
        row = int(np.flatnonzero(lengths != dim)[0])
        raise InputError(f"{part}: row {row + 1} has {int(lengths[row])} embedding values, but {manifest} "
                         f"says dim {dim}")
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return columns["item_id"], columns["image_sha256"], np.asarray(flat, dtype=np.float32).reshape(n, dim)
