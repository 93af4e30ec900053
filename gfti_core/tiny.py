"""Tiny random Stable Diffusion pipelines built from configs, for tests, benchmarks and smoke runs.

Nothing is downloaded: the tokenizer vocabulary (the 256 byte symbols, their end-of-word forms, the
placeholder word `sks` and its merges) is written here. Families: sd1 (eps), sd2 (v-prediction, text width
1024 like SD2) and sdxl (two encoders, pooled + time-id conditioning).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

_BYTES = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + [chr(c) for c in range(174, 256)]
_BYTES += [chr(256 + i) for i in range(256 - len(_BYTES))]  # CLIP's byte→unicode table covers 256 symbols


def tiny_tokenizer(folder: Path | None = None):
    """A CLIPTokenizer whose vocabulary is bytes + `sks` (the placeholder), max length 77."""
    from transformers import CLIPTokenizer

    folder = Path(folder or tempfile.mkdtemp(prefix="gfti-tok-"))
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for sym in _BYTES + [b + "</w>" for b in _BYTES] + ["sk", "sks</w>", "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(sym, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\ns k\nsk s</w>\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _text_encoder(tok, hidden: int, projection: int | None = None, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=len(tok.get_vocab()), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.eos_token_id, projection_dim=projection or hidden)
    model = CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)
    with torch.no_grad():  # token rows with a realistic spread (CLIP's std is ~0.015-0.03 per entry)
        model.get_input_embeddings().weight.normal_(0, 0.3)
    return model.eval()


def _unet(cross_dim: int, sdxl: bool = False, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    extra = {}
    if sdxl:
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + 32)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), cross_attention_dim=cross_dim,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                attention_head_dim=8, norm_num_groups=8, **extra).eval()


def _vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=16).eval()


def tiny_pipeline(family: str = "sd1", seed: int = 0):
    """A random pipeline of the family ('sd1', 'sd2' or 'sdxl'); 16-px images, 8×8×4 latents."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    tok = tiny_tokenizer()
    pred = "v_prediction" if family == "sd2" else "epsilon"
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          prediction_type=pred, steps_offset=1, clip_sample=False)
    if family == "sdxl":
        te1, te2 = _text_encoder(tok, 32, seed=seed), _text_encoder(tok, 64, projection=32, seed=seed + 1)
        pipe = StableDiffusionXLPipeline(vae=_vae(seed), text_encoder=te1, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=tok, unet=_unet(96, sdxl=True, seed=seed), scheduler=sched)
    else:
        hidden = 1024 if family == "sd2" else 32
        pipe = StableDiffusionPipeline(vae=_vae(seed), text_encoder=_text_encoder(tok, hidden, seed=seed),
                                       tokenizer=tok, unet=_unet(hidden, seed=seed), scheduler=sched,
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_images(count: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Simple coloured squares on noise, [count, 3, size, size] in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.rand(count, 3, size, size, generator=gen) * 0.2
    imgs[:, 0, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0.9
    return imgs
