"""The backend contract: everything GFTI needs from a host, forward passes only.

A host (diffusers, ComfyUI, A1111, Forge) implements `Backend` around the model it has already loaded; the
engine never sees anything else. Conventions shared by every backend:

* Prompts contain the slot `PLACEHOLDER` exactly where the learned token goes. The backend expands it to
  N placeholder tokens (N = vectors per token) and overwrites their embeddings row by row.
* Timesteps are integer DDPM training steps in [0, num_train_timesteps).
* `denoise_loss` returns the per-row MSE between the true noise and the model's *noise* prediction
  (epsilon space). V-prediction models convert their output to epsilon first, so the numbers of an EPS and
  a V model, and of different hosts running the same weights, are comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch

PLACEHOLDER = "<*>"
# The one table of model families: each family's text encoders (SDXL's in the order hosts stack them) and their
# widths in the real models (toy and test models may be narrower; they are told apart by encoder count and width).
FAMILY_WIDTHS: dict[str, dict[str, int]] = {
    "sd1": {"clip_l": 768},
    "sd2": {"clip_h": 1024},
    "sdxl": {"clip_l": 768, "clip_g": 1280},
}
FAMILIES = tuple(FAMILY_WIDTHS)
# Rare words that are one token in CLIP's BPE vocabulary (and in the toy tokenizer); the first that is a single
# token in every encoder marks the learned token's position(s).
PLACEHOLDER_WORDS = ("sks", "zwx", "xqz", "ktn", "vlx")


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder whose token table GFTI searches. name: 'clip_l' | 'clip_h' | 'clip_g'."""

    name: str
    width: int


@runtime_checkable
class Backend(Protocol):
    """What a host provides. All tensors returned are on `device` unless stated otherwise."""

    family: str                          # "sd1" | "sd2" | "sdxl"
    encoders: tuple[EncoderSpec, ...]    # SDXL: (clip_l, clip_g) in that order
    device: torch.device
    model_name: str                      # for file metadata

    def token_table(self, encoder: str) -> torch.Tensor:
        """The encoder's token-embedding matrix [V, D], float32 on the CPU (a copy the engine may keep)."""

    def word_ids(self, text: str, encoder: str) -> list[int] | None:
        """Token ids of `text` without special tokens, or None when the text needs unknown tokens."""

    def encode_text(self, prompts: Sequence[str], vectors: Mapping[str, torch.Tensor]) -> Any:
        """Conditioning for B prompts. prompts[b] holds PLACEHOLDER once; vectors[enc] is [B, N, D] and row b's
        N vectors replace the placeholder tokens of prompts[b]. Returns an opaque object for `denoise_loss`."""

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] → scaled latents [B, C, h, w] (deterministic: posterior mean)."""

    def denoise_loss(self, latents: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor,
                     cond: Any, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row MSE [B] (float32) of the denoiser at x_t = add_noise(latents, noise, timesteps) under `cond`,
        against the model's own training target: ε for ε-models, v for v-models (the loss diffusers', A1111's
        and kohya's trainers use; see `sigma_space_mse`). `weights` [B, 1, h, w] (optional) weights the squared
        error per latent pixel (foreground masks)."""

    def max_rows(self, latent_shape: Sequence[int]) -> int:
        """How many rows one `encode_text` + `denoise_loss` call may take without running out of memory."""


@runtime_checkable
class PreviewBackend(Backend, Protocol):
    """Optional: backends that can also generate images (previews, the demo, benchmarks)."""

    def generate(self, prompt: str, vectors: Mapping[str, torch.Tensor] | None, *, num_images: int,
                 seed: int, steps: int = 20, guidance: float = 4.0) -> torch.Tensor:
        """Images [num_images, 3, H, W] in [0, 1]. vectors[enc] is [N, D] (None: prompt without the slot)."""


def v_target(latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The v-prediction target v = sqrt(ā)·ε − sqrt(1-ā)·x0 (ā per row)."""
    a = alphas_cumprod_t.to(latents.dtype).view(-1, *([1] * (latents.dim() - 1)))
    return a.sqrt() * noise - (1 - a).sqrt() * latents


def sigma_space_mse(x0: torch.Tensor, noise: torch.Tensor, x_in: torch.Tensor, denoised: torch.Tensor,
                    sigma: torch.Tensor, v_prediction: bool, weights: torch.Tensor | None = None) -> torch.Tensor:
    """`denoise_loss` for hosts whose UNet wrapper returns x0 at x_in = x0 + σ·ε (ComfyUI, Forge).

    ε-models: the ε-MSE, ε̂ = (x_in − x̂0)/σ. v-models: the v-MSE, which is (1+σ²)/σ² times the x0-MSE
    (v error = −sqrt(1+σ²)/σ · x0 error); computed from x0 because the ε form loses precision at high noise,
    where a v-model's prompt decides layout and colour."""
    s = sigma.float().view(-1, 1, 1, 1)
    if v_prediction:
        return per_row_mse(denoised, x0, weights) * ((1 + s ** 2) / s ** 2).flatten()
    return per_row_mse((x_in.float() - denoised.float()) / s, noise, weights)


def per_row_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per row, computed in float32 so fp16 hosts rank candidates like fp32 ones.
    With weights [B, 1, h, w] it is the weighted mean over pixels (channels share a pixel's weight)."""
    err = (pred.float() - target.float()).pow(2)
    if weights is None:
        return err.flatten(1).mean(1)
    w = weights.float().expand_as(err)
    return (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-8)


def family_of_widths(widths: Sequence[int]) -> tuple[str, tuple[str, ...]]:
    """(family, encoder names) from the text encoders' widths: two encoders = SDXL, SD2's width = SD2, else SD1."""
    if len(widths) == 2:
        family = "sdxl"
    else:
        family = "sd2" if widths[0] == FAMILY_WIDTHS["sd2"]["clip_h"] else "sd1"
    return family, tuple(FAMILY_WIDTHS[family])


def family_of_encoders(names: Sequence[str]) -> str | None:
    """The family whose text encoders are exactly `names` (in any order), or None."""
    return next((family for family, encoders in FAMILY_WIDTHS.items() if set(encoders) == set(names)), None)


def choose_placeholder(word_ids, encoder_names: Sequence[str],
                       spare: Sequence[str] = ()) -> tuple[str, dict[str, int]]:
    """The first of PLACEHOLDER_WORDS, then of `spare` (words no GFTI prompt uses, see placeholder.py), that is a
    single token for every encoder. word_ids(text, enc) as in `Backend.word_ids`. → (word, {encoder: token id})."""
    for word in (*PLACEHOLDER_WORDS, *spare):
        ids = {name: word_ids(word, name) for name in encoder_names}
        if all(v is not None and len(v) == 1 for v in ids.values()):
            return word, {k: v[0] for k, v in ids.items()}
    raise ValueError(f"no word is a single token in this tokenizer (tried {PLACEHOLDER_WORDS} and "
                     f"{len(spare)} of its own words); GFTI needs one to mark the learned token's position")


def rows_for_memory(device: torch.device, latent_shape: Sequence[int], itemsize: int, cpu_rows: int = 64) -> int:
    """Rows per denoiser call that fit the free accelerator memory. The 2500 × latent-size bytes-per-row
    factor is an order-of-magnitude measure of a UNet's inference activations; the evaluator halves the
    chunk on an out-of-memory error anyway, so this only has to be close."""
    if device.type != "cuda":
        return cpu_rows
    free, _ = torch.cuda.mem_get_info(device)
    per_row = 2500 * torch.Size(latent_shape).numel() * itemsize
    return int(max(1, min(512, 0.6 * free // per_row)))
