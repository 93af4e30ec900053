"""Toy world: a tiny CPU-trainable text-to-image model on which textual inversion is measurable.

Synthetic scenes (coloured shapes on flat backgrounds) with ground truth, a word-level
tokenizer, a small SD1-architecture pipeline (768-d text embeddings), a classifier that
reads the ground truth back off images, and held-out shape/colour concepts to invert.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"


def gfti_model():
    """`--model toy` for gfti (registered in pyproject.toml under the `gfti.models` entry points)."""
    from gfti_core.loading import NamedModel

    return NamedModel(MODEL_DIR, "gfti-toy", init_words=str(HERE / "concept_words.txt"),
                      context_phrases=str(HERE / "context_phrases.txt"))


def load_pipeline(device: str = "cpu", dtype: torch.dtype = torch.float32, model_dir: Path | None = None):
    """Load the shipped toy StableDiffusionPipeline (local files only, DDIM scheduler)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    folder = Path(model_dir or MODEL_DIR)
    if not (folder / "model_index.json").exists() or not (folder / "unet").is_dir():
        raise FileNotFoundError(
            f"toy model weights missing in {folder}; train them with "
            "`python -m toyworld.train --out toyworld/model --seed 0` (~45 min on 2 CPU cores)")
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=dtype,
                                                   safety_checker=None, requires_safety_checker=False)
    # The DDPM training scheduler is saved; sampling uses DDIM in few steps.
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
