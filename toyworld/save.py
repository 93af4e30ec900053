"""Saving the toy pipeline (fp16 safetensors) and its TRAINING.md record."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

log = logging.getLogger(__name__)


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet, scheduler) -> dict:
    """Save fp16 copies (training modules stay fp32) and return component sizes in MB."""
    out = Path(out)
    half = [copy.deepcopy(m).to(torch.float16) for m in (vae, text_encoder, unet)]
    pipe = StableDiffusionPipeline(
        vae=half[0], text_encoder=half[1], tokenizer=tokenizer, unet=half[2], scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    sizes = {}
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        sizes[part] = round(sum(f.stat().st_size for f in (out / part).rglob("*") if f.is_file()) / 1e6, 2)
    sizes["total"] = round(sum(sizes.values()), 2)
    log.info("saved %s: %s MB", out, sizes)
    return sizes


def write_training_md(out: Path, info: dict) -> None:
    lines = [
        "# Toy-world Stable Diffusion model: training record", "",
        "Written by `toyworld/train.py`; evaluation numbers are appended by `toyworld/evaluate.py`.", "",
        f"- command: `{info['command']}`",
        f"- seed: {info['seed']}; torch threads: {info['threads']} (CPU)",
        f"- VAE steps: {info['vae_steps']} ({info['vae_minutes']} min)"
        + (f", fine-tuned from `{info['vae_init']}`" if info.get("vae_init") else ""),
        f"- VAE reconstructions of held-out concepts, classifier shape+colour right: "
        f"{info.get('vae_recon_accuracy')}",
        f"- UNet + text-encoder steps: {info['unet_steps']} (batch {info['batch']}, "
        f"{info['specs']} shape/colour/background specs x {info['per_spec']} cached images)"
        + (f", continued from `{info['unet_init']}` at lr {info['lr']}" if info.get("unet_init") else ""),
        f"- total wall time: {info['wall_minutes']} min; final smoothed loss {info['final_loss']}",
        f"- sizes (MB, fp16 safetensors): {info['sizes_mb']}", "",
        "Reproduce exactly with the recorded step count: add `--unet-steps "
        f"{info['unet_steps']}` (the default picks the count from measured throughput).", "",
    ]
    (Path(out) / "TRAINING.md").write_text("\n".join(lines))
