"""`recsys compress` end to end on a small catalogue, and its artifact run by `recsys embed --model`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from embeddings.backbones import load_backbone
from embeddings.embedding_set import read_embedding_set
from embeddings.runtimes import make_embedder
from jobs.cli import main
from tests.imagegen import write_images


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue")
    write_images(folder, 16)
    return folder


def test_compress_distils_projects_and_the_artifact_runs_in_the_embed_job(catalogue_dir, tmp_path,
                                                                          capsys) -> None:
    artifact = tmp_path / "artifact"
    code = main(["compress", "--images", str(catalogue_dir), "--out", str(artifact),
                 "--student", "tf_efficientnet_lite0@128", "--distill-steps", "3", "--batch-size", "4",
                 "--quantize", "none", "--dim", "8", "--holdout", "0.4", "--no-photos",
                 "--throughput-images", "2"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((artifact / "model.json").read_text())
    assert record["dim"] == 8 and record["input_size"] == [3, 128, 128] and record["engine"] == "onnx"
    assert [s["step"] for s in record["steps"]] == ["student", "distill", "project"]
    assert record["teacher"]["arch"] == "tf_efficientnet_lite0"
    assert 0 <= record["fidelity"]["overlap10"] <= 1
    report = json.loads((artifact / "report.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names[0] == "teacher fp32 torch" and len(names) == 4, names
    student = report["variants"][2]
    assert student["gmacs"] < report["variants"][0]["gmacs"] / 2.5  # 128 px instead of 224
    assert (artifact / "report.png").stat().st_size > 1000
    distilled = next(s for s in report["steps"] if s["step"] == "distill")
    assert distilled["steps"] == 3 and distilled["loss_first"] > 0

    # The distilled student's torch weights (safetensors) and its ONNX export give the same vectors.
    fp32_folder = artifact / "variants" / "student-fp32"
    images = [Image.open(p).convert("RGB") for p in sorted(catalogue_dir.glob("*.jpg"))[:4]]
    onnx_vectors = make_embedder(load_backbone(str(fp32_folder)), "cpu").embed_images(images)
    torch_backbone = load_backbone(str(fp32_folder))
    torch_backbone.extra.pop("onnx_path")
    torch_vectors = make_embedder(torch_backbone, "cpu").embed_images(images)
    assert (onnx_vectors * torch_vectors).sum(axis=1).min() >= 0.9999

    # The final artifact through the embed job, compared with the same artifact run in process.
    out = tmp_path / "set"
    assert main(["embed", "--images", str(catalogue_dir), "--out", str(out), "--model", str(artifact),
                 "--workers", "0", "--no-progress"]) == 0
    result = read_embedding_set(out)
    assert result.vectors.shape == (16, 8)
    expected = make_embedder(load_backbone(str(artifact)), "cpu").embed_images(
        [Image.open(catalogue_dir / f"{i}.jpg").convert("RGB") for i in result.item_ids])
    assert (result.vectors * expected).sum(axis=1).min() >= 0.999
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--teacher", "no_such_model_xyz"], "unknown model 'no_such_model_xyz'"),
    (["--prune", "1.5"], "--prune 1.5"),
    (["--prune", "0"], "--prune 0"),
    (["--student", "tf_efficientnet_lite0@abc"], "--student"),
    (["--dim", "0"], "--dim 0"),
])
def test_bad_input_exits_2_with_a_message_naming_it(catalogue_dir, tmp_path, capsys, argv, message) -> None:
    code = main(["compress", "--images", str(catalogue_dir), "--out", str(tmp_path / "a"), "--no-photos",
                 *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_an_artifact_folder_with_a_missing_file_is_refused(tmp_path, capsys) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"arch": "tf_efficientnet_lite0", "data_config": {},
                                                   "dim": 1280, "engine": "onnx",
                                                   "files": {"onnx": "model.onnx"}}))
    write_images(tmp_path / "images", 2)
    code = main(["embed", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "set"),
                 "--model", str(folder)])
    assert code == 2
    assert "model.onnx named in model.json is missing" in capsys.readouterr().err
