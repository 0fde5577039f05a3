"""Each item's display metadata as JSON object members (`"category":"bags","price":10.5`), for the
answers of one loaded version.

Loading a version prepares each shown catalogue column once, as plain Python values (JSON-ready:
numbers, strings, booleans; None where the value is missing), without a loop over the items in
Python (strings held by Arrow are not even converted: they are read where they are); an item's
members are assembled the first time an answer shows the item (a few microseconds) and kept.
Building them all up front cost seconds a reload at 1,000,000 items.

The members are what pandas' JSON writer gives for the row (`to_json(orient="records",
date_format="iso")`: numbers rounded to 10 decimals, times in ISO), re-serialised by orjson, with
missing values left out. Integer, boolean and string columns hold exactly those values already and
are taken as they are; every other column goes through pandas' writer, one column at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

# Catalogue columns that never go out in answers: the image reference is a server-side path
# (the page fetches /v1/items/{id}/image instead); item_id and score are set by the answer.
HIDDEN_COLUMNS = ("image", "item_id", "score")
# Columns are converted this many rows at a time: each conversion holds the GIL, and the server's
# event loop keeps answering beside a reload, so each pause stays a few milliseconds.
SLICE_ROWS = 16_384


class DisplayMetadata:
    """The shown columns of a version's items (in index row order) and each row's JSON members."""

    def __init__(self, items: pd.DataFrame) -> None:
        shown = items.drop(columns=[c for c in HIDDEN_COLUMNS if c in items.columns])
        self.columns = frozenset(str(c) for c in shown.columns)
        # (name, row -> value or None) per shown column
        self._getters = [(str(name), column_getter(shown.iloc[:, i])) for i, name in enumerate(shown.columns)]
        # Each row's members once assembled: an answer's rows cost a list read each, as the
        # pre-serialised metadata did. Filled as rows are shown (threads racing to fill one row
        # write the same bytes).
        self._members: list[bytes | None] = [None] * len(shown) if self._getters else []

    def members(self, row: int) -> bytes:
        """The row's metadata as JSON object members, missing values left out (b"" when none)."""
        if not self._getters:
            return b""
        members = self._members[row]
        if members is None:
            record = {}
            for name, value_of in self._getters:
                value = value_of(row)
                if value is not None:
                    record[name] = value
            members = self._members[row] = orjson.dumps(record)[1:-1] if record else b""
        return members


def column_getter(column: pd.Series) -> Callable[[int], Any]:
    """row -> the column's value as pandas' JSON writer gives it back, None where missing.

    Strings held by Arrow are read from the Arrow array when a row is first shown (a microsecond or
    so), not converted at load; other columns are converted at load, SLICE_ROWS rows at a time."""
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        strings = pa.array(column)  # the column's own Arrow data
        return lambda row: strings[row].as_py()
    return column_values(column).__getitem__


def column_values(column: pd.Series) -> list[Any]:
    """The column's values as pandas' JSON writer gives them back, None where missing."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":  # numpy ints and bools: never missing
        convert = _plain
    elif isinstance(dtype, pd.StringDtype):
        convert = _strings
    else:
        convert = _through_json
    values: list[Any] = []
    for start in range(0, len(column), SLICE_ROWS):
        values += convert(column.iloc[start:start + SLICE_ROWS])
    return values


def _plain(part: pd.Series) -> list[Any]:
    return part.to_numpy().tolist()


def _strings(part: pd.Series) -> list[Any]:
    return part.to_numpy(dtype=object, na_value=None).tolist()


def _through_json(part: pd.Series) -> list[Any]:
    return orjson.loads(part.to_json(orient="values", date_format="iso"))
