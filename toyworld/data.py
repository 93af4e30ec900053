"""Training data for the toy model: rendered scenes, grouped by (shape, colour, background).

The benchmark's (shape, colour) pairs have no single word: the vocabulary has one token per shape
and one per colour, never one for a pair, so a learned token must pack both into one vector.
Since v4 their captions name them like every other pair ("a purple star on a gray background"),
so the model can draw them from words (the upper bound the benchmark compares against).
v3 never named them together (`held_out_captions="partial"`: only the shape, only the colour,
or "an object"); its model then drew them from their words 38 % of the time.
"""
from __future__ import annotations

import numpy as np
import torch

from .concepts import HELD_OUT_CONCEPTS
from .scenes import (BACKGROUNDS, COLOURS, SHAPES, Scene, article, make_scene, random_caption, render_scene,
                     sample_scene, to_array)


def training_specs(include_held_out: bool = True) -> list[tuple[str, str, str]]:
    """All (shape, colour, background) triples whose images the model sees."""
    held = set(HELD_OUT_CONCEPTS)
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS
            if c != b and (include_held_out or (s, c) not in held)]


def is_held_out(spec: tuple[str, str, str]) -> bool:
    return (spec[0], spec[1]) in set(HELD_OUT_CONCEPTS)


def image_batch(rng: np.random.Generator, n: int, exclude=()) -> torch.Tensor:
    """n random scenes as a [n,3,64,64] tensor in [0, 1] (the VAE sees every pair)."""
    arrays = [to_array(render_scene(sample_scene(rng, exclude=exclude))) for _ in range(n)]
    return torch.from_numpy(np.stack(arrays))


def spec_images(specs, per_spec: int, rng: np.random.Generator) -> torch.Tensor:
    """[len(specs), per_spec, 3, 64, 64] images in [0, 1], random layouts."""
    out = np.empty((len(specs), per_spec, 3, 64, 64), dtype=np.float32)
    for i, (shape, colour, background) in enumerate(specs):
        for j in range(per_spec):
            out[i, j] = to_array(render_scene(make_scene(shape, colour, background, rng)))
    return torch.from_numpy(out)


def spec_scene(spec: tuple[str, str, str]) -> Scene:
    """A Scene carrying only the words of a spec (for captioning)."""
    shape, colour, background = spec
    return Scene(shape, colour, background, 32.0, 32.0, 16.0, 0.0)


PARTIAL_OBJECTS = ("{a} {shape}", "{ac} {colour} shape", "an object")


def partial_caption(spec: tuple[str, str, str], rng: np.random.Generator) -> str:
    """Caption of a held-out pair that never names shape and colour together."""
    shape, colour, background = spec
    obj = PARTIAL_OBJECTS[int(rng.integers(len(PARTIAL_OBJECTS)))].format(
        a=article(shape), shape=shape, ac=article(colour), colour=colour)
    if rng.random() < 0.25:
        return f"a photo of {obj}"
    return f"a photo of {obj} on {article(background)} {background} background"


def training_caption(spec: tuple[str, str, str], rng: np.random.Generator, held_out_captions: str = "full") -> str:
    """The caption a training batch shows for a spec (`held_out_captions`: "full" or "partial", see above)."""
    if held_out_captions == "partial" and is_held_out(spec):
        return partial_caption(spec, rng)
    return random_caption(spec_scene(spec), rng)
