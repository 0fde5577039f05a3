"""Real photos from scikit-image's wheel, and the augmented variants the retrieval tests use."""

from __future__ import annotations

import io
import random

import numpy as np
import skimage.data
from PIL import Image, ImageEnhance

# Distinct real photos shipped inside scikit-image (no download). `cat` repeats `chelsea`,
# and the stereo pair is one scene, so only its left view is used.
PHOTO_NAMES = [
    "astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field",
    "immunohistochemistry", "retina", "moon", "coins", "clock", "motorcycle",
]


def real_photo(name: str) -> Image.Image:
    if name == "motorcycle":
        array = skimage.data.stereo_motorcycle()[0]
    else:
        array = getattr(skimage.data, name)()
    if array.dtype != np.uint8:
        array = (array * 255).astype(np.uint8) if array.max() <= 1 else array.astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def real_photos() -> dict[str, Image.Image]:
    return {name: real_photo(name) for name in PHOTO_NAMES}


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop, maybe a flip, colour jitter and a low-quality JPEG re-encode."""
    width, height = image.size
    scale = rng.uniform(0.65, 0.9)
    w, h = int(width * scale), int(height * scale)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    out = image.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=rng.randint(15, 35))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def variant_sets(n_variants: int = 4, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    """Each photo with `n_variants` augmented variants, and the photo name of each image."""
    rng = random.Random(seed)
    images, labels = [], []
    for name, photo in real_photos().items():
        for _ in range(n_variants):
            images.append(augment(photo, rng))
            labels.append(name)
    return images, labels
