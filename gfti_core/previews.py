"""Previews while a run trains: every `preview_every` generations, images of the current search mean.

Two prompts, both with a fixed seed so that from one preview to the next only the token changes: "a photo of
<*>" (does it draw the subject?) and `preview_prompt`, which puts the token somewhere its images never showed
it (does it still obey the rest of the prompt?). `run_generations` makes them (one schedule for every face)
through a `Sampler` the face supplies: `backend_sampler` for backends that implement
`PreviewBackend.generate`, or the host's own pipeline (the webuis' txt2img).
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import torch
from PIL import Image

from .backend import PLACEHOLDER
from .chart import image_grid, tensor_to_pil
from .config import InversionConfig

log = logging.getLogger(__name__)

# (prompt with PLACEHOLDER, vectors {encoder: [N, D]}, seed) -> images of the prompt with those vectors
Sampler = Callable[[str, Mapping[str, torch.Tensor], int], list[Image.Image]]
PHOTO_PROMPT = f"a photo of {PLACEHOLDER}"


def backend_sampler(backend, num_images: int = 2, steps: int = 20, guidance: float = 4.0) -> Sampler | None:
    """A Sampler over `backend.generate`, or None when the backend cannot generate images."""
    if not callable(getattr(backend, "generate", None)):
        return None

    def sample(prompt: str, vectors: Mapping[str, torch.Tensor], seed: int) -> list[Image.Image]:
        with torch.no_grad():
            return tensor_to_pil(backend.generate(prompt, vectors, num_images=num_images, seed=seed, steps=steps,
                                                  guidance=guidance))
    return sample


def is_due(cfg: InversionConfig, generation: int) -> bool:
    return bool(cfg.preview_every) and generation > 0 and generation % cfg.preview_every == 0


def preview_prompts(cfg: InversionConfig) -> list[str]:
    return [PHOTO_PROMPT, cfg.preview_prompt.replace("<*>", PLACEHOLDER)]


def preview_grid(sample: Sampler, cfg: InversionConfig, vectors: Mapping[str, torch.Tensor],
                 generation: int) -> Image.Image | None:
    """One row per preview prompt, labelled with the generation and the prompt as the user writes it."""
    rows, labels = [], []
    for prompt in preview_prompts(cfg):
        images = [_readable(im) for im in sample(prompt, vectors, cfg.seed)]
        if images:
            rows.append(images)
            labels.append(f"generation {generation}: {prompt.replace(PLACEHOLDER, '<' + cfg.token + '>')}")
    return image_grid(rows, labels) if rows else None


def _readable(image: Image.Image, min_side: int = 160) -> Image.Image:
    """Tiny model outputs (the toy world's 64 px) scaled up by a whole factor, so a person can see them."""
    factor = -(-min_side // max(1, min(image.size)))
    return image if factor <= 1 else image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def timeline(grids: list[Image.Image], keep: int = 4) -> Image.Image:
    """The last `keep` preview grids stacked top to bottom (oldest first): what changed, at a glance."""
    grids = grids[-keep:]
    sheet = Image.new("RGB", (max(g.width for g in grids), sum(g.height for g in grids)), (255, 255, 255))
    y = 0
    for grid in grids:
        sheet.paste(grid, (0, y))
        y += grid.height
    return sheet
