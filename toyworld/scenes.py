"""Deterministic synthetic scenes (one coloured shape on a flat background) with ground truth."""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and downsample: cheap antialiasing

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
# Foreground colours: far apart in RGB so the classifier and the model can tell them apart.
COLOURS = {
    "red": (220, 30, 30),
    "green": (60, 200, 60),
    "blue": (40, 70, 240),
    "yellow": (240, 225, 30),
    "purple": (150, 40, 210),
    "orange": (255, 140, 0),
    "white": (245, 245, 245),
    "cyan": (0, 225, 235),
}
# Backgrounds are darker/duller than the foregrounds so every shape stays visible.
BACKGROUNDS = {
    "black": (0, 0, 0),
    "gray": (120, 120, 120),
    "brown": (110, 65, 25),
    "green": (25, 95, 35),
    "navy": (15, 20, 85),
}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    cx: float  # centre, in pixels of the 64-px image
    cy: float
    radius: float  # circumscribed radius, pixels
    angle: float  # rotation, degrees

    def as_dict(self) -> dict:
        return asdict(self)


def _regular_polygon(n: int, radius: float, angle: float, inner: float | None = None):
    """Vertices of a regular n-gon (or an n-point star when `inner` is the inner radius ratio)."""
    pts = []
    steps = 2 * n if inner else n
    for i in range(steps):
        r = radius * (inner if inner and i % 2 else 1.0)
        t = math.radians(angle) + 2 * math.pi * i / steps - math.pi / 2
        pts.append((r * math.cos(t), r * math.sin(t)))
    return pts


def _cross(radius: float, angle: float):
    """Plus sign whose arms reach `radius` (measured along the arm) from the centre."""
    a, w = radius, radius * 0.32
    base = [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
            (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(x * c - y * s, x * s + y * c) for x, y in base]


def _outline(shape: str, radius: float, angle: float):
    if shape == "square":
        return _regular_polygon(4, radius, angle)
    if shape == "triangle":
        return _regular_polygon(3, radius, angle)
    if shape == "star":
        return _regular_polygon(5, radius, angle, inner=0.45)
    if shape == "cross":
        return _cross(radius, angle)
    raise ValueError(f"no polygon outline for {shape!r}")


def render_scene(scene: Scene) -> Image.Image:
    """Render a Scene to a 64x64 RGB image."""
    return _draw(scene, "RGB", COLOURS[scene.colour], BACKGROUNDS[scene.background])


def render_mask(scene: Scene) -> Image.Image:
    """The scene's foreground as a 64x64 "L" image (255 on the shape, antialiased edges)."""
    return _draw(scene, "L", 255, 0)


def _draw(scene: Scene, mode: str, fg, bg) -> Image.Image:
    k = SUPERSAMPLE
    size = IMAGE_SIZE * k
    img = Image.new(mode, (size, size), bg)
    draw = ImageDraw.Draw(img)
    cx, cy, r = scene.cx * k, scene.cy * k, scene.radius * k
    if scene.shape in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        if scene.shape == "ring":
            ri = r * 0.55
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=bg)
    else:
        pts = [(cx + x, cy + y) for x, y in _outline(scene.shape, r, scene.angle)]
        draw.polygon(pts, fill=fg)
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)


def random_layout(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Random centre, radius and angle that keep the shape fully inside the image."""
    radius = float(rng.uniform(12.0, 22.0))
    margin = radius + 2.0
    cx = float(rng.uniform(margin, IMAGE_SIZE - margin))
    cy = float(rng.uniform(margin, IMAGE_SIZE - margin))
    angle = float(rng.uniform(0.0, 360.0))
    return cx, cy, radius, angle


def make_scene(shape: str, colour: str, background: str, rng: np.random.Generator) -> Scene:
    cx, cy, radius, angle = random_layout(rng)
    return Scene(shape, colour, background, cx, cy, radius, angle)


def render(shape: str, colour: str, background: str, rng: np.random.Generator) -> Image.Image:
    """Render `shape` in `colour` on `background` at a random position/size/rotation."""
    return render_scene(make_scene(shape, colour, background, rng))


def sample_scene(rng: np.random.Generator, exclude=(), shapes=SHAPES, colours=None,
                 backgrounds=None) -> Scene:
    """Uniformly random scene whose (shape, colour) pair is not in `exclude`.

    Same-name colour/background pairs (a green shape on a green background) are
    skipped: they are low contrast and ambiguous for the classifier.
    """
    colours = list(colours or COLOURS)
    backgrounds = list(backgrounds or BACKGROUNDS)
    excluded = set(exclude)
    while True:
        shape = shapes[rng.integers(len(shapes))]
        colour = colours[rng.integers(len(colours))]
        background = backgrounds[rng.integers(len(backgrounds))]
        if (shape, colour) not in excluded and colour != background:
            return make_scene(shape, colour, background, rng)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# Caption templates; "{obj}" is "<colour> <shape>" with its article where one is used.
TEMPLATES_WITH_BG = (
    "{a} {obj} on {ab} {bg} background",
    "a photo of {a} {obj} on {ab} {bg} background",
    "a picture of {a} {obj} on {ab} {bg} background",
    "a rendering of {a} {obj} on {ab} {bg} background",
    "{obj} on {ab} {bg} background",
    "an image of {a} {obj} on {ab} {bg} background",
)
TEMPLATES_NO_BG = (
    "{a} {obj}",
    "a photo of {a} {obj}",
    "a picture of {a} {obj}",
    "{obj}",
)


def caption(scene: Scene, rng: np.random.Generator | None = None, with_background: bool = True,
            template: int | None = None) -> str:
    """Caption of a scene in words. Without rng: the canonical "a red star on a black background"."""
    templates = TEMPLATES_WITH_BG if with_background else TEMPLATES_NO_BG
    if template is None:
        template = 0 if rng is None else int(rng.integers(len(templates)))
    obj = f"{scene.colour} {scene.shape}"
    return templates[template].format(a=article(scene.colour), obj=obj,
                                      ab=article(scene.background), bg=scene.background)


def random_caption(scene: Scene, rng: np.random.Generator, p_no_background: float = 0.25) -> str:
    """Training caption: a random template; sometimes the background is not mentioned."""
    return caption(scene, rng, with_background=rng.random() >= p_no_background)


def to_array(img: Image.Image) -> np.ndarray:
    """HWC uint8 -> CHW float32 in [0, 1]."""
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
