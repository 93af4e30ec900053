"""AUTOMATIC1111 specifics, imported lazily: nothing here runs at import time (tests import it without a webui).

From A1111 `45b8a499`'s source (≈1.8–1.10): `shared.sd_model` is an ldm `LatentDiffusion`
(SD1/SD2) or an sgm `DiffusionEngine` extended by `sd_models_xl` (SDXL: `alphas_cumprod`, `parameterization`,
`get_learned_conditioning(SdConditioning)` → {crossattn, vector}). Embeddings live in
`sd_hijack.model_hijack.embedding_db`.
"""
from __future__ import annotations

import re
from pathlib import Path

from gfti_core.formats import Embedding

from .job import Host
from .ldm_backend import WebuiBackend, ldm_backend

_ATTENTION_CHARS = re.compile(r"([()\[\]\\])")


def escape_prompt(text: str) -> str:
    """Caption text must not change A1111's attention weights: escape ( ) [ ] and backslashes."""
    return _ATTENTION_CHARS.sub(r"\\\1", text)


def conditioning(model, resolution: int):
    """The host's own text path: `get_learned_conditioning` on an `SdConditioning` (SDXL reads width/height)."""
    from modules import prompt_parser

    def condition(texts: list[str]):
        prompts = [escape_prompt(t) for t in texts]
        sd_cond = getattr(prompt_parser, "SdConditioning", None)  # A1111 ≥ 1.6
        batch = sd_cond(prompts, width=resolution, height=resolution) if sd_cond else prompts
        return model.get_learned_conditioning(batch)
    return condition


def backend(resolution: int, rows_per_call: int = 0) -> WebuiBackend:
    from modules import devices, shared

    model = shared.sd_model
    info = getattr(model, "sd_checkpoint_info", None)
    return ldm_backend(model, condition=conditioning(model, resolution), device=devices.device,
                       model_name=getattr(info, "name", "") or "a1111-model", rows_per_call=rows_per_call,
                       context=devices.autocast)


def embedding_data(emb: Embedding) -> dict:
    """A1111's in-memory embedding dict: SD1/SD2 `string_to_param`, SDXL {clip_l, clip_g}."""
    if len(emb.vectors) == 1:
        return {"string_to_param": {"*": next(iter(emb.vectors.values())).float()}}
    return {k: v.float() for k, v in emb.vectors.items()}


def register(name: str, emb: Embedding | None) -> None:
    """Register (or with None, remove) an embedding under `name` in A1111's database. Hold the queue lock."""
    from modules import sd_hijack, shared
    from modules.textual_inversion.textual_inversion import create_embedding_from_data

    db = sd_hijack.model_hijack.embedding_db
    made = None if emb is None else create_embedding_from_data(embedding_data(emb), name)
    db.register_embedding_by_name(made, shared.sd_model, name)


def publish(path: Path, emb: Embedding) -> None:
    """The file is in the embeddings folder (its mtime changed): reload the database so it is usable now."""
    from modules import sd_hijack

    sd_hijack.model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)


def txt2img(prompt: str, count: int, seed: int, resolution: int) -> list:
    """Images from the webui's own txt2img (sampler, VAE, hires settings off); no files saved."""
    from modules import processing, shared

    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model, prompt=prompt, negative_prompt="", seed=seed,
        steps=int(shared.opts.data.get("gfti_preview_steps", 20)),
        cfg_scale=float(shared.opts.data.get("gfti_preview_cfg", 7.0)),
        width=resolution, height=resolution, batch_size=count, n_iter=1,
        do_not_save_samples=True, do_not_save_grid=True)
    try:
        return list(processing.process_images(p).images)[:count]
    finally:
        p.close()


def generate(prompt: str, emb: Embedding, count: int, seed: int, resolution: int) -> list:
    """Preview images with the embedding registered under its (temporary) name for this call only."""
    register(emb.token, emb)
    try:
        return txt2img(prompt, count, seed, resolution)
    finally:
        register(emb.token, None)


def host() -> Host:
    from modules import shared

    return Host(backend=backend, state=shared.state, embeddings_dir=lambda: shared.cmd_opts.embeddings_dir,
                publish=publish, preview=generate)
