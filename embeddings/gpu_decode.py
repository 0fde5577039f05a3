"""JPEG decoding and preprocessing on the GPU, so that decoding does not cap a fast accelerator.

The workers only read and hash the bytes; nvJPEG (torchvision.io.decode_jpeg on cuda) decodes a
whole batch, and resize, centre crop and normalisation follow the model's timm data config as
tensor ops on the device. Images that nvJPEG cannot take (CMYK, progressive corner cases, other
formats) fall back to the CPU path one by one. The same code runs on the CPU (device "cpu"),
which is how it is tested where there is no GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

with warnings.catch_warnings():
    # torchvision 0.29 flags its image codecs as moving to TorchCodec; nvJPEG decoding is still here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from embeddings.errors import ImageError
from embeddings.images import decode_image
from embeddings.loader import LoadedBatch
from embeddings.preprocess import resize_side


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


class DeferredJpegs:
    """Decodes the JPEGs a batch's workers left undecoded, on the model's device, into its pixels."""

    def __init__(self, data_config: dict[str, Any], device: torch.device,
                 transform: Callable[[Any], torch.Tensor]) -> None:
        self.preprocess = TensorPreprocess(data_config, device)
        self.transform = transform  # the CPU path, for the JPEGs nvJPEG refuses

    def decode_into(self, batch: LoadedBatch) -> None:
        """Decode the batch's deferred JPEGs and merge them, in row order, with the rest.

        A JPEG that nvJPEG refuses is decoded on the CPU instead; one that nothing can read fails.
        """
        device = self.preprocess.device
        decoded = iter(zip(batch.jpegs, decode_jpegs(batch.jpegs, self.preprocess)))
        ready = iter(batch.pixels if batch.pixels is not None else [])
        tensors = []
        for i, status in enumerate(batch.status):
            if status == "ok":
                tensors.append(next(ready).to(device))
            elif status == "jpeg":
                blob, tensor = next(decoded)
                if tensor is None:
                    try:
                        tensor = self.transform(decode_image(blob)).to(device)
                    except ImageError as exc:
                        batch.status[i], batch.errors[i] = "failed", (exc.error_type, exc.message)
                        continue
                batch.status[i] = "ok"
                tensors.append(tensor)
        batch.pixels = torch.stack(tensors) if tensors else None
        batch.jpegs = []
