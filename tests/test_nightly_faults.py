"""Fault injection through the whole nightly (jobs/nightly): the run is killed with SIGKILL at every
stage boundary and in the middle of its writes (RECSYS_FAULT names the point; embeddings/faults.py),
its disk fills up while it writes parts and the index (RLIMIT_FSIZE), and its finished parts are
corrupted before it resumes. Every case ends the same way: the killed run changed nothing that is
served (CURRENT and the old version intact and loadable), and the next run resumes, redoes only
what was not finished, publishes, and leaves no staging folder or untracked version behind.

Deterministic: a killed run must die by SIGKILL at its named point (return code -9), so a point
that is never reached fails the test instead of passing it unexercised; nothing waits on time.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from embeddings.embedding_set import MANIFEST, WORK_DIR
from embeddings.faults import ENV
from index.store import IndexStore, load_version
from jobs.demo.data import DemoConfig, generate
from jobs.nightly.config import load_config
from jobs.nightly.run import run_nightly
from jobs.nightly.state import read_state

ROOT = Path(__file__).resolve().parents[1]
FIRST_ITEMS, ALL_ITEMS, PART = 8, 20, 4
CONFIG = """work_dir = "work"
store = "store"
[catalog]
file = "data/catalog.csv"
[embed]
model = "{model}"
runtime = "onnx"
device = "cpu"
batch_size = 4
workers = 0
part_size = 4
[index]
factory = "Flat"
[behaviour]
events = "data/events.csv"
model = "cooc"
[gates]
recall_margin = 1.0
min_neighbour_overlap = 0.0
"""


@pytest.fixture(scope="module")
def template(lite0_onnx, tmp_path_factory) -> Path:
    """A world after one good night of FIRST_ITEMS items; the catalogue then grows to ALL_ITEMS.
    The model is Lite0 as an ONNX artifact, so a killed run imports no torch and no timm."""
    root = tmp_path_factory.mktemp("nightly-template") / "world"
    data = generate(root / "data", DemoConfig(n_items=ALL_ITEMS, n_users=40, days=20, late_days=5, seed=4))
    catalog = pd.read_csv(data.catalog, dtype={"item_id": str})
    catalog.iloc[:FIRST_ITEMS].to_csv(data.catalog, index=False)
    (root / "nightly.toml").write_text(CONFIG.format(model=lite0_onnx))
    first = run_nightly(load_config(root / "nightly.toml"))
    assert first["status"] == "published"
    catalog.to_csv(data.catalog, index=False)  # the next night: 12 new items, 3 new parts
    return root


@pytest.fixture
def world(template, tmp_path) -> Path:
    """A copy of the template; the absolute paths its JSON files hold are moved with it."""
    root = tmp_path / "world"
    shutil.copytree(template, root, symlinks=True)
    for path in [root / "work" / "state.json", *root.glob("store/versions/*/meta.json")]:
        path.write_text(path.read_text().replace(str(template), str(root)))
    return root


def serving(root: Path) -> str:
    return IndexStore(root / "store").current_version()


def run_killed(root: Path, fault: str | None = None,
               file_limit: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if fault:
        env[ENV] = fault

    def limit() -> None:
        if file_limit is not None:  # writes past it fail with EFBIG (Python ignores SIGXFSZ)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, "-m", "jobs", "nightly", "--config", str(root / "nightly.toml")],
                          cwd=ROOT, env=env, preexec_fn=limit, capture_output=True, text=True, timeout=600)


def part_stamps(root: Path) -> dict[str, int]:
    """Finished parts of the unfinished run (a part counts once its slice's _work files are there)."""
    run = (read_state(root / "work").get("in_progress") or {}).get("run_id")
    folder = root / "work" / "runs" / str(run) / "embeddings"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")
            if (folder / WORK_DIR / f"stats-{p.stem.split('-')[1]}.json").exists()}


def assert_old_version_serves(root: Path, old: str) -> None:
    assert serving(root) == old
    loaded = load_version(root / "store")  # checksums verified: nothing served was touched
    assert loaded.version == old and len(loaded.items) == FIRST_ITEMS


