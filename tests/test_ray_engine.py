"""`recsys embed --engine ray` on a real local Ray instance: same vectors as the local engine, resumes."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import ray

from embeddings.catalog import catalog_from_folder
from embeddings.embedding_set import read_embedding_set
from embeddings.engines import embed
from embeddings.ray_engine import EmbedActor, _without_torch
from embeddings.runner import EmbedOptions
from embeddings.runtimes import with_runtime
from tests.imagegen import write_images


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1 << 29)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine_and_resumes(tmp_path, lite0, local_ray) -> None:
    images = tmp_path / "images"
    write_images(images, 40)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    catalog = catalog_from_folder(images)
    options = EmbedOptions(batch_size=8, part_size=10, workers=0, progress=False, max_failure_rate=0.1)
    report = embed(catalog, tmp_path / "ray", lite0, options, engine="ray", runtime="onnx")
    assert report["engine"] == "ray"
    assert report["counts"] == {"total": 41, "computed": 40, "reused": 0, "failed": 1}
    embed(catalog, tmp_path / "local", lite0, options, engine="local", runtime="onnx")

    remote, local = read_embedding_set(tmp_path / "ray"), read_embedding_set(tmp_path / "local")
    assert remote.item_ids.tolist() == local.item_ids.tolist()
    cosines = np.sum(remote.vectors * local.vectors, axis=1)
    assert cosines.min() >= 0.9999
    assert remote.failures()["item_id"].tolist() == ["broken"]

    # A crash after part 2: its file and the manifest are gone. The rerun redoes only that part.
    out = tmp_path / "ray"
    lost = "part-00002.parquet"
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name != lost}
    (out / lost).unlink()
    (out / "embedding_set.json").unlink()
    again = embed(catalog, out, lite0, options, engine="ray", runtime="onnx")
    assert again["counts"] == report["counts"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name != lost} == kept
    resumed = read_embedding_set(out)
    assert resumed.item_ids.tolist() == local.item_ids.tolist()
    assert np.sum(resumed.vectors * local.vectors, axis=1).min() >= 0.9999


def test_embed_actor_runs_the_drivers_export_or_resolves_the_spec_without_it(lite0, tmp_path) -> None:
    """An actor runs the ONNX file the driver hands it; on a machine without that file (another
    node) it resolves the SPEC itself, and both give the same vectors."""
    cached = with_runtime(lite0, "onnx", "cpu")
    driver_file = tmp_path / "driver.onnx"
    shutil.copyfile(cached.extra["onnx_path"], driver_file)
    exported = _without_torch(dataclasses.replace(cached, extra={**cached.extra,
                                                                 "onnx_path": str(driver_file)}))
    pixels = np.random.default_rng(0).normal(size=(2, 3, *lite0.data_config["input_size"][1:]))
    batch = {"row": np.arange(2), "status": np.array(["ok", "ok"], dtype=object),
             "pixels": pixels.astype(np.float32)}

    handed = EmbedActor(lite0.spec, "onnx", "cpu", exported)
    assert handed.embedder.onnx_path == driver_file
    driver_file.unlink()
    resolved = EmbedActor(lite0.spec, "onnx", "cpu", exported)
    assert resolved.embedder.onnx_path == Path(cached.extra["onnx_path"])
    assert np.allclose(handed(batch)["embedding"], resolved(batch)["embedding"], atol=1e-6)
