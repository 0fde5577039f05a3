from __future__ import annotations

import pytest
import torch

from embeddings.backbone import Backbone
from embeddings.backbones import load_backbone

# Two cores: keep torch from oversubscribing them when pytest runs.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lite0() -> Backbone:
    """The bundled, pretrained tf_efficientnet_lite0 (loaded once per test session)."""
    return load_backbone()
