"""A nightly job never loses finished work: resume after kill -9, and incremental reuse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from embeddings.catalog import catalog_from_folder
from embeddings.embedding_set import read_embedding_set
from embeddings.runner import EmbedOptions, embed_catalog
from embeddings.runtimes import with_runtime
from jobs.cli import main
from tests.imagegen import product_image, write_images


def embed_command(images, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs", "embed", "--images", str(images), "--out", str(out),
            "--part-size", "8", "--batch-size", "8", "--workers", "1", "--runtime", "onnx",
            "--no-progress", *extra]


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path, lite0, lite0_onnx) -> None:
    images = tmp_path / "images"
    write_images(images, 96)
    out = tmp_path / "killed"
    model = ("--model", str(lite0_onnx))  # Lite0's ONNX export as an artifact: no torch, no timm to import
    # The job kills itself (SIGKILL) as it renames its fourth part into place (embeddings/faults.py).
    job = subprocess.run(embed_command(images, out, *model), capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RECSYS_FAULT": "write:part-*.parquet#4"})
    assert job.returncode == -signal.SIGKILL, job.stderr[-2000:]
    assert len(list(out.glob("part-*.parquet"))) == 3
    assert list(out.glob(".part-*.parquet.tmp-*"))  # the fourth, written but never renamed
    assert not (out / "embedding_set.json").exists()

    rerun = subprocess.run(embed_command(images, out, *model), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr

    reference = tmp_path / "reference"
    embed_catalog(catalog_from_folder(images), reference, with_runtime(lite0, "onnx", "cpu"),
                  EmbedOptions(part_size=8, batch_size=8, workers=1, progress=False))
    resumed, whole = read_embedding_set(out), read_embedding_set(reference)
    assert len(resumed.item_ids) == len(set(resumed.item_ids)) == 96
    assert resumed.item_ids.tolist() == whole.item_ids.tolist()
    assert np.min(np.sum(resumed.vectors * whole.vectors, axis=1)) > 0.99999
    assert resumed.manifest["counts"] == {"total": 96, "computed": 96, "reused": 0, "failed": 0}


def test_previous_set_reuses_unchanged_images(tmp_path, lite0) -> None:
    images = tmp_path / "images"
    write_images(images, 10)
    backbone = with_runtime(lite0, "onnx", "cpu")
    options = dict(part_size=4, batch_size=4, workers=0, progress=False)
    embed_catalog(catalog_from_folder(images), tmp_path / "night1", backbone, EmbedOptions(**options))

    product_image(500).save(images / "item0003.jpg")  # changed image
    product_image(501).save(images / "item0007.jpg")  # changed image
    (images / "item0009.jpg").unlink()  # removed item
    write_images(images, 2, start=10)  # two new items
    report = embed_catalog(catalog_from_folder(images), tmp_path / "night2", backbone,
                           EmbedOptions(previous=tmp_path / "night1", **options))
    assert report["counts"] == {"total": 11, "computed": 4, "reused": 7, "failed": 0}

    old, new = read_embedding_set(tmp_path / "night1"), read_embedding_set(tmp_path / "night2")
    old_vectors = dict(zip(old.item_ids, old.vectors))
    new_vectors = dict(zip(new.item_ids, new.vectors))
    assert "item0009" not in new_vectors and "item0011" in new_vectors
    for item in ("item0000", "item0005", "item0008"):
        np.testing.assert_array_equal(new_vectors[item], old_vectors[item])
    assert float(new_vectors["item0003"] @ old_vectors["item0003"]) < 0.999


def test_a_different_run_into_a_used_folder_is_refused(tmp_path, lite0, capsys) -> None:
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 4)
    out = tmp_path / "out"
    embed_catalog(catalog_from_folder(tmp_path / "a"), out, lite0, EmbedOptions(workers=0, progress=False))
    assert main(embed_command(tmp_path / "b", out)[3:]) == 2
    assert "already holds a complete embedding set of another run" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,message", [
    ("--batch-size", "0", "--batch-size must be at least 1"),
    ("--max-failure-rate", "2", "--max-failure-rate must be between 0 and 1"),
    ("--model", "no_such_model_xyz", "unknown model 'no_such_model_xyz'"),
])
def test_bad_options_exit_2(tmp_path, capsys, flag, value, message) -> None:
    write_images(tmp_path / "a", 1)
    assert main(embed_command(tmp_path / "a", tmp_path / "out", flag, value)[3:]) == 2
    assert message in capsys.readouterr().err
