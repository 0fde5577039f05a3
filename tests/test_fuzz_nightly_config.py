"""The nightly TOML config fuzzed: any value at any key, unknown keys and sections, broken TOML.
load_config returns a config every later stage can use, or raises UsageError naming the file and
the key; `recsys nightly` exits 2 before it locks, embeds or publishes anything."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.errors import UsageError
from jobs.nightly.config import SECTIONS, NightlyConfig, load_config
from tests.fuzzing import FUZZ, assert_exit_2, reads_or_names, run_cli, toml_value

GOOD: dict[str, Any] = {
    "work_dir": "work", "store": "store",
    "catalog": {"file": "catalog.csv"},
    "embed": {"model": "tf_efficientnet_lite0", "device": "cpu", "batch_size": 8, "part_size": 16,
              "max_failure_rate": 0.1},
    "index": {"factory": "Flat", "target_recall": 0.9, "memory_budget": "1G", "keep_versions": 3},
    "behaviour": {"events": "events.csv", "model": "auto"},
    "gates": {"max_item_drop": 0.2, "recall_margin": 0.02, "keep_rejected": False,
              "min_neighbour_overlap": 0.5, "accept_drift": False},
}


def to_toml(config: dict[str, Any]) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, table in config.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


toml_values = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats() | st.text(max_size=6) | st.sampled_from(["8G", "1.5t", "-1G", "0", "cpu", "ray", "\x00x"])
    | st.dates(),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)
places = [(section, key) for section, keys in SECTIONS.items() for key in keys]


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    config = json.loads(json.dumps(GOOD))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["set", "drop", "unknown"]))
        section, key = draw(st.sampled_from(places))
        table = config if not section else config.setdefault(section, {})
        if how == "set":
            table[key] = draw(toml_values)
        elif how == "drop":
            table.pop(key, None)
        else:
            table[draw(st.text(min_size=1, max_size=4))] = draw(toml_values)
    return config


def check_config(config: NightlyConfig | None) -> None:
    """What the stages after the config rely on, without running them."""
    if config is None:
        return
    from index.factory import parse_size

    for name in ("work_dir", "store", "catalog", "images", "events"):
        value = getattr(config, name)
        assert value is None or (isinstance(value, Path) and "\x00" not in str(value))
    assert (config.catalog is None) != (config.images is None)
    assert isinstance(config.batch_size, int) and config.batch_size >= 1
    assert math.isfinite(config.max_failure_rate) and not math.isnan(config.target_recall)
    assert config.target_recall > 0
    budget = parse_size(config.memory_budget)
    assert budget is None or budget > 0


@FUZZ
@given(config=configs())
def test_fuzzed_config(tmp_path_factory, config) -> None:
    path = tmp_path_factory.mktemp("cfg") / "nightly.toml"
    path.write_text(to_toml(config), encoding="utf-8", errors="surrogatepass")
    check_config(reads_or_names(lambda: load_config(path), path))


@FUZZ
@given(text=st.text(max_size=60), junk=st.binary(max_size=40), raw=st.booleans())
def test_fuzzed_text(tmp_path_factory, text, junk, raw) -> None:
    path = tmp_path_factory.mktemp("cfgt") / "nightly.toml"
    body = to_toml(GOOD).encode()
    path.write_bytes(body[: len(body) // 2] + junk if raw else text.encode("utf-8", "surrogatepass"))
    check_config(reads_or_names(lambda: load_config(path), path))


# Found by the fuzzing above; each failed before its fix (the first three surfaced only after the
# embedding stage, hours into a run; the last as a traceback).
@pytest.mark.parametrize(("section", "key", "value", "needle"), [
    ("index", "memory_budget", "", "index.memory_budget = ''"),
    ("index", "memory_budget", "lots", "index.memory_budget = 'lots'"),
    ("index", "target_recall", math.nan, "index.target_recall must be above 0, not nan"),
    ("", "store", "st\x00re", "store: expected a path string"),
])
def test_found_by_fuzzing(tmp_path, section, key, value, needle) -> None:
    config = json.loads(json.dumps(GOOD))
    (config[section] if section else config)[key] = value
    path = tmp_path / "nightly.toml"
    path.write_text(to_toml(config))
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_found_by_fuzzing_a_file_as_work_dir(tmp_path) -> None:
    path = tmp_path / "nightly.toml"
    path.write_text(to_toml(GOOD))
    (tmp_path / "work").write_text("a file where the work folder goes")
    assert_exit_2(run_cli("nightly", "--config", str(path)), "work_dir")


def test_cli_exits_2_before_touching_the_work_folder(tmp_path) -> None:
    config = json.loads(json.dumps(GOOD))
    config["index"]["keep_versions"] = 0
    path = tmp_path / "nightly.toml"
    path.write_text(to_toml(config))
    assert_exit_2(run_cli("nightly", "--config", str(path)), "index.keep_versions")
    assert not (tmp_path / "work").exists() and not (tmp_path / "store").exists()
