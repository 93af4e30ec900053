"""Build a tiny random SD1 checkpoint (+ its A1111 .yaml) with the original ldm classes A1111 1.10.1 pins.

    PYTHONPATH=<a1111>/repositories/stable-diffusion-stability-ai <a1111 venv python> tiny_sd1.py OUT.safetensors

Full-size CLIP-L text encoder and SD VAE (Forge's huggingface_guess detects SD1.5 from exact tensor shapes) and
a UNet cut to two levels of 320 channels, attention at the first: small enough for a CPU, still an SD1.5 UNet
to both webuis. Weights are random (seeded); the ones ldm initialises to zero (output convs, attention
out-projections) get random values too, or every prompt would give the same picture. fp16 on disk.
The .yaml beside the checkpoint is what A1111 loads it with (`modules/sd_models_config.py`).
"""
from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

log = logging.getLogger("tiny_sd1")

UNET = {"model_channels": 320, "channel_mult": [1, 1], "num_res_blocks": 1, "attention_resolutions": [1],
        "num_heads": 8, "transformer_depth": 1, "context_dim": 768}


def inference_yaml(webui: Path) -> dict:
    cfg = yaml.safe_load((webui / "configs" / "v1-inference.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["model"]["params"]["unet_config"]["params"].update(UNET)
    return cfg


def clip_text_config():
    """CLIP-L's text tower (the shape SD1 checkpoints carry)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=768)


def randomise(module: torch.nn.Module, scale: float = 0.02) -> None:
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1 and not bool(p.abs().sum()):
                p.normal_(0.0, scale)
            elif p.dim() == 1 and not bool(p.abs().sum()) and p.numel() > 1:
                p.normal_(0.0, scale)


def state_dict(cfg: dict) -> dict[str, torch.Tensor]:
    from ldm.models.autoencoder import AutoencoderKL
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from transformers import CLIPTextModel

    params = cfg["model"]["params"]
    unet = UNetModel(**params["unet_config"]["params"])
    randomise(unet)
    vae = AutoencoderKL(**params["first_stage_config"]["params"])
    clip = CLIPTextModel(clip_text_config())
    out = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae),
                           ("cond_stage_model.transformer.", clip)):
        out.update({prefix + k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()
                    if v.is_floating_point()})
    return out


def main(out: str) -> int:
    logging.basicConfig(level=logging.INFO)
    torch.manual_seed(0)
    path = Path(out)
    webui = Path.cwd()
    cfg = inference_yaml(webui)
    tensors = state_dict(cfg)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    path.with_suffix(".yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    log.info("wrote %s (%d tensors, %.0f MB)", path, len(tensors), path.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
