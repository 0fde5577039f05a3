"""JPEG decoding and preprocessing on the GPU, so that decoding does not cap a fast accelerator.

The workers only read and hash the bytes; nvJPEG (torchvision.io.decode_jpeg on cuda) decodes a
whole batch, and resize, centre crop and normalisation follow the model's timm data config as
tensor ops on the device. Images that nvJPEG cannot take (CMYK, progressive corner cases, other
formats) fall back to the CPU path one by one. The same code runs on the CPU (device "cpu"),
which is how it is tested where there is no GPU.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

with warnings.catch_warnings():
    # torchvision 0.29 flags its image codecs as moving to TorchCodec; nvJPEG decoding is still here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def resize_side(data_config: dict[str, Any]) -> int:
    """The shorter-side resize target of timm's eval transform (input size / crop_pct)."""
    side = max(data_config["input_size"][1:])
    return math.floor(side / float(data_config.get("crop_pct") or 1.0))


class TensorPreprocess:
    """timm's eval transform (resize shorter side, centre crop, normalise) on uint8 CHW tensors."""

    def __init__(self, data_config: dict[str, Any], device: torch.device) -> None:
        self.device = device
        self.size = resize_side(data_config)
        self.crop = list(data_config["input_size"][1:])
        self.interpolation = InterpolationMode(data_config.get("interpolation", "bicubic"))
        self.mean = torch.tensor(data_config["mean"], device=device).view(3, 1, 1)
        self.std = torch.tensor(data_config["std"], device=device).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = F.resize(image, [self.size], interpolation=self.interpolation, antialias=True)
        image = F.center_crop(image, self.crop)
        return (image.float().div_(255.0) - self.mean) / self.std


def decode_jpegs(blobs: list[bytes], preprocess: TensorPreprocess) -> list[torch.Tensor | None]:
    """Decode and preprocess a batch of JPEG bytes on `preprocess.device`; None where it failed."""
    if not blobs:
        return []
    tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    device = preprocess.device
    try:
        images = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:
        images = []
        for tensor in tensors:  # find the one that nvJPEG refused; keep the rest
            try:
                images.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device,
                                          apply_exif_orientation=True))
            except RuntimeError:
                images.append(None)
    return [preprocess(image) if image is not None else None for image in images]
