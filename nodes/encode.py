"""GFTI Encode With Inversion: CLIPTextEncode with the run's learned word — identical conditioning to
CLIPTextEncode with `embedding:<name>` after saving, without writing a file."""
from __future__ import annotations

import re

from ..gfti_core.backend import PLACEHOLDER_WORDS
from ..gfti_core.engine import final_vectors
from ..gfti_core.errors import GFTIError
from .inversion import INVERSION_TYPE

_KEYS = {"l": "clip_l", "g": "clip_g", "h": "clip_h"}  # tokenizer output key -> encoder name


class GFTIEncodeWithInversion:
    DESCRIPTION = "Encodes a prompt that mentions the run's token, with the learned vectors in its place."
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("conditioning for a sampler, as CLIPTextEncode gives",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "the text encoder of the model the run was made on"}),
            "inversion": (INVERSION_TYPE, {"tooltip": "the run whose final vector replaces the token"}),
            "text": ("STRING", {"multiline": True, "default": "a photo of gfti-concept", "tooltip": "the prompt; "
                                "write the run's token (or embedding:<token>) where the learned word goes"}),
        }}

    def execute(self, clip, inversion, text):
        vectors, _ = final_vectors(inversion.state, inversion.backend)
        tokens = tokens_with_vectors(clip, text, inversion.state.config.token, vectors)
        if hasattr(clip, "encode_from_tokens_scheduled"):  # ComfyUI ≥ 2025: what CLIPTextEncode returns
            return (clip.encode_from_tokens_scheduled(tokens),)
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled}]],)


def tokens_with_vectors(clip, text: str, token: str, vectors: dict) -> dict:
    """clip.tokenize(text) with each mention of `token` replaced by its N vectors, as `embedding:` would."""
    n = next(iter(vectors.values())).shape[0]
    mention = re.compile(rf"(?<![\w:-])(?:embedding:)?<?{re.escape(token)}>?(?![\w-])")
    if not mention.search(text):
        raise GFTIError(f"the text does not mention the run's token {token!r}; write it where the learned word "
                        f"goes, e.g. \"a photo of {token}\"")
    word = _free_placeholder(clip, text, [_KEYS[k] for k in clip.tokenize("")])
    tokens = clip.tokenize(mention.sub(" ".join([word] * n), text))
    for key, chunks in tokens.items():
        enc = _KEYS[key]
        if enc not in vectors:
            raise GFTIError(f"this CLIP has a {enc} encoder but the run learned {sorted(vectors)}; connect the CLIP "
                            "of the model the run was made on")
        tokens[key] = _replace(chunks, _single_id(getattr(clip.tokenizer, enc), word), vectors[enc])
    return tokens


def _replace(chunks, token_id: int, vecs):
    k, out = 0, []
    for chunk in chunks:
        row = []
        for entry in chunk:
            if isinstance(entry[0], int) and entry[0] == token_id:
                entry = (vecs[k % vecs.shape[0]].detach().float().cpu(), *entry[1:])
                k += 1
            row.append(entry)
        out.append(row)
    return out


def _single_id(tok, word: str) -> int | None:
    ids = tok.tokenizer(word)["input_ids"][tok.tokens_start:-1]
    return int(ids[0]) if len(ids) == 1 else None


def _free_placeholder(clip, text: str, encoders: list[str]) -> str:
    """A rare single-token word that the user's text does not already contain."""
    lowered = text.lower()
    for word in PLACEHOLDER_WORDS:
        if word not in lowered and all(_single_id(getattr(clip.tokenizer, e), word) is not None for e in encoders):
            return word
    raise GFTIError(f"the text contains every placeholder word {PLACEHOLDER_WORDS}; reword it")
