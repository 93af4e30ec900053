"""World 2's benchmark concepts: colour/shape pairs with no single word (one per shape, each colour once).

Their example images never use the white background, the benchmark's new context ("<tok>, white background").
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .scenes import BACKGROUNDS, Scene, make_scene, render_mask, render_scene, visible

HELD_OUT_CONCEPTS = (
    ("triangle", "magenta"),
    ("diamond", "teal"),
    ("bar", "gold"),
    ("crescent", "lime"),
    ("heart", "violet"),
)
NEW_CONTEXT = "white"
# Seen pairs, one per shape, for the obeys-text comparison.
TRAINING_COMBOS = (("triangle", "gold"), ("diamond", "pink"), ("bar", "crimson"), ("crescent", "magenta"),
                   ("heart", "teal"))


def concept_words(concept: tuple[str, str]) -> str:
    shape, colour = concept
    return f"{colour}, {shape}"


def _seed(concept: tuple[str, str]) -> int:
    return sum(ord(ch) * (i + 1) for i, ch in enumerate("world2 " + concept_words(concept)))


def concept_scenes(concept: tuple[str, str], n: int = 8, seed: int = 0) -> list[Scene]:
    shape, colour = concept
    rng = np.random.default_rng([seed, _seed(concept)])
    backgrounds = [b for b in BACKGROUNDS if b != NEW_CONTEXT and visible(colour, b)]
    return [make_scene(shape, colour, backgrounds[i % len(backgrounds)], rng) for i in range(n)]


def concept_images(concept: tuple[str, str], n: int = 8, seed: int = 0) -> list[Image.Image]:
    return [render_scene(s) for s in concept_scenes(concept, n, seed)]


def concept_masks(concept: tuple[str, str], n: int = 8, seed: int = 0) -> list[Image.Image]:
    return [render_mask(s) for s in concept_scenes(concept, n, seed)]
