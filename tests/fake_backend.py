"""A backend with a known optimum, for engine tests that must not depend on a real model.

The "denoiser" loss of a row is ||A·c − y||² / D + 0.1·‖noise‖²/n · (1 + t/1000), where c is the mean of the
row's injected vectors and y a fixed target per image. The planted optimum is c* with A·c* = y, so the best
embedding is known exactly; the noise term makes draws matter (common random numbers cancel it in rankings).
"""
from __future__ import annotations

import torch

from gfti_core.backend import EncoderSpec


class FakeBackend:
    family = "sd1"
    model_name = "fake"

    def __init__(self, width: int = 16, vocab: int = 300, seed: int = 0, encoders=("clip_l",)):
        gen = torch.Generator().manual_seed(seed)
        self.encoders = tuple(EncoderSpec(n, width) for n in encoders)
        self.device = torch.device("cpu")
        self.table = torch.randn(vocab, width, generator=gen) * 0.3
        self.mix = torch.randn(width, width, generator=gen) / width**0.5 + torch.eye(width)
        self.planted = {e.name: self.table[7] * 0.5 + self.table[11] * 0.5 for e in self.encoders}
        self.words = {"cat": [7], "dog": [11], "cat dog": [7, 11], "car": [21]}
        self.calls = 0

    def token_table(self, encoder):
        return self.table.clone()

    def word_ids(self, text, encoder):
        if text in self.words:
            return list(self.words[text])
        h = sum(ord(c) for c in text) % 250 + 30
        return [h] if text.isalpha() else None

    def encode_text(self, prompts, vectors):
        return {n: v.mean(1) for n, v in vectors.items()}

    def encode_images(self, images):
        return images.mean(1, keepdim=True)[:, :, :4, :4].repeat(1, 4, 1, 1)

    def _target(self):
        return sum(self.mix @ v for v in self.planted.values())

    def denoise_loss(self, latents, timesteps, noise, cond, weights=None):
        self.calls += 1
        c = sum(cond.values()) @ self.mix.T
        err = (c - self._target()).pow(2).mean(1)
        return err + 0.1 * noise.flatten(1).pow(2).mean(1) * (1 + timesteps.float() / 1000)

    def max_rows(self, latent_shape):
        return 32
