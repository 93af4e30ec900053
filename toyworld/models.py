"""Architectures of the toy Stable-Diffusion model (SD1 layout, tiny sizes, SD1 text width)."""
from __future__ import annotations

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .scenes import IMAGE_SIZE
from .tokenizer import MODEL_MAX_LENGTH

TEXT_WIDTH = 768  # SD1's token-embedding width: the inversion search space must match it
VAE_FACTOR = 4
LATENT_SIZE = IMAGE_SIZE // VAE_FACTOR
LATENT_CHANNELS = 4


def build_vae(groups: int = 32, image_size: int = IMAGE_SIZE) -> AutoencoderKL:
    # groups=32 on 32 channels is per-channel normalisation, which erases absolute colour
    # of flat images; fewer groups (e.g. 8) keep it. 32 is what the v1 model was trained with.
    # Three blocks = two downsamplings: 64 px -> 16x16x4 latents.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=groups,
        sample_size=image_size)


def build_text_encoder(vocab_size: int, bos_id: int, eos_id: int, pad_id: int,
                       layers: int = 2, intermediate: int = 1024, width: int = TEXT_WIDTH,
                       max_length: int = MODEL_MAX_LENGTH) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=width // 64, max_position_embeddings=max_length,
        hidden_act="quick_gelu", projection_dim=width,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    return CLIPTextModel(config)


def build_unet(channels: tuple[int, ...], groups: int = 32, latent_size: int = LATENT_SIZE,
               text_width: int = TEXT_WIDTH) -> UNet2DConditionModel:
    n = len(channels)
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=channels, layers_per_block=1, cross_attention_dim=text_width,
        attention_head_dim=8, norm_num_groups=groups)


def build_scheduler(prediction_type: str = "v_prediction") -> DDPMScheduler:
    # DDPM's linear schedule, not SD's scaled_linear: at 16x16 latents SD's schedule leaves the image mean
    # readable at t=999 (signal 0.068 against pooled noise 1/16), so a model learns to take background and
    # colour from x_t instead of from the text, and then ignores the prompt when sampling from pure noise
    # (v3: a green background 33 % of the time when asked). Linear 1e-4..0.02 ends at 0.0064.
    # v-prediction because epsilon is ill-posed that close to zero SNR (predicting x_t minus a trace of x0):
    # an epsilon model on this schedule set the global colour from the starting noise, not the prompt
    # (measured: colour right 10 %). "trailing" makes DDIM start at t=999.
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                         beta_schedule="linear", prediction_type=prediction_type,
                         clip_sample=False, timestep_spacing="trailing")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
