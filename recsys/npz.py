"""Reading the .npz files of plain arrays that models, interactions and behaviour data are saved as."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the file, read at once and without pickles. Raises OSError, EOFError,
    zipfile.BadZipFile or ValueError for a damaged file; a ValueError names the key it could not read."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {}
        for key in data.files:
            try:
                arrays[key] = data[key]
            except ValueError as exc:  # an object array (pickles refused), a damaged member
                raise ValueError(f"key {key!r}: {exc}") from None
        return arrays
