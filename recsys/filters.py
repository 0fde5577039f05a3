"""Catalogue filters (DESIGN.md "Shop-grade parameters"): parsing and the mask over index rows.

    parse_filter('{"category": "shoes", "price": {"gte": 10, "lt": 50}}') -> Filter
    RowFilters(items).mask(filter)  -> bool array, one per index row (cached per filter)

A filter is a JSON object over catalogue columns; every key must hold:
- `"col": value` equal (a missing catalogue value never is; `null` matches missing values),
- `"col": [v, ...]` any of,
- `"col": {"gte": a, "gt": b, "lt": c, "lte": d}` a range (numeric columns; missing never match),
- `"col": {"ne": value}` not equal (missing values are not equal to anything).
A `Filter` is a sorted tuple of `Clause`s: hashable, so it is part of answer cache keys, and two
spellings of the same filter share one. Errors (`InputError`) name the column and what is wrong.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from index.lru import MISSING, LockedLRU
from recsys.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

RANGE_OPS = ("gt", "gte", "lt", "lte")
MAX_CLAUSES = 32
MAX_VALUES = 1000  # in one any-of list
MAX_NUMBER = 1e300  # numbers compare as float64
MASK_CACHE = 128  # whole-filter masks kept per version (100,000 items: 100 kB each)
VALUE_CACHE = 4096  # per-(column, value) equality bitmaps kept per version
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Clause:
    column: str
    op: str  # "eq", "in", "ne" or "range"
    value: Any  # a scalar ("eq", "ne"), a tuple of scalars ("in"), a tuple of (op, number) ("range")


Filter = tuple[Clause, ...]


def parse_filter(raw: str | dict[str, Any] | None) -> Filter | None:
    """A filter from its JSON text or object; None for no filter (absent, empty text or `{}`)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"filter: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"filter: expected a JSON object of column: condition, got {type(raw).__name__}")
    if len(raw) > MAX_CLAUSES:
        raise InputError(f"filter: at most {MAX_CLAUSES} columns, got {len(raw)}")
    clauses = [_clause(str(column), condition) for column, condition in raw.items()]
    return tuple(sorted(clauses, key=lambda c: (c.column, c.op, repr(c.value)))) or None


def _clause(column: str, condition: Any) -> Clause:
    if isinstance(condition, list):
        if not condition or len(condition) > MAX_VALUES:
            raise InputError(f"filter {column!r}: an any-of list holds 1 to {MAX_VALUES} values")
        return Clause(column, "in", tuple(sorted({_scalar(column, v) for v in condition}, key=repr)))
    if isinstance(condition, dict):
        ops = set(condition)
        if ops == {"ne"}:
            return Clause(column, "ne", _scalar(column, condition["ne"]))
        if not ops or not ops <= set(RANGE_OPS):
            raise InputError(f"filter {column!r}: conditions are gt, gte, lt, lte (a range) or ne alone, "
                             f"got {sorted(ops)}")
        bounds = []
        for op in RANGE_OPS:
            if op in condition:
                value = condition[op]
                if isinstance(value, bool) or not isinstance(value, int | float) \
                        or not abs(value) <= MAX_NUMBER:  # also refuses NaN and infinities
                    raise InputError(f"filter {column!r}: {op} needs a finite number, got {value!r}")
                bounds.append((op, float(value)))
        return Clause(column, "range", tuple(bounds))
    return Clause(column, "eq", _scalar(column, condition))


def _scalar(column: str, value: Any) -> Scalar:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float) and abs(value) <= MAX_NUMBER:  # also refuses NaN and infinities
        return value
    raise InputError(f"filter {column!r}: {value!r} is not a string, number, boolean or null")


class RowFilters:
    """Per loaded version: filter masks over its index rows, from per-column value bitmaps."""

    def __init__(self, items: pd.DataFrame) -> None:
        self._items = items
        self.columns = frozenset(str(c) for c in items.columns)
        self._missing: dict[str, np.ndarray] = {}
        self._values: dict[str, np.ndarray] = {}  # column -> values (numbers as float64, else objects)
        self._numeric: dict[str, bool] = {}
        self._bitmaps: LockedLRU[np.ndarray] = LockedLRU(VALUE_CACHE)  # (column, value) -> rows
        self._masks: LockedLRU[np.ndarray] = LockedLRU(MASK_CACHE)  # whole filter -> rows
        self._lock = threading.Lock()

    def check(self, flt: Filter | None) -> None:
        """InputError naming the first column the catalogue lacks, or a range over a non-number column."""
        for clause in flt or ():
            if clause.column not in self.columns:
                raise InputError(f"filter: unknown column {clause.column!r} (the catalogue has "
                                 f"{', '.join(sorted(self.columns))})")
            if clause.op == "range" and not self._column(clause.column)[1]:
                raise InputError(f"filter {clause.column!r}: a range needs a numeric column")

    def mask(self, flt: Filter) -> np.ndarray:
        """Read-only bool array: which rows satisfy every clause."""
        cached = self._masks.get(flt)
        if cached is not MISSING:
            return cached
        self.check(flt)
        mask = np.ones(len(self._items), dtype=bool)
        for clause in flt:
            mask &= self._clause_mask(clause)
        mask.flags.writeable = False
        return self._masks.put(flt, mask)

    def _clause_mask(self, clause: Clause) -> np.ndarray:
        values, numeric = self._column(clause.column)
        missing = self._missing[clause.column]
        if clause.op == "eq":
            return self._equal(clause.column, clause.value)
        if clause.op == "in":
            out = np.zeros(len(values), dtype=bool)
            for value in clause.value:
                out |= self._equal(clause.column, value)
            return out
        if clause.op == "ne":
            return ~self._equal(clause.column, clause.value) if clause.value is not None else ~missing
        out = ~missing
        with np.errstate(invalid="ignore"):
            for op, bound in clause.value:
                out &= {"gt": np.greater, "gte": np.greater_equal, "lt": np.less,
                        "lte": np.less_equal}[op](values, bound)
        return out

    def _equal(self, column: str, value: Scalar) -> np.ndarray:
        """Cached bitmap of the rows whose value equals `value` (None: the missing ones)."""
        key = (column, value if not isinstance(value, bool) else ("bool", value))
        cached = self._bitmaps.get(key)
        if cached is not MISSING:
            return cached
        values, numeric = self._column(column)
        missing = self._missing[column]
        if value is None:
            bitmap = missing
        elif numeric:
            if isinstance(value, str):  # "42" against a numeric column: compare as the number
                try:
                    value = float(value)
                except ValueError:
                    value = math.nan
            bitmap = (values == float(value)) & ~missing
        else:
            bitmap = (values == (value if isinstance(value, str) else _as_text(value))) & ~missing
        bitmap.flags.writeable = False
        return self._bitmaps.put(key, bitmap)

    def _column(self, column: str) -> tuple[np.ndarray, bool]:
        values = self._values.get(column)
        if values is None:
            import pandas as pd

            series = self._items[column]
            missing = series.isna().to_numpy()
            numeric = (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)) \
                and not pd.api.types.is_object_dtype(series)
            if numeric:
                values = series.astype("float64").to_numpy()
            else:
                values = np.array([_as_text(v) for v in series.tolist()], dtype=object)
            with self._lock:
                self._missing[column] = missing
                self._numeric[column] = numeric
                self._values[column] = values
        return values, self._numeric[column]


def _as_text(value: Any) -> str:
    """Non-numeric catalogue values and filter values compare as text; booleans as true/false."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)
