"""Auto context: caption each training image with context phrases chosen by the model itself.

Textual inversion's classic failure is a token that swallows its images' backgrounds, so "<tok> on a beach"
still shows the training backdrop. If the training prompts already *say* the context ("a photo of <tok> on a
black background"), the token need not encode it. Without a human writing captions, GFTI asks the diffusion
model: every phrase is scored per image by the denoising loss of "<template> <phrase>" with the initial
token, all phrases on the same draw (common random numbers); the lowest-loss phrase captions that image.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .backend import Backend
from .config import InversionConfig
from .init_vectors import load_word_list
from .objective import Draw, Evaluator, TrainingSet, draw_samples, generation_generator

log = logging.getLogger(__name__)

DEFAULT_PHRASES = Path(__file__).parent / "data" / "context_phrases.txt"


def load_phrases(path: str = "") -> list[str]:
    return load_word_list(path, DEFAULT_PHRASES, "context phrase list")


def _image_scores(evaluator: Evaluator, data: TrainingSet, index: int, phrases: list[str],
                  origin: dict[str, torch.Tensor], cfg: InversionConfig) -> torch.Tensor:
    """Loss of each phrase on image `index` (its own latent only), one shared draw. → [len(phrases)]."""
    base = data.prompts[index][0]
    single = TrainingSet(data.latents[index:index + 1], [[f"{base} {p}" for p in phrases]],
                         None if data.weights is None else data.weights[index:index + 1])
    draw = draw_samples(single, cfg.init_samples * 4, (cfg.timestep_min, cfg.timestep_max),
                        generation_generator(cfg.seed, -2, index))
    scorer = Evaluator(evaluator.backend, single, evaluator.rows, evaluator.should_stop, evaluator.on_rows)
    # All phrases as one flat batch of rows: the evaluator's chunks then text-encode several phrases per call
    # instead of one call per phrase (ComfyUI 2024-03 rebuilds its whole token table on every such call).
    every = _tiled(draw, len(phrases))
    losses = scorer.sample_losses({k: v[None] for k, v in origin.items()}, every)
    evaluator.forward_rows += scorer.forward_rows
    return losses.view(len(phrases), len(draw)).mean(1)


def planned_context_rows(cfg: InversionConfig, images: int, captions: list[str | None] | None = None) -> int:
    """Denoiser rows `auto_context` will evaluate for `images` training images (for the start's progress bar)."""
    captioned = sum(1 for c in (captions or [])[:images] if c)
    return (images - captioned) * len(load_phrases(cfg.context_phrases)) * cfg.init_samples * 4


def _tiled(draw: Draw, k: int) -> Draw:
    """The same draw k times, the i-th copy with prompt choice i (prompt-major)."""
    return Draw(draw.latent_idx.repeat(k), torch.arange(k).repeat_interleave(len(draw)), draw.timesteps.repeat(k),
                draw.noise.repeat(k, *[1] * (draw.noise.dim() - 1)))


def auto_context(backend: Backend, data: TrainingSet, origin: dict[str, torch.Tensor], cfg: InversionConfig,
                 evaluator: Evaluator, flipped: bool, captions: list[str | None] | None = None
                 ) -> tuple[TrainingSet, list[str]]:
    """→ (training set whose prompts carry each image's best phrase, the chosen phrase per image).
    Images with a human caption (templates=captions) keep it: a person's words beat the model's guess."""
    phrases = load_phrases(cfg.context_phrases)
    count = data.latents.shape[0] // (2 if flipped else 1)
    captions = captions or [None] * count
    chosen = []
    for i in range(count):
        if captions[i]:
            chosen.append("")
            continue
        scores = _image_scores(evaluator, data, i, phrases, origin, cfg)
        chosen.append(phrases[int(torch.argmin(scores))])
    log.info("auto context: %s", "; ".join(chosen))
    return with_context(data, chosen, flipped), chosen


def with_context(data: TrainingSet, chosen: list[str], flipped: bool) -> TrainingSet:
    """Append each image's chosen phrase to its prompts (flipped copies, appended after the originals, share
    their image's phrase). Also used when a run's templates change after the phrases were chosen."""
    per_latent = chosen + chosen if flipped else chosen
    prompts = [[f"{p} {c}".rstrip() for p in options] for options, c in zip(data.prompts, per_latent)]
    return dataclasses.replace(data, prompts=prompts)
