"""The torch runtime: a backbone on batches; device choice, autocast and channels_last on GPUs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from embeddings.backbone import Backbone
from embeddings.errors import InputError
from embeddings.preprocess import build_transform
from embeddings.vectors import l2_normalize

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when there is a GPU and the CPU otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available here")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"--device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


class TorchEmbedder:
    """Turns preprocessed image tensors (or PIL images) into L2-normalised float32 vectors."""

    def __init__(self, backbone: Backbone, device: str = "auto", *, compile: bool = False) -> None:
        self.backbone = backbone
        self.device = resolve_device(device)
        self.transform = build_transform(backbone.data_config)
        model = backbone.torch_model().eval().to(self.device)
        if self.device.type == "cuda":
            # channels_last feeds the tensor cores; autocast below picks bf16 where supported.
            model = model.to(memory_format=torch.channels_last)
        # torch.compile pays a warm-up of tens of seconds; worth it for millions of images on a GPU.
        self.model = torch.compile(model) if compile else model
        self.autocast_dtype = (
            torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
        )

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @torch.inference_mode()
    def embed_tensors(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """A (n, 3, H, W) batch, already preprocessed, to (n, dim) unit vectors."""
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        if self.device.type == "cuda":
            if batch.device != self.device:  # already there when the GPU decoded the JPEGs
                batch = batch.pin_memory().to(self.device, non_blocking=True)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                features = self.model(batch)
        else:
            features = self.model(batch)
        return l2_normalize(features.float().cpu().numpy())

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB PIL images to one preprocessed (n, 3, H, W) batch."""
        return torch.stack([self.transform(image) for image in images])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images to (n, dim) unit vectors, with the backbone's own preprocessing."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_tensors(self.preprocess(images))
