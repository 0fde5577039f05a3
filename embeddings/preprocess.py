"""How a model's input is prepared, from timm's data config only, never hand-written constants.

Two implementations of timm's eval transform (resize the shorter side to input / crop_pct, centre
crop, scale to [0, 1], normalise), giving the same numbers:
- `build_transform`: timm's own (torchvision, a float tensor), for the torch runtime;
- `ArrayTransform`: PIL and numpy (a float32 array), for onnxruntime, so that a job that runs an
  ONNX model never imports torch. `array_transform` falls back to timm's for a data config it
  does not cover (crop modes other than centre and squash, non-square centre crops, trimmed borders).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torchvision import transforms

PIL_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def build_transform(data_config: dict[str, Any]) -> transforms.Compose:
    """timm's eval transform (resize, centre crop, to tensor, normalise) for this data config."""
    from timm.data import create_transform

    return create_transform(**data_config, is_training=False)


def resize_side(data_config: dict[str, Any]) -> int:
    """The shorter-side resize target of timm's eval transform: floor(input size / crop_pct)."""
    side = max(data_config["input_size"][1:])
    return math.floor(side / float(data_config.get("crop_pct") or 1.0))


def draft_size(data_config: dict[str, Any]) -> tuple[int, int]:
    """The smallest decode size the eval transform needs: its resize target.

    JPEG draft mode may decode at 1/2, 1/4 or 1/8 scale as long as the result stays at least
    this large, so quality matches a full decode followed by the same resize.
    """
    side = resize_side(data_config)
    return side, side


class ArrayTransform:
    """timm's eval transform in PIL and numpy: an RGB image to a (3, H, W) float32 array."""

    def __init__(self, data_config: dict[str, Any]) -> None:
        height, width = data_config["input_size"][1:]
        self.crop = (int(height), int(width))
        self.squash = data_config.get("crop_mode") == "squash"
        crop_pct = float(data_config.get("crop_pct") or 1.0)
        self.scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
        self.resample = PIL_RESAMPLING[data_config.get("interpolation") or "bilinear"]
        self.mean = np.asarray(data_config["mean"], np.float32)
        self.std = np.asarray(data_config["std"], np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        if self.squash:
            size = self.scale[1], self.scale[0]
        else:  # torchvision's Resize(int): the shorter side to the target, the longer one truncated
            short = self.scale[0]
            if width <= height:
                size = short, int(short * height / width)
            else:
                size = int(short * width / height), short
        if size != image.size:
            image = image.resize(size, self.resample)
        pixels = _centre_crop(np.asarray(image, dtype=np.uint8), *self.crop)
        array = pixels.astype(np.float32)
        array /= 255.0  # the same float32 operations as ToTensor and Normalize, in the same order
        array -= self.mean
        array /= self.std
        return np.ascontiguousarray(array.transpose(2, 0, 1))


def _centre_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's CenterCrop on an (H, W, 3) array: zero padding first where the image is smaller."""
    h, w = pixels.shape[:2]
    if height > h or width > w:
        pad_h, pad_w = max(height - h, 0), max(width - w, 0)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = pixels.shape[:2]
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return pixels[top:top + height, left:left + width]


def array_transform(data_config: dict[str, Any]) -> Callable[[Image.Image], np.ndarray]:
    """The numpy eval transform for this data config: `ArrayTransform` where it matches timm's exactly."""
    height, width = data_config["input_size"][1:]
    mode = data_config.get("crop_mode") or "center"
    covered = (mode == "squash" or (mode == "center" and height == width)) and not data_config.get(
        "crop_border_pixels") and (data_config.get("interpolation") or "bilinear") in PIL_RESAMPLING
    if covered:
        return ArrayTransform(data_config)
    transform = build_transform(data_config)
    return lambda image: transform(image).numpy()