def assert_resumes_and_publishes(root: Path, old: str, kept: dict[str, int]) -> dict:
    report = run_nightly(load_config(root / "nightly.toml"))
    store = IndexStore(root / "store")
    assert report["status"] == "published" and serving(root) == report["published"] != old
    assert len(load_version(store.root).items) == ALL_ITEMS
    embedded = next(s for s in report["stages"] if s["name"] == "embed")
    assert embedded["total"] == ALL_ITEMS and embedded["failed"] == 0
    assert embedded["reused"] + embedded["computed"] == ALL_ITEMS
    folder = root / "work" / "runs" / report["run_id"] / "embeddings"
    for name, stamp in kept.items():  # parts finished before the kill were not redone
        assert (folder / name).stat().st_mtime_ns == stamp, f"{name} was written again"
    # nothing a crash left behind: no staging folder, no version but the old, the new and theirs
    assert not list((store.root / "versions").glob(".tmp-*"))
    assert set(store.version_ids()) <= {old, report["published"]} | set(store.history())
    assert "in_progress" not in read_state(root / "work")
    return report


# Where a run dies, and whether the new version was already published when it did.
KILL_POINTS = [
    ("nightly:started", False),
    ("write:part-*.parquet#2", False),  # the second new part written, not yet renamed
    ("write:stats-*.json#3", False),  # a slice's part written, its stats not yet
    ("write:embedding_set.json", False),  # every part done, the set not yet marked complete
    ("nightly:embedded", False),
    ("version-file:items.parquet", False),  # index.faiss written in staging, the rest not
    ("version:commit#1", False),  # the index version's meta.json written, the folder not renamed
    ("nightly:built", False),  # committed, not yet recorded as a candidate
    ("nightly:indexed", False),
    ("version-file:behaviour", False),  # the behaviour version being staged
    ("nightly:fitted", False),
    ("nightly:gated", False),
    ("write:CURRENT", False),  # CURRENT's new text written under its temporary name only
    ("nightly:published", True),
    ("nightly:recorded", True),
]


@pytest.mark.parametrize(("fault", "published"), KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_kill_9(world, fault, published) -> None:
    old = serving(world)
    killed = run_killed(world, fault)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {fault}: {killed.stderr[-2000:]}"
    if published:  # killed after the switch: the new version serves, the old one is kept for rollback
        assert serving(world) != old and old in IndexStore(world / "store").version_ids()
        load_version(world / "store")
    else:
        assert_old_version_serves(world, old)
    kept = part_stamps(world)
    report = assert_resumes_and_publishes(world, old, kept)
    if not published and fault != "nightly:started":
        assert report["resumed"]


@pytest.mark.parametrize(("what", "limit"), [("parts", 8_000), ("index", 60_000)])
def test_disk_full(world, what, limit) -> None:
    """Writes past `limit` bytes fail: a part (about 21 kB) or index.faiss (about 100 kB)."""
    old = serving(world)
    failed = run_killed(world, file_limit=limit)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert "File too large" in failed.stderr
    report_name = "part-" if what == "parts" else "index.faiss"
    assert report_name in failed.stderr, failed.stderr[-1000:]
    assert_old_version_serves(world, old)
    store = IndexStore(world / "store")
    assert not list((store.root / "versions").glob(".tmp-*"))  # the failed writer cleaned up after itself
    # no temporary file half written under a part's name: every part there reads
    run = read_state(world / "work")["in_progress"]["run_id"]
    folder = world / "work" / "runs" / run / "embeddings"
    assert not (folder / MANIFEST).exists() or what == "index"
    assert not list(folder.glob(".*.tmp-*"))
    assert_resumes_and_publishes(world, old, part_stamps(world))


def test_corrupted_parts_are_redone(world) -> None:
    """A run dies after writing parts; two of them are then corrupted on disk (a bad sector, a copy
    cut short). The next run redoes those slices and keeps the intact ones."""
    old = serving(world)
    killed = run_killed(world, "nightly:embedded")
    assert killed.returncode == -signal.SIGKILL
    run = read_state(world / "work")["in_progress"]["run_id"]
    folder = world / "work" / "runs" / run / "embeddings"
    (folder / MANIFEST).unlink()  # as if it died before the set was marked complete
    parts = sorted(folder.glob("part-*.parquet"))
    parts[1].write_bytes(parts[1].read_bytes()[:100])
    stats = folder / WORK_DIR / f"stats-{parts[3].stem.split('-')[1]}.json"
    stats.write_text("{")
    kept = {p.name: p.stat().st_mtime_ns for p in parts if p not in (parts[1], parts[3])}
    report = assert_resumes_and_publishes(world, old, kept)
    embedded = next(s for s in report["stages"] if s["name"] == "embed")
    assert embedded["computed"] + embedded["reused"] == ALL_ITEMS
    assert json.loads((folder / MANIFEST).read_text())["counts"]["total"] == ALL_ITEMS
