"""Build the smallest SD1.5 checkpoint ComfyUI's `CheckpointLoaderSimple` accepts.

UNet: model_channels 320 (pinned by the SD15 detector), one level, one res block, one transformer block, no
middle block (18.7M params). Text encoder: full CLIP-L shape (ComfyUI 2024-03 cannot load a smaller one),
random weights. VAE: TAESD layout (2.4M params) with SD1's vae_scale. Saved fp16, ≈289 MB.

Run as a script with ComfyUI importable: `python tiny_checkpoint.py COMFY_DIR OUT.safetensors`.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

RECIPE_VERSION = "1"
UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
    "channel_mult": [1], "transformer_depth_middle": -2, "use_linear_in_transformer": False,
    "context_dim": 768, "num_heads": 8, "num_head_channels": -1, "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


def _fill(module: torch.nn.Module, prefix: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights for every parameter of a meta-device module: norms 1/0, matrices ~ 1/sqrt(fan_in)."""
    out = {}
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    norms = {f"{name}.{p}" for name, m in module.named_modules() if isinstance(m, norm_types) for p in ("weight", "bias")}
    for name, p in module.state_dict().items():
        if name.endswith(("text_projection.weight", "logit_scale")):
            continue  # real SD1 checkpoints carry neither; ComfyUI builds them itself
        shape = tuple(p.shape)
        if name in norms:
            t = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
        elif name.endswith("token_embedding.weight"):
            t = torch.randn(shape, generator=gen) * 0.014
        elif name.endswith("position_embedding.weight"):
            t = torch.randn(shape, generator=gen) * 0.01
        elif name.endswith("vae_scale"):
            t = torch.tensor(0.18215)
        elif len(shape) <= 1:
            t = torch.randn(shape, generator=gen) * 0.01
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        out[prefix + name] = t.to(torch.float16)
    return out


def build(out: Path, seed: int = 0) -> Path:
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops
    import comfy.sd1_clip
    import comfy.taesd.taesd

    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"), torch.no_grad():
        unet = UNetModel(**UNET_CONFIG, device="meta", operations=comfy.ops.disable_weight_init)
        clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16)
        taesd = comfy.taesd.taesd.TAESD()
    sd = _fill(unet, "model.diffusion_model.", gen)
    sd.update(_fill(clip.transformer, "cond_stage_model.transformer.", gen))
    sd.update(_fill(taesd, "first_stage_model.", gen))
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(sd, str(tmp), metadata={"gfti.test_recipe": RECIPE_VERSION, "unet": json.dumps(UNET_CONFIG)})
    tmp.replace(out)
    return out


if __name__ == "__main__":
    comfy_dir, target = sys.argv[1], Path(sys.argv[2])
    sys.path.insert(0, comfy_dir)
    sys.argv = ["x", "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    print(build(target))
