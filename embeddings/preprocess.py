"""Preprocessing from timm's data config for the model, never hand-written constants."""

from __future__ import annotations

import math
from typing import Any

from timm.data import create_transform
from torchvision import transforms


def build_transform(data_config: dict[str, Any]) -> transforms.Compose:
    """timm's eval transform (resize, centre crop, to tensor, normalise) for this data config."""
    return create_transform(**data_config, is_training=False)


def draft_size(data_config: dict[str, Any]) -> tuple[int, int]:
    """The smallest decode size the eval transform needs: its resize target (input / crop_pct).

    JPEG draft mode may decode at 1/2, 1/4 or 1/8 scale as long as the result stays at least
    this large, so quality matches a full decode followed by the same resize.
    """
    height, width = data_config["input_size"][1:]
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    side = math.floor(max(height, width) / crop_pct)
    return side, side
