"""The nightly pipeline's TOML configuration: one dataclass, read and checked in one place.

Relative paths are resolved against the config file's folder, so a config and its data can move
together. Every error names the file and the key (exit code 2 at the command line).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from embeddings.errors import InputError
from embeddings.names import DEFAULT_MODEL, DEVICES, ENGINES, RUNTIMES
from index.remote import is_url
from jobs.errors import UsageError
from recsys.names import BEHAVIOUR_MODELS


@dataclass
class NightlyConfig:
    """What `recsys nightly` runs; see examples/nightly.toml for every key with a comment."""

    work_dir: Path
    store: Path | str  # a folder, or an object-storage URL (s3://bucket/prefix) kept as given
    catalog: Path | None = None  # a catalogue file (Parquet or CSV) ...
    images: Path | None = None  # ... or a folder of images
    model: str = DEFAULT_MODEL
    device: str = "auto"
    runtime: str = "auto"
    engine: str = "local"
    batch_size: int = 32
    workers: int | None = None
    part_size: int = 2048
    max_failure_rate: float = 0.05
    factory: str = "auto"
    # Above 1 is allowed and can never be met: a way to rehearse a failed gate.
    target_recall: float = 0.95
    memory_budget: str | None = None
    keep_versions: int = 5
    events: Path | None = None
    behaviour_model: str = "auto"
    max_item_drop: float = 0.2
    recall_margin: float = 0.02
    keep_rejected: bool = False
    min_neighbour_overlap: float = 0.5
    accept_drift: bool = False
    source: Path | None = field(default=None, compare=False)  # the file it was read from


# TOML layout: section ("" is the top level) -> key -> the NightlyConfig field it sets.
SECTIONS: dict[str, dict[str, str]] = {
    "": {"work_dir": "work_dir", "store": "store"},
    "catalog": {"file": "catalog", "images": "images"},
    "embed": {k: k for k in ("model", "device", "runtime", "engine", "batch_size", "workers", "part_size",
                             "max_failure_rate")},
    "index": {k: k for k in ("factory", "target_recall", "memory_budget", "keep_versions")},
    "behaviour": {"events": "events", "model": "behaviour_model"},
    "gates": {k: k for k in ("max_item_drop", "recall_margin", "keep_rejected", "min_neighbour_overlap",
                             "accept_drift")},
}
CHOICES = {"device": DEVICES, "runtime": RUNTIMES, "engine": ENGINES,
           "behaviour_model": ("auto", *BEHAVIOUR_MODELS)}


def _kind(name: str) -> type:
    """The field's type without `| None` (from the dataclass annotations: one list of options)."""
    hint = typing.get_type_hints(NightlyConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _convert(value: Any, kind: type, where: str, base: Path) -> Any:
    if kind is Path:
        if not isinstance(value, str) or not value or "\x00" in value:
            raise UsageError(f"{where}: expected a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # memory_budget = 8589934592
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def config_from_dict(raw: dict[str, Any], source: str = "<config>",
                     base: Path | None = None) -> NightlyConfig:
    """Check a parsed TOML table against SECTIONS and build the config; UsageError names the key."""
    base = base or Path.cwd()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in SECTIONS or not key:
                raise UsageError(f"{source}: unknown section [{key}] (known: "
                                 f"{', '.join(s for s in SECTIONS if s)})")
            section, table = key, value
        else:
            section, table = "", {key: value}
        for name, item in table.items():
            where = f"{source}: {section + '.' if section else ''}{name}"
            if name not in SECTIONS[section]:
                scope = f"[{section}]" if section else "the top level"
                raise UsageError(f"{where}: unknown key (known in {scope}: {', '.join(SECTIONS[section])})")
            attr = SECTIONS[section][name]
            url = attr == "store" and is_url(item)
            values[attr] = item if url else _convert(item, _kind(attr), where, base)
    for name in ("work_dir", "store"):
        if name not in values:
            raise UsageError(f"{source}: missing key {name!r} at the top level")
    config = NightlyConfig(**values, source=Path(source) if source != "<config>" else None)
    _check(config, source)
    return config


def _check(config: NightlyConfig, source: str) -> None:
    if (config.catalog is None) == (config.images is None):
        raise UsageError(f"{source}: [catalog] needs exactly one of `file` (a catalogue) or `images` "
                         "(a folder)")
    for attr, choices in CHOICES.items():
        value = getattr(config, attr)
        if value not in choices:
            key = "behaviour.model" if attr == "behaviour_model" else f"embed.{attr}"
            raise UsageError(f"{source}: {key} = {value!r}: expected one of {', '.join(choices)}")
    positive = {"embed.batch_size": config.batch_size, "embed.part_size": config.part_size,
                "index.keep_versions": config.keep_versions}
    for where, value in positive.items():
        if value < 1:
            raise UsageError(f"{source}: {where} must be at least 1, not {value}")
    if config.workers is not None and config.workers < 0:
        raise UsageError(f"{source}: embed.workers must be 0 or more, not {config.workers}")
    fractions = {"embed.max_failure_rate": config.max_failure_rate,
                 "gates.max_item_drop": config.max_item_drop, "gates.recall_margin": config.recall_margin,
                 "gates.min_neighbour_overlap": config.min_neighbour_overlap}
    for where, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{source}: {where} must be between 0 and 1, not {value}")
    if not config.target_recall > 0:  # nan too
        raise UsageError(f"{source}: index.target_recall must be above 0, not {config.target_recall}")
    if config.memory_budget is not None:
        from index.factory import parse_size

        try:
            budget = parse_size(config.memory_budget)
        except InputError:
            budget = None
        if not budget:
            raise UsageError(f"{source}: index.memory_budget = {config.memory_budget!r}: expected a size "
                             "above 0 (examples: 512M, 8G, 1.5T)")


def load_config(path: str | Path) -> NightlyConfig:
    """Read a nightly TOML file; relative paths in it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config {path}: file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(raw, str(path), path.resolve().parent)


def as_dict(config: NightlyConfig) -> dict[str, Any]:
    """The config as JSON-friendly values, for the run report."""
    return {f.name: str(v) if isinstance(v := getattr(config, f.name), Path) else v for f in fields(config)}
