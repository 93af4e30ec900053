"""A tiny ldm `LatentDiffusion` built by the REAL ldm code from a config, and the same weights as a diffusers
pipeline (converted with diffusers' own ldm→diffusers mapping), so both backends can be compared.

Sizes: text width 32 (2 layers), UNet model_channels 32, channel_mult [1, 2]; VAE ch 32; 16-px images →
8×8×4 latents. GroupNorm in ldm is fixed at 32 groups, hence no narrower channels.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

SCHEDULE = dict(linear_start=0.00085, linear_end=0.012)


def save_text_model(folder: Path, seed: int = 0) -> Path:
    """Tiny tokenizer + CLIPTextModel saved where ldm's FrozenCLIPEmbedder(version=...) can load them."""
    from gfti_core.tiny import _text_encoder, tiny_tokenizer

    tok = tiny_tokenizer(folder / "tok")
    tok.save_pretrained(folder)
    _text_encoder(tok, 32, seed=seed).save_pretrained(folder)
    return folder


def ldm_config(text_dir: Path, parameterization: str = "eps", linear: bool = False) -> dict:
    heads = {"num_head_channels": 8} if linear else {"num_heads": 8}  # SD2-style vs SD1-style attention
    unet = {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
            "params": dict(image_size=8, in_channels=4, out_channels=4, model_channels=32,
                           attention_resolutions=[1], num_res_blocks=1, channel_mult=[1, 2],
                           use_spatial_transformer=True, transformer_depth=1, context_dim=32,
                           use_checkpoint=False, legacy=False, use_linear_in_transformer=linear, **heads)}
    vae = {"target": "ldm.models.autoencoder.AutoencoderKL",
           "params": {"embed_dim": 4, "lossconfig": {"target": "torch.nn.Identity"},
                      "ddconfig": dict(double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3,
                                       ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
                                       dropout=0.0)}}
    clip = {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": {"version": str(text_dir), "device": "cpu", "max_length": 77}}
    return {"target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": dict(unet_config=unet, first_stage_config=vae, cond_stage_config=clip, timesteps=1000,
                           num_timesteps_cond=1, first_stage_key="jpg", cond_stage_key="txt", image_size=8,
                           channels=4, cond_stage_trainable=False, conditioning_key="crossattn",
                           monitor=None, scale_factor=0.18215, use_ema=False,
                           parameterization=parameterization, **SCHEDULE)}


def build_ldm(config: dict, seed: int = 0):
    from ldm.util import instantiate_from_config

    torch.manual_seed(seed)
    model = instantiate_from_config(config).eval()
    with torch.no_grad():  # random but not degenerate: ldm zero-inits the UNet's output convs
        for p in model.model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


def diffusers_twin(model, config: dict):
    """A StableDiffusionPipeline holding the ldm model's UNet/VAE weights (converted) and text encoder."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    p = config["params"]
    linear = p["unet_config"]["params"]["use_linear_in_transformer"]
    unet_cfg = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                    attention_head_dim=[4, 8] if linear else 8, use_linear_projection=linear)
    vae_cfg = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                   down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                   sample_size=16, scaling_factor=0.18215)
    sd = model.state_dict()
    unet = UNet2DConditionModel(**unet_cfg)
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet_cfg), strict=True)
    vae = AutoencoderKL(**vae_cfg)
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vae_cfg), strict=True)
    pred = "v_prediction" if p["parameterization"] == "v" else "epsilon"
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=SCHEDULE["linear_start"],
                          beta_end=SCHEDULE["linear_end"], prediction_type=pred, clip_sample=False)
    clip = model.cond_stage_model
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=clip.transformer, tokenizer=clip.tokenizer,
                                   unet=unet.eval(), scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_dir() -> Path:
    return save_text_model(Path(tempfile.mkdtemp(prefix="gfti-ldm-clip-")))
