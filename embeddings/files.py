"""Whole-file writes that a reader never sees half done, and the SHA-256 of a file.

Every writer in the code base that replaces a file others may read (manifests, CURRENT, reports,
BENCHMARKS.md) goes through `atomic_write`: the data is written under a temporary name beside the
target (`.<name>.tmp-<random>`, so concurrent writers never share one) and renamed onto it with
`os.replace`, which is atomic on one file system; if writing fails, the temporary file is removed
and the target is untouched. The lowest layer: imports nothing of ours, so every layer may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embeddings import faults


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` to write the file under a temporary name, then rename it onto `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        write(tmp)
        faults.point(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a file size limit: say which file (pyarrow does not)
        tmp.unlink(missing_ok=True)
        if str(path) in str(exc):
            raise
        raise OSError(*((exc.errno, f"{path}: {exc.strerror}") if exc.errno and exc.strerror
                        else (f"{path}: {exc}",))) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(text: str, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(data: Any, path: str | Path) -> None:
    """Indented, keys sorted, one trailing newline (the layout of every JSON file we write)."""
    atomic_write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", path)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
