"""Demo data: a catalogue of drawn product images and users whose tastes follow hidden styles.

Every item has four style attributes that are drawn with PIL into a product-like picture (shape,
colour, pattern, background) and three that no picture shows (maker, line, fit). Every user likes
one shape, one colour and, mildly, one pattern, and likewise one maker, one line and one fit;
`DemoConfig.looks` in [0, 1] says how much of a user's taste is the visible part (1: only looks
matter, as in a shop of posters; 0: looks say nothing, the picture carries no hint of taste).
Over `days` days users open sessions in which they view items, click some and buy fewer, picking
by affinity (taste x item appeal) among the items on sale by then. A share of the items arrive
late (cold start): nobody can have touched them before they appear. Deterministic by seed.

Files written to `out_dir`: `images/<item_id>.png`, `catalog.csv` (item_id, image, category,
title, in_stock), `events.csv` (user_id, item_id, timestamp, event), `attributes.csv` (the
hidden attributes and arrival time) and `shoppers.csv` (each user's tastes): the last two for tests
and analysis (the benchmark's ceiling); the recommender never reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond")
CATEGORY_OF_SHAPE = {"circle": "hats", "square": "bags", "triangle": "lamps", "star": "toys",
                     "ring": "jewellery", "diamond": "shoes"}
COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 160, 60), "yellow": (230, 200, 40),
           "purple": (130, 50, 170), "orange": (240, 130, 30)}
PATTERNS = ("solid", "stripes", "dots", "checks")
BACKGROUNDS = {"white": (245, 245, 245), "grey": (150, 150, 150), "beige": (225, 210, 180),
               "dark": (40, 40, 45)}
EVENT_PROBABILITIES = {"click": 0.35, "purchase": 0.25}  # purchase: of the clicked items
START = 1_767_225_600  # 2026-01-01T00:00:00Z
SIZE = 224
MAKERS = tuple(f"maker{i}" for i in range(6))  # invisible attributes: never drawn
LINES = tuple(f"line{i}" for i in range(6))
FITS = ("slim", "regular", "loose", "relaxed")


@dataclass(frozen=True)
class DemoConfig:
    n_items: int = 300
    n_users: int = 400
    days: int = 60
    late_frac: float = 0.2  # share of items that arrive in the last `late_days`
    late_days: int = 14
    sessions_per_user: float = 6.0
    views_per_session: float = 6.0
    taste_strength: float = 2.2  # how sharply users prefer the items that match their taste
    looks: float = 0.5  # share of taste that the pictures show: 0 looks say nothing, 1 only looks count
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.looks <= 1.0:
            raise ValueError(f"DemoConfig.looks {self.looks}: must lie in [0, 1]")


@dataclass
class DemoData:
    catalog: Path
    events: Path
    attributes: Path
    images: Path
    shoppers: Path


def generate(out_dir: str | Path, config: DemoConfig | None = None) -> DemoData:
    """Write the demo catalogue, images and events; the same seed gives the same files."""
    config = config or DemoConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    items = make_items(config, rng)
    for row in items.itertuples():
        draw_item(row.shape, row.colour, row.pattern, row.background, int(row.draw_seed)).save(
            out / "images" / f"{row.item_id}.png", optimize=False)
    catalog = pd.DataFrame({
        "item_id": items.item_id,
        "image": "images/" + items.item_id + ".png",
        "category": items["shape"].map(CATEGORY_OF_SHAPE),
        "title": items.colour + " " + items.pattern + " " + items["shape"],
        "in_stock": items.in_stock,
    })
    events, shoppers = make_events(items, config, rng)
    paths = DemoData(out / "catalog.csv", out / "events.csv", out / "attributes.csv", out / "images",
                     out / "shoppers.csv")
    catalog.to_csv(paths.catalog, index=False)
    events.to_csv(paths.events, index=False)
    shoppers.to_csv(paths.shoppers, index=False)
    items.drop(columns=["draw_seed"]).to_csv(paths.attributes, index=False)
    return paths


def make_items(config: DemoConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = config.n_items
    late = rng.random(n) < config.late_frac
    end = config.days * 86400
    arrival = np.where(late, rng.uniform(end - config.late_days * 86400, end - 86400, n), 0.0)
    return pd.DataFrame({
        "item_id": [f"item{i:05d}" for i in range(n)],
        "shape": rng.choice(SHAPES, n),
        "colour": rng.choice(list(COLOURS), n),
        "pattern": rng.choice(PATTERNS, n),
        "background": rng.choice(list(BACKGROUNDS), n),
        "maker": rng.choice(MAKERS, n),
        "line": rng.choice(LINES, n),
        "fit": rng.choice(FITS, n),
        "appeal": rng.lognormal(0.0, 0.6, n),  # some items sell better whatever the taste
        "in_stock": rng.random(n) > 0.1,
        "arrival": (START + arrival).astype(np.int64),
        "draw_seed": rng.integers(0, 2**31, n),
    })


def make_events(items: pd.DataFrame, config: DemoConfig,
                rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, each shopper's tastes)."""
    shapes = items["shape"].to_numpy()
    colours = items.colour.to_numpy()
    patterns = items.pattern.to_numpy()
    makers, lines, fits = items.maker.to_numpy(), items.line.to_numpy(), items.fit.to_numpy()
    arrival = items.arrival.to_numpy()
    appeal = items.appeal.to_numpy()
    rows: list[tuple[str, str, int, str]] = []
    tastes: list[tuple[str, ...]] = []
    end = START + config.days * 86400
    for u in range(config.n_users):
        user = f"user{u:05d}"
        likes_shape, likes_colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        likes_pattern = rng.choice(PATTERNS)
        likes_maker, likes_line, likes_fit = rng.choice(MAKERS), rng.choice(LINES), rng.choice(FITS)
        tastes.append((user, likes_shape, likes_colour, likes_pattern, likes_maker, likes_line, likes_fit))
        seen = ((shapes == likes_shape) * 1.0 + (colours == likes_colour) * 1.0
                + (patterns == likes_pattern) * 0.5)
        unseen = (makers == likes_maker) * 1.0 + (lines == likes_line) * 1.0 + (fits == likes_fit) * 0.5
        match = config.looks * seen + (1.0 - config.looks) * unseen
        affinity = appeal * np.exp(config.taste_strength * match)
        n_sessions = max(1, rng.poisson(config.sessions_per_user))
        for start in np.sort(rng.uniform(START, end - 3600, n_sessions)):
            on_sale = arrival <= start
            # new arrivals are promoted for a week, as shops do
            fresh = np.where((start - arrival) < 7 * 86400, 1.5, 1.0)
            weights = np.where(on_sale, affinity * fresh, 0.0)
            n_views = min(int(on_sale.sum()), max(1, rng.poisson(config.views_per_session)))
            viewed = rng.choice(len(items), n_views, replace=False, p=weights / weights.sum())
            t = float(start)
            for item in viewed:
                t += rng.uniform(10, 120)
                item_id = items.item_id.iat[item]
                rows.append((user, item_id, int(t), "view"))
                liked = match[item] >= 1.0
                if rng.random() < EVENT_PROBABILITIES["click"] * (1.6 if liked else 0.6):
                    rows.append((user, item_id, int(t + rng.uniform(2, 30)), "click"))
                    if rng.random() < EVENT_PROBABILITIES["purchase"] * (1.5 if liked else 0.5):
                        rows.append((user, item_id, int(t + rng.uniform(30, 300)), "purchase"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    shoppers = pd.DataFrame(tastes, columns=["user_id", "shape", "colour", "pattern", "maker", "line", "fit"])
    return events.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True), shoppers


def draw_item(shape: str, colour: str, pattern: str, background: str, seed: int) -> Image.Image:
    """A product shot: one coloured, patterned object on a plain background, slightly jittered."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[background])
    mask = Image.new("L", (SIZE, SIZE), 0)
    cx, cy = SIZE / 2 + rng.uniform(-12, 12), SIZE / 2 + rng.uniform(-12, 12)
    r = rng.uniform(62, 82)
    _draw_shape(ImageDraw.Draw(mask), shape, cx, cy, r, float(rng.uniform(-0.3, 0.3)))
    fill = _pattern_layer(pattern, COLOURS[colour], int(rng.integers(10, 18)))
    image.paste(fill, (0, 0), mask)
    return image


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, turn: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        inner = r * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, turn + math.pi / 4), fill=255)
    elif shape == "diamond":
        draw.polygon(_polygon(cx, cy, r, 4, turn), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.1, 3, turn - math.pi / 2), fill=255)
    elif shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = turn - math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _polygon(cx: float, cy: float, r: float, sides: int, turn: float) -> list[tuple[float, float]]:
    angles = [turn + 2 * math.pi * i / sides for i in range(sides)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def _pattern_layer(pattern: str, colour: tuple[int, int, int], step: int) -> Image.Image:
    """The object's surface: its colour with a lighter pattern on top."""
    layer = Image.new("RGB", (SIZE, SIZE), colour)
    draw = ImageDraw.Draw(layer)
    light = tuple(min(255, c + 90) for c in colour)
    if pattern == "stripes":
        for x in range(-SIZE, SIZE, step):
            draw.line([(x, 0), (x + SIZE, SIZE)], fill=light, width=max(2, step // 3))
    elif pattern == "dots":
        for x in range(0, SIZE, step):
            for y in range(0, SIZE, step):
                draw.ellipse((x, y, x + step / 2.5, y + step / 2.5), fill=light)
    elif pattern == "checks":
        for x in range(0, SIZE, step):
            for y in range(0, SIZE, step):
                if (x // step + y // step) % 2 == 0:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=light)
    elif pattern != "solid":
        raise ValueError(f"unknown pattern {pattern!r}")
    return layer
