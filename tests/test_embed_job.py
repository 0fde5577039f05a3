"""The batch embed job: files on disk to an embedding set, per-item failures, the failure policy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embeddings.catalog import catalog_from_folder, read_catalog
from embeddings.embedding_set import read_embedding_set
from embeddings.errors import InputError
from embeddings.runner import EmbedFailed, EmbedOptions, embed_catalog
from tests.imagegen import write_images

FAST = dict(batch_size=4, workers=1, progress=False)


def test_folder_to_embedding_set_with_one_corrupt_image(tmp_path, lite0) -> None:
    images = tmp_path / "images"
    write_images(images / "shoes", 5)
    (images / "shoes" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    catalog = catalog_from_folder(images)
    assert "shoes/item0000" in set(catalog["item_id"])

    report = embed_catalog(catalog, tmp_path / "set", lite0, EmbedOptions(max_failure_rate=0.5, **FAST))
    assert report["counts"] == {"total": 6, "computed": 5, "reused": 0, "failed": 1}
    result = read_embedding_set(tmp_path / "set")
    assert sorted(result.item_ids) == [f"shoes/item{i:04d}" for i in range(5)]
    assert result.vectors.shape == (5, 1280)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert all(len(s) == 64 for s in result.image_sha256)
    failures = result.failures()
    assert failures["item_id"].tolist() == ["shoes/broken"]
    assert failures["error_type"].tolist() == ["decode_error"]
    manifest = json.loads((tmp_path / "set" / "embedding_set.json").read_text())
    assert manifest["model"]["id"] == lite0.model_id
    assert manifest["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert set(manifest["timings"]["seconds"]) == {"read", "decode", "model", "write"}
    # The same run into the same folder is already complete: nothing is redone.
    again = embed_catalog(catalog, tmp_path / "set", lite0, EmbedOptions(max_failure_rate=0.5, **FAST))
    assert again["created_at"] == manifest["created_at"]


def test_too_many_failures_leave_the_set_unmarked(tmp_path, lite0) -> None:
    write_images(tmp_path / "images", 3)
    for i in range(2):
        (tmp_path / "images" / f"bad{i}.png").write_bytes(b"garbage")
    catalog = catalog_from_folder(tmp_path / "images")
    with pytest.raises(EmbedFailed) as info:
        embed_catalog(catalog, tmp_path / "set", lite0, EmbedOptions(max_failure_rate=0.05, **FAST))
    assert info.value.report["counts"]["failed"] == 2
    assert "2 of 5 items failed" in str(info.value)
    assert not (tmp_path / "set" / "embedding_set.json").exists()
    assert len(pd.read_parquet(tmp_path / "set" / "failures.parquet")) == 2
    with pytest.raises(InputError, match="not a complete embedding set"):
        read_embedding_set(tmp_path / "set")


def test_catalog_errors_name_file_and_row(tmp_path) -> None:
    csv = tmp_path / "catalog.csv"
    csv.write_text("item_id,image\na,a.jpg\nb,b.jpg\na,c.jpg\n")
    with pytest.raises(InputError, match=r"catalog.csv: row 3: item_id 'a' appears more than once"):
        read_catalog(csv)
    csv.write_text("item_id,picture\na,a.jpg\n")
    with pytest.raises(InputError, match="missing column 'image'"):
        read_catalog(csv)
    csv.write_text("item_id,image,category\na,a.jpg,shoes\nb,,bags\n")
    with pytest.raises(InputError, match="row 2: empty image for item 'b'"):
        read_catalog(csv)
    csv.write_text("item_id,image,category\n7,sub/a.jpg,shoes\n")
    frame = read_catalog(csv)
    assert frame.loc[0, "item_id"] == "7" and frame.loc[0, "image"] == str(tmp_path / "sub" / "a.jpg")
    assert frame.loc[0, "category"] == "shoes"
    with pytest.raises(InputError, match="file not found"):
        read_catalog(tmp_path / "nope.parquet")


def test_tensor_jpeg_path_matches_the_pil_path(tmp_path, lite0) -> None:
    """The GPU decoding path (nvJPEG + tensor preprocessing), run here on the CPU, gives the same
    vectors as PIL decoding, and still falls back for PNGs and fails corrupt files alone."""
    write_images(tmp_path / "images", 6)
    write_images(tmp_path / "images", 2, start=6, fmt="png")
    (tmp_path / "images" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    catalog = catalog_from_folder(tmp_path / "images")
    common = dict(batch_size=5, workers=0, progress=False, max_failure_rate=0.5, draft_decode=False)
    embed_catalog(catalog, tmp_path / "pil", lite0, EmbedOptions(gpu_decode=False, **common))
    report = embed_catalog(catalog, tmp_path / "tensor", lite0, EmbedOptions(gpu_decode=True, **common))
    assert report["counts"] == {"total": 9, "computed": 8, "reused": 0, "failed": 1}
    pil, tensor = read_embedding_set(tmp_path / "pil"), read_embedding_set(tmp_path / "tensor")
    assert pil.item_ids.tolist() == tensor.item_ids.tolist()
    agreement = np.sum(pil.vectors * tensor.vectors, axis=1)
    print("tensor vs PIL path cosine, min", agreement.min())
    assert agreement.min() > 0.99
    assert tensor.failures()["item_id"].tolist() == ["bad"]
