"""The nightly's health report and drift gate (jobs/nightly/health.py), end to end: real images
through the bundled Lite0 on onnxruntime, a real store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from index.store import IndexStore
from jobs.cli import main
from tests.imagegen import write_images
from tests.test_nightly import write_config


def test_noise_images_stop_at_the_drift_gate_and_accept_drift_publishes(tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    paths = write_images(images, 40)  # random overlap@10 among 40 items: about 10/39
    config = str(write_config(tmp_path / "nightly.toml", 'images = "images"'))
    store = IndexStore(tmp_path / "store")
    reports = tmp_path / "work" / "reports"

    assert main(["nightly", "--config", config]) == 0
    first = store.current_version()
    run = json.loads(max(reports.glob("*.json")).read_text())
    gate = next(g for g in run["gates"] if g["name"] == "neighbour_overlap")
    assert gate["passed"] and gate["value"] is None  # nothing served before
    assert (reports / run["run_id"] / "health.json").is_file()
    assert (reports / run["run_id"] / "health.html").is_file()

    rng = np.random.default_rng(0)  # every image replaced by noise: the neighbours move
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(path)
    assert main(["nightly", "--config", config]) == 1
    assert "neighbour_overlap" in capsys.readouterr().err
    assert store.current_version() == first
    rejected = max(reports.glob("*.json"), key=lambda p: p.stat().st_mtime)
    run = json.loads(rejected.read_text())
    gate = next(g for g in run["gates"] if g["name"] == "neighbour_overlap")
    assert run["status"] == "rejected" and not gate["passed"] and gate["value"] < 0.5
    health = json.loads((reports / run["run_id"] / "health.json").read_text())
    assert health["drift"]["against"] == first and health["drift"]["neighbour_overlap@10"] == gate["value"]

    assert main(["nightly", "--config", config, "--accept-drift"]) == 0
    assert store.current_version() != first
    run = json.loads(max(reports.glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())
    gate = next(g for g in run["gates"] if g["name"] == "neighbour_overlap")
    assert run["status"] == "published" and gate["passed"] and gate["value"] < 0.5
    assert "accepted" in gate["detail"] and run["config"]["accept_drift"] is True
