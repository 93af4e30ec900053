"""`Backend` over ComfyUI's own MODEL (ModelPatcher), CLIP and VAE — forward passes only.

Works on ComfyUI 2024-03 and 2025-10 by using only what both share:

* text: token lists may carry 1-D tensors in place of ids — the same path `embedding:name` takes — so the
  learned vectors are encoded exactly as a saved embedding will be. B candidates are encoded in ONE call of
  the encoder module (`cm.clip_l(rows)`), never through `encode_from_tokens` (which would treat the rows as
  chunks of one long prompt). CLIP skip (`clip.layer_idx`) and CLIP LoRA (`clip.load_model()`) apply.
* loss: x_t = x0 + σ·ε (ComfyUI's parameterisation); `apply_model` returns denoised x0 and
  ε̂ = (x_t − x̂0)/σ holds for EPS and V models alike. σ = model_sampling.sigma(t) for integer DDPM t, so the
  loss equals the diffusers backend's on the same weights (tests/comfy measure it).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Mapping, Sequence

import torch

from ..gfti_core.backend import PLACEHOLDER, EncoderSpec, choose_placeholder, family_of_encoders, sigma_space_mse
from ..gfti_core.errors import GFTIError

log = logging.getLogger(__name__)

_MAX_ROWS = 512


class ComfyBackend:
    """`Backend` for SD1.x / SD2.x (EPS or V) / SDXL models loaded by ComfyUI. Holds references only."""

    def __init__(self, model, clip, vae, *, rows_per_call: int = 0):
        import comfy.model_management as mm  # host import at construction, never at pack import

        self.mm, self.model, self.clip, self.vae = mm, model, clip, vae
        self.device = torch.device(model.load_device)
        self.family, self.encoders = _detect(model, clip)
        self.model_name = f"comfyui-{type(model.model.model_config).__name__}"
        try:
            self.placeholder, self._placeholder_ids = choose_placeholder(self.word_ids, [e.name for e in self.encoders])
        except ValueError as exc:
            raise GFTIError(str(exc)) from exc
        self._rows = rows_per_call

    # -- vocabulary ---------------------------------------------------------------------------------------
    def _tokenizer(self, encoder: str):
        return getattr(self.clip.tokenizer, encoder)

    def _encoder(self, encoder: str):
        return getattr(self.clip.cond_stage_model, encoder)

    def token_table(self, encoder: str) -> torch.Tensor:
        weight = self._encoder(encoder).transformer.get_input_embeddings().weight
        return weight.detach().float().cpu().clone()

    def word_ids(self, text: str, encoder: str) -> list[int] | None:
        tok = self._tokenizer(encoder)
        ids = tok.tokenizer(text)["input_ids"][tok.tokens_start:-1]
        unk = getattr(tok.tokenizer, "unk_token_id", None)
        return None if not ids or (unk is not None and unk in ids) else [int(i) for i in ids]

    # -- text ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], vectors: Mapping[str, torch.Tensor] | None) -> dict[str, Any]:
        n = next(iter(vectors.values())).shape[1] if vectors else 1
        texts = [p.replace(PLACEHOLDER, " ".join([self.placeholder] * n)) for p in prompts]
        self._prepare_clip()
        out = {}
        for spec in self.encoders:
            vecs = vectors[spec.name] if vectors else None
            rows = [self.token_row(text, spec.name, None if vecs is None else vecs[b]) for b, text in enumerate(texts)]
            z, pooled = self._encoder(spec.name)(rows)[:2]
            out[spec.name] = (self._to_intermediate(z), self._to_intermediate(pooled))
        if self.family == "sdxl":
            return {"c_crossattn": torch.cat([out["clip_l"][0], out["clip_g"][0]], dim=-1), "pooled": out["clip_g"][1]}
        return {"c_crossattn": out[self.encoders[0].name][0], "pooled": None}

    def _prepare_clip(self) -> None:
        """What the host's `CLIP.encode_from_tokens` does before it encodes (comfy/sd.py): reset the encoder
        options, apply CLIP skip, and load the text encoder through model_management (`clip.load_model()`:
        CLIP LoRA patches, the device it chose, eviction of other models, low-VRAM partial loading)."""
        cm = self.clip.cond_stage_model
        cm.reset_clip_options()
        if self.clip.layer_idx is not None:
            cm.set_clip_options({"layer": self.clip.layer_idx})
        self.clip.load_model()

    def _to_intermediate(self, tensor):
        """The encoder answers on whatever device it ran on; the host hands conditioning on to other nodes on
        `intermediate_device()` (as `encode_token_weights` does), and so does this backend."""
        return None if tensor is None else tensor.to(self.mm.intermediate_device())

    def token_row(self, text: str, encoder: str, vectors: torch.Tensor | None) -> list:
        """One 77-entry token row of `text` for `encoder`; the k-th placeholder becomes vectors[k % N] ([N, D])."""
        chunks = self._tokenizer(encoder).tokenize_with_weights(text)
        row = [entry[0] for entry in chunks[0]]
        if vectors is None:
            return row
        k, pid = 0, self._placeholder_ids[encoder]
        for i, token in enumerate(row):
            if isinstance(token, int) and token == pid:
                row[i] = vectors[k % vectors.shape[0]].detach().float().cpu()
                k += 1
        if k == 0:
            raise GFTIError(f"the learned token falls outside CLIP's first 75 tokens in {text[:60]!r}…; shorten "
                            "that caption or use templates=object")
        return row

    # -- images and loss ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.movedim(1, -1)[..., :3]  # [B, H, W, 3], a view: the input is never written
        with _posterior_mode(self.vae):
            raw = self.vae.encode(pixels)
        return self.model.model.process_latent_in(raw.float())

    @torch.no_grad()
    def denoise_loss(self, latents, timesteps, noise, cond, weights=None) -> torch.Tensor:
        self._load(latents.shape)
        bm, dev = self.model.model, self.device
        ms = bm.model_sampling  # read after loading: object patches (ModelSamplingDiscrete node) apply
        x0, eps = latents.to(dev, torch.float32), noise.to(dev, torch.float32)
        sigma = ms.sigma(timesteps.detach().cpu().float()).to(dev, torch.float32)
        sigma4 = sigma.view(-1, 1, 1, 1)  # 2024-03 noise_scaling does not reshape sigma itself
        x_t = ms.noise_scaling(sigma4, eps, x0)
        denoised = bm.apply_model(x_t, sigma, transformer_options=self._transformer_options(sigma),
                                  **self._model_conds(cond, x_t))
        return sigma_space_mse(x0, eps, x_t, denoised.float(), sigma, self._v_prediction(ms),
                               None if weights is None else weights.to(dev))

    @staticmethod
    def _v_prediction(model_sampling) -> bool:
        """ComfyUI builds the model-sampling class from a schedule and a prediction mixin (EPS, V_PREDICTION)."""
        import comfy.model_sampling as cms

        return isinstance(model_sampling, cms.V_PREDICTION)

    def _model_conds(self, cond: dict[str, Any], x_t: torch.Tensor) -> dict[str, torch.Tensor]:
        context = cond["c_crossattn"].to(self.device)  # 2024-03 apply_model does not move the context
        if self.family != "sdxl":
            return {"c_crossattn": context}
        h, w = x_t.shape[-2] * 8, x_t.shape[-1] * 8
        conds = self.model.model.extra_conds(
            cross_attn=context, pooled_output=cond["pooled"].to(self.device), width=w, height=h, crop_w=0,
            crop_h=0, target_width=w, target_height=h, device=self.device, noise=x_t)
        return {key: c.cond.to(self.device) for key, c in conds.items()}

    def _transformer_options(self, sigma: torch.Tensor) -> dict[str, Any]:
        opts = dict(self.model.model_options.get("transformer_options", {}))
        opts.update(cond_or_uncond=[0], sigmas=sigma)  # what the sampler adds; attention patches read them
        return opts

    def _load(self, shape: Sequence[int]) -> None:
        self.mm.load_models_gpu([self.model], memory_required=self.model.memory_required(list(shape)))

    def max_rows(self, latent_shape: Sequence[int]) -> int:
        """Largest power of two b with memory_required([b, …])·1.5 below the free memory (as ComfyUI's
        `_calc_cond_batch` decides); the engine halves it on an out-of-memory error."""
        if self._rows:
            return self._rows
        shape = list(latent_shape)
        self._load([1] + shape)
        free = self._free_memory()
        rows = 1
        while rows < _MAX_ROWS and self.model.memory_required([rows * 2] + shape) * 1.5 < free:
            rows *= 2
        return rows


    def _free_memory(self) -> int:
        """What the host's samplers ask before batching conditions: the model's own patcher where it can
        answer (newer ComfyUI, which counts the dynamic-VRAM headroom it manages), else model_management."""
        patcher = getattr(self.model.model, "current_patcher", None)
        ask = getattr(patcher, "get_free_memory", None)
        return ask(self.device) if callable(ask) else self.mm.get_free_memory(self.device)


def _detect(model, clip) -> tuple[str, tuple[EncoderSpec, ...]]:
    cm = clip.cond_stage_model
    names = tuple(sorted(n for n in ("clip_l", "clip_g", "clip_h") if isinstance(getattr(cm, n, None), torch.nn.Module)))
    family = family_of_encoders(names)
    widths = {n: int(getattr(cm, n).transformer.get_input_embeddings().weight.shape[1]) for n in names}
    config = model.model.model_config
    if config.inpaint_model():  # a method of the supported-model config: in_channels > 4
        raise GFTIError(f"this is an inpainting model ({type(config).__name__}, {config.unet_config['in_channels']} "
                        "input channels); GFTI learns words on base models — load the base (non-inpainting) "
                        "checkpoint of the same family; the learned word also works with its inpainting model")
    context = config.unet_config.get("context_dim")
    if family is None or context != sum(widths.values()):
        raise GFTIError(f"this MODEL/CLIP pair ({type(model.model.model_config).__name__}, text encoders "
                        f"{widths or 'none'}) is not an SD1.x, SD2.x or SDXL base model; GFTI supports those — "
                        "load one with Load Checkpoint and connect its MODEL and CLIP")
    order = ("clip_l", "clip_g") if family == "sdxl" else names
    return family, tuple(EncoderSpec(n, widths[n]) for n in order)


@contextlib.contextmanager
def _posterior_mode(vae):
    """Encode with the posterior mean. ComfyUI 2024-03 samples the KL posterior (global RNG); its regulariser
    has a `sample` switch, turned off for this call only. Any other sampling VAE sees a fixed seed on a
    forked RNG, so the host's random stream is never disturbed."""
    reg = getattr(getattr(vae, "first_stage_model", None), "regularization", None)
    sampling = bool(getattr(reg, "sample", False))
    if sampling:
        reg.sample = False
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        if sampling:
            reg.sample = True
