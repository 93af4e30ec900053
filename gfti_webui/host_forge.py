"""Forge specifics (from Forge `dfdcbab6`'s source), imported lazily.

Forge has no ldm model: text goes through `sd_model.text_processing_engine[_l|_g]` (transformers CLIP with
Forge's `CLIPEmbeddingForTextualInversion` around the token embedding, which our hook wraps), the UNet is a
ComfyUI-style patcher (`forge_objects_original.unet`, sigma-space `apply_model` returning x0), and each text
engine keeps its own embedding database (no `model_hijack.embedding_db`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from gfti_core.backend import EncoderSpec, family_of_widths, sigma_space_mse
from gfti_core.errors import GFTIError
from gfti_core.formats import Embedding

from .host_a1111 import conditioning, embedding_data
from .job import Host
from .ldm_backend import TextEncoder, WebuiBackend, embedding_weight, token_embedding

ENGINE_ATTRS = ("text_processing_engine", "text_processing_engine_l", "text_processing_engine_g")


def engines(model) -> list:
    """The model's text engines in encoder order (SDXL: l then g)."""
    return [getattr(model, a) for a in ENGINE_ATTRS if getattr(model, a, None) is not None]


def engine_encoders(model) -> list[TextEncoder]:
    found = engines(model)
    modules = [token_embedding(e.text_encoder) for e in found]
    _, names = family_of_widths([int(embedding_weight(m).shape[1]) for m in modules])
    out = []
    for eng, module, name in zip(found, modules, names):
        tok = eng.tokenizer
        out.append(TextEncoder(EncoderSpec(name, int(embedding_weight(module).shape[1])), module,
                               lambda text, tok=tok: list(tok(text, add_special_tokens=False)["input_ids"]),
                               tok.unk_token_id))
    return out


def forge_loss(model):
    """Forge's sigma-space loss: x_in = x0 + σε, den = apply_model (x0); ε- or v-MSE by the
    predictor's type (`sigma_space_mse`)."""
    from backend import memory_management

    unet = model.forge_objects_original.unet  # forge_objects may still carry a LoRA

    def loss(x0, t, noise, cond, weights):
        need = unet.model.memory_required([x0.shape[0]] + list(x0.shape[1:]))
        memory_management.load_models_gpu([unet], memory_required=need)
        km = unet.model
        sigma = km.predictor.sigmas.to(x0.device)[t.to(x0.device)].float()
        s4 = sigma.view(-1, 1, 1, 1)
        x_in = km.predictor.noise_scaling(s4, noise, x0)
        parts = cond if isinstance(cond, dict) else {"crossattn": cond}
        den = km.apply_model(x_in, sigma, c_crossattn=parts["crossattn"], y=parts.get("vector"),
                             transformer_options={})
        # Forge's k_prediction.Prediction keeps its type as a string ("epsilon", "v_prediction", ...).
        v = str(getattr(km.predictor, "prediction_type", "epsilon")).startswith("v")
        return sigma_space_mse(x0, noise, x_in, den.float(), sigma, v, weights)
    return loss


def forge_latents(model):
    """[-1, 1] images → scaled posterior mean (Forge's `encode_first_stage` samples)."""
    from backend import memory_management

    def encode(x):
        vae = model.forge_objects.vae
        memory_management.load_model_gpu(vae.patcher)
        fsm = vae.first_stage_model
        z = fsm.encode(x.to(vae.device, vae.vae_dtype), regulation=lambda posterior: posterior.mode())
        return fsm.process_in(z.float())
    return encode


SUPPORTED = "SD1, SD2 and SDXL base checkpoints"


def check_family(model) -> str:
    """The family from the loaded engine's own fields (`is_sd1/is_sd2/is_sdxl/is_sd3/is_inpaint`, set by Forge
    from huggingface_guess), not from text-encoder widths: Flux has a CLIP-L too, SD3.5 a CLIP-G."""
    kind = type(model).__name__
    if getattr(model, "is_inpaint", False):
        raise GFTIError(f"the loaded checkpoint is an inpainting model; GFTI trains on {SUPPORTED}: load one")
    if "Refiner" in kind:
        raise GFTIError(f"the loaded checkpoint is an SDXL refiner; GFTI trains on {SUPPORTED}: load a base model")
    for family in ("sd1", "sd2", "sdxl"):
        if getattr(model, f"is_{family}", False):
            return family
    raise GFTIError(f"the loaded checkpoint is {kind} (Flux, SD3 and other families are not supported); "
                    f"GFTI trains on {SUPPORTED}: load one")


def backend(resolution: int, rows_per_call: int = 0) -> WebuiBackend:
    from backend import memory_management
    from modules import sd_models, shared

    sd_models.forge_model_reload()
    model = shared.sd_model
    check_family(model)
    return WebuiBackend(encoders=engine_encoders(model), condition=conditioning(model, resolution),
                        loss=forge_loss(model), latents=forge_latents(model),
                        device=memory_management.get_torch_device(),
                        model_name=getattr(getattr(model, "sd_checkpoint_info", None), "name", "") or "forge-model",
                        rows_per_call=rows_per_call, context=torch.inference_mode)


def register(name: str, emb: Embedding | None) -> None:
    """Register (None: remove) `name` on every text engine (SDXL engines pick their clip_l/clip_g half)."""
    from backend.text_processing.textual_inversion import create_embedding_from_data
    from modules import shared

    for eng in engines(shared.sd_model):
        made = None if emb is None else create_embedding_from_data(embedding_data(emb), name)
        eng.embeddings.register_embedding_by_name(made, name)


def publish(path: Path, emb: Embedding) -> None:
    register(path.stem, emb)


def generate(prompt: str, emb: Embedding, count: int, seed: int, resolution: int) -> list:
    from . import host_a1111

    register(emb.token, emb)
    try:
        return host_a1111.txt2img(prompt, count, seed, resolution)
    finally:
        register(emb.token, None)


def host() -> Host:
    from modules import shared

    return Host(backend=backend, state=shared.state, embeddings_dir=lambda: shared.cmd_opts.embeddings_dir,
                publish=publish, preview=generate)


def is_forge() -> bool:
    """True inside Forge (its `backend` package with the text engines is importable)."""
    import importlib.util

    try:
        return importlib.util.find_spec("backend.text_processing") is not None
    except ModuleNotFoundError:
        return False
