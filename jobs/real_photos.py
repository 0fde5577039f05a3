"""Real photos shipped inside scikit-image's wheel, and the augmented near-duplicates built from them.

The Foundation test (tests/test_near_duplicates.py) and the compression report's near-duplicate
recall use the same set: distinct photos, each as itself plus augmented copies (random crop, flip,
colour jitter, low-quality JPEG re-encoding). scikit-image is a dev dependency; without it the
compression report leaves near-duplicate recall out.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageEnhance

# `cat` repeats `chelsea`, and the stereo pair is one scene, so only its left view is used.
PHOTO_NAMES = [
    "astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field",
    "immunohistochemistry", "retina", "moon", "coins", "clock", "motorcycle",
]


def real_photo(name: str) -> Image.Image:
    import skimage.data

    array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
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


def near_duplicate_sets(
    n_variants: int = 4, seed: int = 0
) -> tuple[list[Image.Image], list[str], list[bool]]:
    """Every photo followed by its variants: images, the photo name of each, and whether it is a
    variant (the queries of the near-duplicate test)."""
    rng = random.Random(seed)
    images, labels, is_variant = [], [], []
    for name, photo in real_photos().items():
        images.append(photo)
        labels.append(name)
        is_variant.append(False)
        for _ in range(n_variants):
            images.append(augment(photo, rng))
            labels.append(name)
            is_variant.append(True)
    return images, labels, is_variant
