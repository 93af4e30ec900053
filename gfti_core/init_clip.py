"""`clip-attention` init, the original GF-TI recipe made explicit: CLIP image features of the user's images
attend over CLIP text features of candidate words (softmax over cosine / temperature), and the attention
weights mix those words' token embeddings. Needs a local CLIP model folder with both towers."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ConfigError, InversionConfig

log = logging.getLogger(__name__)

_CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
_CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")


def _features(output) -> torch.Tensor:
    """transformers returns a tensor (4.x) or an output object with pooler_output (5.x)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def load_clip(folder: str):
    from transformers import AutoTokenizer, CLIPModel

    if not Path(folder).is_dir():
        raise ConfigError(f"init_clip_model {folder!r} is not a folder; give a local CLIP model folder "
                          "(config.json, weights and tokenizer files)")
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


@torch.no_grad()
def clip_attention_init(cfg: InversionConfig, images: torch.Tensor, words: list[str],
                        word_vecs: dict[str, torch.Tensor]):
    """images [B, 3, H, W] in [0, 1]; word_vecs {enc: [W, D]} → ({enc: [N, D]}, info)."""
    model, tokenizer = load_clip(cfg.init_clip_model)
    size = model.config.vision_config.image_size
    pixels = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False)
    img = F.normalize(_features(model.get_image_features(pixel_values=(pixels - _CLIP_MEAN) / _CLIP_STD)), dim=-1)
    text = []
    for template in _TEMPLATES:
        ids = tokenizer([template.format(w) for w in words], padding=True, return_tensors="pt")
        text.append(F.normalize(_features(model.get_text_features(**ids)), dim=-1))
    text = F.normalize(torch.stack(text).mean(0), dim=-1)
    attention = torch.softmax(img @ text.T / cfg.clip_temperature, dim=-1).mean(0)  # [W]
    out = {}
    for enc, v in word_vecs.items():
        mix = attention @ v
        out[enc] = (mix * ((attention * v.norm(dim=1)).sum() / mix.norm().clamp_min(1e-8))).expand(
            cfg.num_vectors, -1).clone()
    ranked = torch.argsort(attention, descending=True).tolist()
    info = {"mode": "clip-attention", "top": [{"word": words[i], "weight": round(float(attention[i]), 4)}
                                              for i in ranked[:10]],
            "ranked_words": [words[i] for i in ranked[:32]]}  # the subspace's word rows
    return out, info
