"""Training data for the toy model: rendered scenes, grouped by (shape, colour, background)."""
from __future__ import annotations

import numpy as np
import torch

from .concepts import HELD_OUT_CONCEPTS
from .scenes import BACKGROUNDS, COLOURS, SHAPES, Scene, make_scene, render_scene, sample_scene, to_array


def training_specs() -> list[tuple[str, str, str]]:
    """All (shape, colour, background) triples the model may see: held-out pairs removed."""
    held = set(HELD_OUT_CONCEPTS)
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS
            if (s, c) not in held and c != b]


def image_batch(rng: np.random.Generator, n: int, exclude=HELD_OUT_CONCEPTS) -> torch.Tensor:
    """n random training scenes as a [n,3,64,64] tensor in [0, 1]."""
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
