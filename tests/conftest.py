from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embeddings.artifact import write_artifact
from embeddings.backbone import Backbone
from embeddings.backbones import load_backbone
from embeddings.runtimes import with_runtime

# Two cores: keep torch from oversubscribing them when pytest runs.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lite0() -> Backbone:
    """The bundled, pretrained tf_efficientnet_lite0 (loaded once per test session)."""
    return load_backbone()


@pytest.fixture(scope="session")
def lite0_onnx(lite0: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lite0 as an ONNX artifact folder (a model SPEC): the same network on the same runtime as
    `--runtime onnx` with the default model, but a process resolves it without importing torch and
    timm (seconds per subprocess). Its model id is its own, so its vectors never mix with lite0's."""
    onnx_file = Path(with_runtime(lite0, "onnx", "cpu").extra["onnx_path"])  # the cached export
    return write_artifact(tmp_path_factory.mktemp("lite0-onnx") / "model", arch=lite0.arch,
                          data_config=lite0.data_config, feature_dim=lite0.dim, runtime="onnx",
                          precision="fp32", steps=[], teacher={"spec": lite0.spec, "id": lite0.model_id},
                          onnx_file=onnx_file)
