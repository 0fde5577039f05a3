"""Shared pieces of the input-format fuzz tests (tests/test_fuzz_*.py): small hypothesis budgets,
strategies for hostile text and values, and the property every reader must keep: it returns, or
raises InputError whose message names the file (and where it can, the row or key)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from embeddings.errors import InputError

# Each fuzz test runs in seconds: few examples, derandomized (the same ones every run), no per-example
# deadline (the first call imports). FUZZ_EXAMPLES=500 FUZZ_RANDOM=1 hunts wider, by hand.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
                derandomize=not os.environ.get("FUZZ_RANDOM"), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Cells a careless export or a hostile user puts in a table.
hostile_cells = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "None", "null", "inf", "-inf", "1e400", "-1", "0", "1.5",
                     "9" * 30, "\x00", "a,b", '"', '"quoted"', "\n", "\r\n", "é", "\ufeff", "2026-13-45",
                     "1970-01-01T00:00:00Z", "1999-12-31T23:59:59+05:00", "view", "purchase", "../x",
                     "/abs/path.jpg", "http://", "http://[::1", "file:///nope.png"]),
    st.text(max_size=8),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def json_values() -> st.SearchStrategy:
    """Any JSON value, small."""
    scalars = (st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False)
               | st.text(max_size=5))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


def reads_or_names(call: Callable[[], Any], *names: str | Path) -> Any:
    """Run a reader: it returns (the result comes back), or raises InputError whose message names
    one of `names` (a file, folder, row or key). Any other exception is the bug being looked for."""
    try:
        return call()
    except InputError as exc:
        message = str(exc)
        assert any(str(name) in message for name in names), f"message names none of {names}: {message}"
        assert "Traceback" not in message
        return None


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m jobs ARGS` in a subprocess (the exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "jobs", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_exit_2(result: subprocess.CompletedProcess, *names: str | Path) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert any(str(name) in result.stderr for name in names), result.stderr[-2000:]


def parquet_columns(names: list[str], *format_cells: st.SearchStrategy, rows: int = 3) -> st.SearchStrategy:
    """Frames for a Parquet reader: 1 to 5 of `names`, each column `rows` values of one kind (text,
    integers, floats, booleans, the format's own `format_cells`, nested lists, hostile cells)."""
    kinds = [st.text(max_size=4) | st.none(), st.integers(-2**62, 2**62),
             st.floats(allow_nan=True, allow_infinity=True), st.booleans(), *format_cells,
             st.lists(st.integers(0, 3), max_size=2), hostile_cells]
    values = st.one_of(*(st.lists(kind, min_size=rows, max_size=rows) for kind in kinds))
    chosen = st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True)
    return chosen.flatmap(lambda cols: st.fixed_dictionaries({c: values for c in cols}))


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (inline tables and arrays), for documents built by hand."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else
                                                 "-inf" if value == -math.inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (surrogates make it invalid TOML: fine)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)
