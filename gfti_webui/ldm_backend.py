"""`Backend` over the model a webui has loaded: A1111's ldm (SD1/SD2) and sgm (SDXL) models, and — with the
denoiser from `host_forge` — Forge's.

Text goes through the host's OWN conditioning call (`get_learned_conditioning`), so CLIP skip, the SDXL
size/pooled vector and the host's tokenisation apply exactly as when the webui generates. Candidate vectors
enter through a forward hook on each text encoder's token-embedding module that overwrites the placeholder
positions row by row (the diffusers backend's method). The hook reads the token ids the module receives, so
it works whether the module is the plain `nn.Embedding` (ldm), A1111's `EmbeddingsWithFixes` or Forge's
`CLIPEmbeddingForTextualInversion` (both wrap it and call it with ids).

Nothing here imports a webui module; hosts pass their calls in (`host_a1111`, `host_forge`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from gfti_core.backend import (PLACEHOLDER, EncoderSpec, choose_placeholder, family_of_widths,
                               per_row_mse, rows_for_memory, v_target)
from gfti_core.errors import GFTIError
from gfti_core.inject import inject_vectors

EncodeFn = Callable[[list[str]], Any]                                    # prompts -> host conditioning
# (x0, t, noise, cond, weights) -> per-row MSE against the model's own target (ε or v), see Backend.denoise_loss
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any, Any], torch.Tensor]


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder: its name/width, the token-embedding module to hook, and its word tokeniser."""

    spec: EncoderSpec
    embedding: torch.nn.Module
    tokenize: Callable[[str], list[int]]   # text -> ids without special tokens
    unk_id: int | None = None


def embedding_weight(module: torch.nn.Module) -> torch.Tensor:
    """The [V, D] table of a token-embedding module, looking through A1111/Forge wrappers (`.wrapped`)."""
    while not hasattr(module, "weight") and hasattr(module, "wrapped"):
        module = module.wrapped
    return module.weight


def token_embedding(encoder) -> torch.nn.Module:
    inner = getattr(encoder, "wrapped", encoder)  # A1111 hijack wrappers keep the ldm/sgm embedder here
    if hasattr(inner, "transformer"):             # HF CLIPTextModel (ldm/sgm FrozenCLIPEmbedder, Forge)
        return inner.transformer.get_input_embeddings()
    if hasattr(getattr(inner, "model", None), "token_embedding"):  # open_clip (SD2 clip_h, SDXL clip_g)
        return inner.model.token_embedding
    raise GFTIError(f"cannot find the token embedding of text encoder {type(inner).__name__}; GFTI supports "
                    "CLIP (transformers) and OpenCLIP text encoders")


def _tokenizer(encoder) -> tuple[Callable[[str], list[int]], int | None]:
    inner = getattr(encoder, "wrapped", encoder)
    tok = getattr(inner, "tokenizer", None)
    if tok is not None:
        return (lambda text: list(tok(text, add_special_tokens=False)["input_ids"])), tok.unk_token_id
    import open_clip  # the host's own dependency (A1111 installs it for SD2/SDXL)

    return open_clip.tokenizer._tokenizer.encode, None


def text_encoder(encoder, name: str) -> TextEncoder:
    """Wrap an ldm/sgm/A1111 embedder (FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder[2] or a hijack wrapper)."""
    embedding = token_embedding(encoder)
    tokenize, unk = _tokenizer(encoder)
    return TextEncoder(EncoderSpec(name, int(embedding_weight(embedding).shape[1])), embedding, tokenize, unk)


def named_encoders(embedders: Sequence[Any], make=text_encoder) -> list[TextEncoder]:
    """Name embedders by family (SD1 clip_l, SD2 clip_h, SDXL clip_l + clip_g) from their widths."""
    widths = [int(embedding_weight(token_embedding(e)).shape[1]) for e in embedders]
    _, names = family_of_widths(widths)
    return [make(e, n) for e, n in zip(embedders, names)]


# -- denoising losses: (x0, t, noise, cond, weights) -> per-row MSE against the model's own target ----------

def _unet_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def ldm_loss(model) -> LossFn:
    """ldm `LatentDiffusion` (A1111 SD1/SD2): x_t = q_sample, out = apply_model, target ε or v (`get_v`)."""
    if model.parameterization not in ("eps", "v"):
        raise GFTIError(f"model parameterization {model.parameterization!r} is not supported; GFTI needs an "
                        "eps- or v-prediction model")

    def loss(x0, t, noise, cond, weights):
        x_t = model.q_sample(x0, t, noise)
        dtype = _unet_dtype(model.model)
        out = model.apply_model(x_t.to(dtype), t, _cast(cond, dtype))
        target = model.get_v(x0, noise, t) if model.parameterization == "v" else noise
        return per_row_mse(out, target, weights)
    return loss


def sgm_loss(model) -> LossFn:
    """sgm `DiffusionEngine` as A1111 extends it (SDXL): `alphas_cumprod`, `apply_model(x, t, {crossattn,
    vector})`, `parameterization` set by A1111 from the denoiser scaling."""
    def loss(x0, t, noise, cond, weights):
        ac = model.alphas_cumprod.to(x0.device)[t].float()
        a = ac.view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0.float() + (1 - a).sqrt() * noise.float()
        dtype = _unet_dtype(model.model)
        out = model.apply_model(x_t.to(dtype), t, _cast(cond, dtype))
        v = getattr(model, "parameterization", "eps") == "v"
        return per_row_mse(out, v_target(x0.float(), noise.float(), ac) if v else noise, weights)
    return loss


