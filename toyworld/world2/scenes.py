"""World 2's scenes: one upright flat shape on a flat background, 32 px, tag-style captions.

Built unlike world 1 on purpose (other shapes, colours, backgrounds, resolution and caption style), so that
defaults chosen on one world can be validated on the other.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32
SUPERSAMPLE = 4

SHAPES = ("triangle", "diamond", "bar", "crescent", "heart")
COLOURS = {
    "magenta": (225, 30, 205),
    "lime": (150, 240, 40),
    "teal": (0, 140, 140),
    "gold": (235, 175, 0),
    "pink": (255, 150, 185),
    "violet": (115, 60, 225),
    "crimson": (185, 10, 45),
}
BACKGROUNDS = {
    "black": (0, 0, 0),
    "white": (250, 250, 250),
    "slate": (70, 80, 100),
    "sand": (205, 185, 140),
}
STYLE_TAGS = ("icon", "flat", "simple", "clipart", "sticker")
MIN_CONTRAST = 90.0  # RGB distance below which a colour on a background is hard to see (skipped)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    cx: float
    cy: float
    radius: float

    def as_dict(self) -> dict:
        return asdict(self)


def visible(colour: str, background: str) -> bool:
    a, b = np.array(COLOURS[colour], float), np.array(BACKGROUNDS[background], float)
    return float(np.linalg.norm(a - b)) >= MIN_CONTRAST


def _polygon(shape: str, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(r * math.cos(t), r * math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(0, -r), (0.62 * r, 0), (0, r), (-0.62 * r, 0)]
    if shape == "bar":
        return [(-r, -0.32 * r), (r, -0.32 * r), (r, 0.32 * r), (-r, 0.32 * r)]
    raise ValueError(f"no polygon for {shape!r}")


def _heart(r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x * r / 17, (y + 2) * r / 17))
    return pts


def _draw(scene: Scene, mode: str, fg, bg) -> Image.Image:
    k = SUPERSAMPLE
    img = Image.new(mode, (IMAGE_SIZE * k, IMAGE_SIZE * k), bg)
    draw = ImageDraw.Draw(img)
    cx, cy, r = scene.cx * k, scene.cy * k, scene.radius * k
    if scene.shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        off = 0.6 * r
        draw.ellipse([cx - r + off, cy - r - 0.1 * r, cx + r + off, cy + r - 0.1 * r], fill=bg)
    else:
        outline = _heart(r) if scene.shape == "heart" else _polygon(scene.shape, r)
        draw.polygon([(cx + x, cy + y) for x, y in outline], fill=fg)
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)


def render_scene(scene: Scene) -> Image.Image:
    return _draw(scene, "RGB", COLOURS[scene.colour], BACKGROUNDS[scene.background])


def render_mask(scene: Scene) -> Image.Image:
    return _draw(scene, "L", 255, 0)


def make_scene(shape: str, colour: str, background: str, rng: np.random.Generator) -> Scene:
    radius = float(rng.uniform(7.0, 12.0))
    margin = radius + 1.0
    cx, cy = (float(rng.uniform(margin, IMAGE_SIZE - margin)) for _ in range(2))
    return Scene(shape, colour, background, cx, cy, radius)


def sample_scene(rng: np.random.Generator, exclude=()) -> Scene:
    """A uniformly random visible scene whose (shape, colour) pair is not in `exclude`."""
    excluded, colours, backgrounds = set(exclude), list(COLOURS), list(BACKGROUNDS)
    while True:
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = colours[rng.integers(len(colours))]
        background = backgrounds[rng.integers(len(backgrounds))]
        if (shape, colour) not in excluded and visible(colour, background):
            return make_scene(shape, colour, background, rng)


def tags(colour: str, shape: str, background: str | None = None) -> str:
    """The canonical tag caption: "magenta, triangle, black background"."""
    return ", ".join([colour, shape] + ([f"{background} background"] if background else []))


def random_caption(shape: str, colour: str, background: str, rng: np.random.Generator) -> str:
    """Training caption: the tags in a random order, the background tag sometimes left out, sometimes a
    style tag added (as tag-captioned data sets are)."""
    items = [colour, shape]
    if rng.random() >= 0.25:
        items.append(f"{background} background")
    if rng.random() < 0.3:
        items.append(STYLE_TAGS[int(rng.integers(len(STYLE_TAGS)))])
    if rng.random() < 0.5:
        items = [items[i] for i in rng.permutation(len(items))]
    return ", ".join(items)


def to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
