"""World 2's training data: rendered scenes grouped by (shape, colour, background), tag captions."""
from __future__ import annotations

import numpy as np
import torch

from .scenes import (BACKGROUNDS, COLOURS, IMAGE_SIZE, SHAPES, make_scene, random_caption, render_scene,
                     sample_scene, to_array, visible)


def training_specs() -> list[tuple[str, str, str]]:
    """Every visible (shape, colour, background) triple; the benchmark pairs are named like every pair."""
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS if visible(c, b)]


def image_batch(rng: np.random.Generator, n: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([to_array(render_scene(sample_scene(rng))) for _ in range(n)]))


def spec_images(specs, per_spec: int, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((len(specs), per_spec, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for i, (shape, colour, background) in enumerate(specs):
        for j in range(per_spec):
            out[i, j] = to_array(render_scene(make_scene(shape, colour, background, rng)))
    return torch.from_numpy(out)


def training_caption(spec: tuple[str, str, str], rng: np.random.Generator, held_out_captions: str = "full") -> str:
    shape, colour, background = spec
    return random_caption(shape, colour, background, rng)
