"""Small generated product-like images for job tests (the real-photo tests live in photos.py)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 70, 200), (230, 200, 40), (120, 40, 160), (20, 20, 20)]


def product_image(seed: int, size: int = 160) -> Image.Image:
    """A coloured shape on a light background, different for each seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randint(215, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    colour = rng.choice(COLOURS)
    box = [rng.randint(10, 50), rng.randint(10, 50), rng.randint(100, 150), rng.randint(100, 150)]
    shape = rng.choice(["ellipse", "rectangle", "polygon"])
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
    for _ in range(rng.randint(0, 4)):
        y = rng.randint(0, size)
        draw.line([(0, y), (size, y + rng.randint(-20, 20))], fill=rng.choice(COLOURS), width=3)
    return image


def write_images(folder: Path, count: int, start: int = 0, fmt: str = "jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"item{i:04d}.{fmt}"
        product_image(i).save(path)
        paths.append(path)
    return paths
