"""The tiny ComfyUI checkpoint as a diffusers pipeline with the very same tensors (for cross-host checks).

Text encoder: transformers' CLIPTextModel with ComfyUI's sd1_clip_config.json and the checkpoint's
`cond_stage_model.transformer.*` weights; tokenizer: ComfyUI's own sd1_tokenizer files; UNet: diffusers'
UNet2DConditionModel shaped like tiny_checkpoint.UNET_CONFIG, keys mapped with ComfyUI's own
`comfy.utils.unet_to_diffusers`; scheduler: SD's scaled-linear DDPM schedule. The VAE is a small random
AutoencoderKL — the comparison feeds both hosts the same latents.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def _text_encoder(sd: dict, comfy_dir: Path):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = json.loads((comfy_dir / "comfy" / "sd1_clip_config.json").read_text())
    model = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in config.items() if not k.startswith("_")}))
    prefix = "cond_stage_model.transformer."
    weights = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}
    if not any(k.startswith("text_model.") for k in model.state_dict()):  # transformers 5 drops the wrapper
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing[:5], unexpected[:5])
    return model.eval()


def _unet(sd: dict, unet_config: dict):
    import comfy.utils
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(320,),
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",), mid_block_type=None,
        cross_attention_dim=unet_config["context_dim"], attention_head_dim=unet_config["num_heads"])
    prefix = "model.diffusion_model."
    key_map = comfy.utils.unet_to_diffusers(unet_config)
    weights = {d: sd[prefix + c].float() for d, c in key_map.items() if prefix + c in sd}
    unet.load_state_dict(weights, strict=True)
    return unet.eval()


def diffusers_pipeline(checkpoint: Path, comfy_dir: Path):
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    sd = load_file(str(checkpoint))
    with safe_open(str(checkpoint), "pt") as f:
        unet_config = json.loads(f.metadata()["unet"])
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=64).eval()
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False)
    tokenizer = CLIPTokenizer.from_pretrained(str(comfy_dir / "comfy" / "sd1_tokenizer"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=_text_encoder(sd, comfy_dir), tokenizer=tokenizer,
                                   unet=_unet(sd, unet_config), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