def _cast(cond, dtype):
    if isinstance(cond, dict):
        return {k: _cast(v, dtype) for k, v in cond.items()}
    if isinstance(cond, list):
        return [_cast(v, dtype) for v in cond]
    return cond.to(dtype) if torch.is_tensor(cond) and cond.is_floating_point() else cond


# -- latents ---------------------------------------------------------------------------------------------------

def ldm_latents(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """[-1, 1] images -> scaled posterior mean, through ldm's own `encode_first_stage`."""
    def encode(x):
        post = model.encode_first_stage(x.to(_unet_dtype(model.first_stage_model)))
        return model.get_first_stage_encoding(post.mode() if hasattr(post, "mode") else post)
    return encode


def sgm_latents(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """[-1, 1] images -> scaled latents through sgm's own `encode_first_stage` (what A1111's img2img calls):
    under --medvram/--lowvram A1111 wraps `first_stage_model.encode` to move the VAE to the device first, so
    reaching past it to `first_stage_model.encoder` fails there. sgm's encode samples the posterior."""
    def encode(x):
        return model.encode_first_stage(x.to(_unet_dtype(model.first_stage_model)))
    return encode


class WebuiBackend:
    """`Backend` from parts: text encoders to hook, the host's conditioning call, a denoiser, a VAE encoder.

    `context` wraps every forward pass (A1111: `devices.autocast()`); `device` is where inputs go."""

    def __init__(self, *, encoders: Sequence[TextEncoder], condition: EncodeFn, loss: LossFn,
                 latents: Callable[[torch.Tensor], torch.Tensor], device: torch.device, model_name: str,
                 rows_per_call: int = 0, context: Callable[[], Any] = contextlib.nullcontext):
        self._encoders = {e.spec.name: e for e in encoders}
        self.family, _ = family_of_widths([e.spec.width for e in encoders])
        self.encoders = tuple(e.spec for e in encoders)
        self.device, self.model_name = torch.device(device), model_name
        self._condition, self._loss, self._latents = condition, loss, latents
        self._rows, self._context = rows_per_call, context
        self.placeholder, self._placeholder_ids = choose_placeholder(self.word_ids, list(self._encoders))

    def _encoder(self, name: str) -> TextEncoder:
        if name not in self._encoders:
            raise KeyError(f"encoder {name!r} is not one of {list(self._encoders)}")
        return self._encoders[name]

    def token_table(self, encoder: str) -> torch.Tensor:
        return embedding_weight(self._encoder(encoder).embedding).detach().float().cpu().clone()

    def word_ids(self, text: str, encoder: str) -> list[int] | None:
        enc = self._encoder(encoder)
        ids = enc.tokenize(text)
        return None if not ids or (enc.unk_id is not None and enc.unk_id in ids) else list(ids)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], vectors: Mapping[str, torch.Tensor] | None) -> Any:
        n = next(iter(vectors.values())).shape[1] if vectors else 1
        texts = [p.replace(PLACEHOLDER, " ".join([self.placeholder] * n)) for p in prompts]
        with contextlib.ExitStack() as stack:
            for name, enc in self._encoders.items():
                stack.enter_context(inject_vectors(enc.embedding, self._placeholder_ids[name], vectors and vectors[name]))
            with self._context():
                return self._condition(texts)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device) * 2 - 1
        with self._context():
            return torch.cat([self._latents(chunk).float() for chunk in x.split(8)])

    @torch.no_grad()
    def denoise_loss(self, latents, timesteps, noise, cond, weights=None) -> torch.Tensor:
        t = timesteps.to(self.device).long()
        with self._context():
            return self._loss(latents.to(self.device).float(), t, noise.to(self.device).float(), cond,
                              None if weights is None else weights.to(self.device))

    def max_rows(self, latent_shape: Sequence[int]) -> int:
        return self._rows or rows_for_memory(self.device, latent_shape, 2)  # webui weights are fp16


def ldm_backend(model, *, condition: EncodeFn | None = None, device=None, model_name: str = "",
                rows_per_call: int = 0, context=contextlib.nullcontext) -> WebuiBackend:
    """Backend over an ldm `LatentDiffusion` (SD1/SD2) or an sgm `DiffusionEngine` extended by A1111 (SDXL)."""
    sdxl = hasattr(model, "conditioner")
    embedders = ([e for e in model.conditioner.embedders if _is_text(e)] if sdxl else [model.cond_stage_model])
    device = device or next(model.model.parameters()).device
    return WebuiBackend(encoders=named_encoders(embedders),
                        condition=condition or model.get_learned_conditioning,
                        loss=sgm_loss(model) if sdxl else ldm_loss(model),
                        latents=sgm_latents(model) if sdxl else ldm_latents(model),
                        device=device, model_name=model_name or type(model).__name__,
                        rows_per_call=rows_per_call, context=context)


def _is_text(embedder) -> bool:
    inner = getattr(embedder, "wrapped", embedder)
    return hasattr(inner, "transformer") or hasattr(getattr(inner, "model", None), "token_embedding")
