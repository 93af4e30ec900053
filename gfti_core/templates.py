"""Prompt templates (our own wording). Each holds PLACEHOLDER where the learned token goes."""
from __future__ import annotations

from .backend import PLACEHOLDER

OBJECT_TEMPLATES = (
    "a photo of {}", "a picture of {}", "an image of {}", "a close-up photo of {}", "a photo of the {}",
    "a rendering of {}", "a good photo of {}", "a cropped photo of {}", "a bright photo of {}",
    "a photo showing {}",
)
STYLE_TEMPLATES = (
    "a painting in the style of {}", "an artwork in the style of {}", "a picture in the style of {}",
    "an image in the style of {}", "a drawing in the style of {}", "a rendering in the style of {}",
    "a scene in the style of {}", "a work of art in the style of {}",
)


def fill(template: str) -> str:
    return template.format(PLACEHOLDER)


def prompts_for_images(kind: str, captions: list[str | None]) -> list[list[str]]:
    """Per image, the prompts it may be trained with. `captions` text is appended as context ("a photo of
    <*>, on a beach"); a caption that already names the token (contains `{}` or the placeholder) is used as is."""
    base = STYLE_TEMPLATES if kind == "style" else OBJECT_TEMPLATES
    if kind != "captions":
        return [[fill(t) for t in base] for _ in captions]
    out = []
    for caption in captions:
        if not caption:
            out.append([fill(t) for t in OBJECT_TEMPLATES])
        elif PLACEHOLDER in caption or "{}" in caption:
            out.append([caption.replace("{}", PLACEHOLDER)])
        else:
            out.append([f"{fill(t)} {caption}" for t in OBJECT_TEMPLATES[:4]])
    return out
