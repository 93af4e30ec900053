"""Contrastive images: what the init's single words draw, as negatives of the fitness (config `contrast`).

Classifier-free guidance draws the images that the token's implicit classifier, log p(x | tok) − log p(x),
favours over *all* images; the denoising loss only asks that the training images be explained well. A vector
that mixes "cyan" and "triangle" explains cyan triangles well and may explain cyan circles better still — and
then draws those. So the model draws a few images from each of the init's two best words alone ("a photo of
cyan", "a photo of triangle": one attribute each) and the fitness becomes L(training images) − λ·L(those
images): the token must explain the concept better than its one-attribute look-alikes.
"""
from __future__ import annotations

import logging

import torch

from .backend import PLACEHOLDER, Backend
from .config import ConfigError, InversionConfig
from .init_vectors import ranked_word_vectors
from .objective import TrainingSet

log = logging.getLogger(__name__)

IMAGES_PER_WORD = 6
WORDS = 2


def with_contrast_images(backend: Backend, data: TrainingSet, info: dict, tables: dict[str, torch.Tensor],
                         cfg: InversionConfig) -> tuple[TrainingSet, dict]:
    """Append the negatives to `data` with per-latent factors so that a uniform draw's mean loss estimates
    mean L(positives) − contrast · mean L(negatives). Returns the set and what to show the user."""
    words = ranked_word_vectors(backend, tables, info, WORDS)
    if not words:
        raise ConfigError("contrast needs a word-ranking init (init_mode=denoise-attention or clip-attention)")
    if not callable(getattr(backend, "generate", None)):
        raise ConfigError("contrast needs a backend that can generate images; set contrast=0 for this host")
    names = info["ranked_words"][:WORDS]
    made = []
    for i in range(len(names)):
        vectors = {enc: w[i][None] for enc, w in words.items()}  # the word alone, as a one-vector token
        made.append(backend.generate(f"a photo of {PLACEHOLDER}", vectors, num_images=IMAGES_PER_WORD,
                                     seed=cfg.seed + 7_001 + i, steps=20, guidance=4.0))
    with torch.no_grad():
        negatives = backend.encode_images(torch.cat(made).to(backend.device)).float().cpu()
    pos, neg = data.latents.shape[0], negatives.shape[0]
    total = pos + neg
    coef = torch.cat([torch.full((pos,), total / pos), torch.full((neg,), -cfg.contrast * total / neg)])
    weights = None if data.weights is None else torch.cat(
        [data.weights, torch.ones((neg, *data.weights.shape[1:]))])
    prompts = data.prompts + [[f"a photo of {PLACEHOLDER}"]] * neg
    log.info("contrast: %d images each of %s, weight %.2f", IMAGES_PER_WORD, ", ".join(names), cfg.contrast)
    return TrainingSet(torch.cat([data.latents, negatives]), prompts, weights, coef), {"words": names}
