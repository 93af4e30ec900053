"""The benchmark concepts for textual inversion: shape/colour pairs with no single word.

The toy vocabulary has one token per shape and one per colour; a learned token must carry a pair in
one vector. ("Held out" is historical: v2 never drew these pairs, v3 never named them together; v4
names them like every pair, so their true words are the benchmark's ceiling.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .scenes import BACKGROUNDS, Scene, make_scene, render_mask, render_scene

# One concept per shape, each colour used at most once.
HELD_OUT_CONCEPTS = (
    ("star", "purple"),
    ("ring", "orange"),
    ("triangle", "cyan"),
    ("cross", "yellow"),
    ("square", "white"),
    ("circle", "blue"),
)
DEMO_CONCEPT = ("star", "purple")
EXAMPLE_DIR = Path(__file__).resolve().parent / "example_concept"


def concept_words(concept: tuple[str, str]) -> str:
    """True words of a concept, e.g. "purple star"."""
    shape, colour = concept
    return f"{colour} {shape}"


def concept_scenes(concept: tuple[str, str], n: int = 6, seed: int = 0) -> list[Scene]:
    """The n example scenes of a concept: fixed seed, varied backgrounds and layouts.

    The benchmark's "on a green background" prompt should be a novel combination,
    so example images avoid the green background.
    """
    shape, colour = concept
    rng = np.random.default_rng([seed, hash_words(concept)])
    backgrounds = [b for b in BACKGROUNDS if b not in ("green", colour)]
    return [make_scene(shape, colour, backgrounds[i % len(backgrounds)], rng) for i in range(n)]


def concept_images(concept: tuple[str, str], n: int = 6, seed: int = 0) -> list[Image.Image]:
    return [render_scene(s) for s in concept_scenes(concept, n, seed)]


def concept_masks(concept: tuple[str, str], n: int = 6, seed: int = 0) -> list[Image.Image]:
    """Foreground masks of concept_images (same scenes): what a user's alpha channel would mark."""
    return [render_mask(s) for s in concept_scenes(concept, n, seed)]


def hash_words(concept: tuple[str, str]) -> int:
    """Stable (not Python-hash-randomised) per-concept seed component."""
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(concept_words(concept)))


def write_example_concept(folder: Path = EXAMPLE_DIR, concept=DEMO_CONCEPT, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(concept_images(concept, n)):
        path = folder / f"{i:02d}.png"
        img.save(path)
        paths.append(path)
    return paths
