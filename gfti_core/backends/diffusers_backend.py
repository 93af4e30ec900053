"""The standalone backend: a diffusers SD1.x / SD2.x (incl. v-prediction) / SDXL pipeline.

Candidate vectors enter the text encoder through a forward hook on its token-embedding module that
overwrites the placeholder positions row by row, so token ids stay unchanged (legacy CLIP configs pool at
argmax(ids), which added tokens would move) and the user's tokenizer is never modified.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch

from ..backend import (PLACEHOLDER, EncoderSpec, choose_placeholder, family_of_widths, per_row_mse,
                       rows_for_memory, v_target)
from ..inject import inject_vectors
from ..placeholder import spare_words

log = logging.getLogger(__name__)


class DiffusersBackend:
    """`Backend` over a loaded diffusers pipeline. Runs on the pipeline's device and dtype."""

    def __init__(self, pipe, *, model_name: str = "", rows_per_call: int = 0):
        from diffusers import DDPMScheduler

        self.pipe, self.unet, self.vae = pipe, pipe.unet, pipe.vae
        self.text_encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) else [])
        self.tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if getattr(pipe, "tokenizer_2", None) else [])
        widths = [te.get_input_embeddings().weight.shape[1] for te in self.text_encoders]
        self.family, names = family_of_widths(widths)
        self.encoders = tuple(EncoderSpec(n, w) for n, w in zip(names, widths))
        self.device, self.dtype = self.unet.device, self.unet.dtype
        self.model_name = model_name or str(getattr(pipe, "name_or_path", "") or "diffusers-model")
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the training noise schedule
        # On the device once: the v-target of every denoiser call indexes it without a host round-trip.
        self._alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device)
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        spare = spare_words(self.tokenizers[0].get_vocab())  # for a small vocabulary without the usual words
        self.placeholder, self._placeholder_ids = choose_placeholder(self.word_ids, names, spare)
        self._rows = rows_per_call

    # -- vocabulary ---------------------------------------------------------------------------------------
    def _by_name(self, encoder: str):
        names = [e.name for e in self.encoders]
        if encoder not in names:
            raise KeyError(f"encoder {encoder!r} is not one of {names}")
        i = names.index(encoder)
        return self.text_encoders[i], self.tokenizers[i]

    def token_table(self, encoder: str) -> torch.Tensor:
        te, _ = self._by_name(encoder)
        return te.get_input_embeddings().weight.detach().float().cpu().clone()

    def word_ids(self, text: str, encoder: str) -> list[int] | None:
        _, tok = self._by_name(encoder)
        ids = tok(text, add_special_tokens=False).input_ids
        unk = tok.unk_token_id
        return None if not ids or (unk is not None and unk in ids) else list(ids)

    # -- forward passes -----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], vectors: Mapping[str, torch.Tensor] | None) -> dict[str, Any]:
        n = next(iter(vectors.values())).shape[1] if vectors else 1
        texts = [p.replace(PLACEHOLDER, " ".join([self.placeholder] * n)) for p in prompts]
        hidden, pooled = [], None
        for spec, te, tok in zip(self.encoders, self.text_encoders, self.tokenizers):
            length = min(tok.model_max_length, te.config.max_position_embeddings)  # some tokenizer files say 8192
            ids = tok(texts, padding="max_length", max_length=length, truncation=True,
                      return_tensors="pt").input_ids.to(self.device)
            with inject_vectors(te.get_input_embeddings(), self._placeholder_ids[spec.name],
                                vectors and vectors[spec.name]):
                out = te(ids, output_hidden_states=True)
            if self.family == "sdxl":
                hidden.append(out.hidden_states[-2])
                pooled = out.text_embeds if hasattr(out, "text_embeds") else pooled
            else:
                hidden.append(out[0])
        return {"hidden": torch.cat(hidden, dim=-1), "pooled": pooled}

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device, self.vae.dtype) * 2 - 1)
        latents = torch.cat([self.vae.encode(chunk).latent_dist.mean for chunk in x.split(8)])
        return latents * self.vae.config.scaling_factor

    def _added_cond(self, cond: dict[str, Any], latents: torch.Tensor) -> dict[str, Any] | None:
        if self.family != "sdxl":
            return None
        h, w = (s * self.pipe.vae_scale_factor for s in latents.shape[-2:])
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=self.dtype)
        return {"text_embeds": cond["pooled"].to(self.dtype), "time_ids": time_ids.expand(latents.shape[0], -1)}

    @torch.no_grad()
    def denoise_loss(self, latents, timesteps, noise, cond, weights=None) -> torch.Tensor:
        x_t = self.scheduler.add_noise(latents.float(), noise.float(), timesteps.cpu()).to(self.device)
        pred = self.unet(x_t.to(self.dtype), timesteps.to(self.device),
                         encoder_hidden_states=cond["hidden"].to(self.dtype),
                         added_cond_kwargs=self._added_cond(cond, latents)).sample
        return per_row_mse(pred, self.training_target(latents, noise, timesteps), weights)

    def training_target(self, latents, noise, timesteps) -> torch.Tensor:
        """What the UNet was trained to predict at these rows: ε, or v for v-prediction (see Backend)."""
        noise = noise.to(self.device)
        if self.prediction_type != "v_prediction":
            return noise
        ac = self._alphas_cumprod[timesteps.to(self.device)]
        return v_target(latents.to(self.device).float(), noise.float(), ac)

    def max_rows(self, latent_shape: Sequence[int]) -> int:
        return self._rows or rows_for_memory(self.device, latent_shape, self.dtype.itemsize)

    # -- previews -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt: str, vectors: Mapping[str, torch.Tensor] | None, *, num_images: int, seed: int,
                 steps: int = 20, guidance: float = 4.0) -> torch.Tensor:
        from diffusers import DDIMScheduler

        batch = {k: v[None].expand(num_images, -1, -1) for k, v in vectors.items()} if vectors else None
        pos = self.encode_text([prompt] * num_images, batch)
        neg = self.encode_text([""] * num_images, None)
        kwargs = {"prompt_embeds": pos["hidden"].to(self.dtype), "negative_prompt_embeds": neg["hidden"].to(self.dtype)}
        if self.family == "sdxl":
            kwargs.update(pooled_prompt_embeds=pos["pooled"].to(self.dtype),
                          negative_pooled_prompt_embeds=neg["pooled"].to(self.dtype))
        original = self.pipe.scheduler
        self.pipe.scheduler = DDIMScheduler.from_config(original.config)
        try:
            out = self.pipe(num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                            generator=torch.Generator("cpu").manual_seed(seed), **kwargs)
        finally:
            self.pipe.scheduler = original
        return out.images.float().cpu().clamp(0, 1)
