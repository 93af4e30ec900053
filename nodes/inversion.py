"""What travels along a GFTI_INVERSION link, and the tensor-layout conversions between ComfyUI and the engine."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..gfti_core.engine import RunState
from ..gfti_core.errors import GFTIError

INVERSION_TYPE = "GFTI_INVERSION"


@dataclass(frozen=True)
class Inversion:
    """An immutable snapshot of a run: the engine state plus what continuing it needs.

    state: the engine's RunState; backend: the ComfyBackend over the MODEL/CLIP/VAE the run started on;
    images [B, 3, H, W] / masks [B, 1, H, W] | None / captions: the training inputs (to re-template);
    run_id: fixed at Initialize, written into saved files so a re-save may overwrite its own file."""

    state: RunState
    backend: object
    images: torch.Tensor
    masks: torch.Tensor | None
    captions: list[str | None]
    run_id: str

    def advanced(self, state: RunState) -> "Inversion":
        return dataclasses.replace(self, state=state)

    def __repr__(self) -> str:  # shown in ComfyUI's error reports
        s = self.state
        return (f"Inversion(token={s.config.token!r}, family={s.family}, generation={s.generation}, "
                f"best_loss={s.best_loss:.6g})")


def images_bchw(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] in 0..1 → [B, 3, H, W] (a view, no copy, never written)."""
    if images.dim() != 4 or images.shape[-1] < 3:
        raise GFTIError(f"expected an IMAGE batch [B, H, W, 3], got shape {tuple(images.shape)}")
    return images[..., :3].movedim(-1, 1)


def masks_b1hw(masks: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor | None:
    """ComfyUI MASK [B, H, W] (or [H, W]) → [B, 1, H, W] matching `images` [B, 3, H, W]."""
    if masks is None:
        return None
    m = masks if masks.dim() == 3 else masks[None]
    if m.shape[0] == 1 and images.shape[0] > 1:
        m = m.expand(images.shape[0], -1, -1)
    if m.shape[0] != images.shape[0] or tuple(m.shape[-2:]) != tuple(images.shape[-2:]):
        raise GFTIError(f"masks {tuple(masks.shape)} do not match the images {tuple(images.shape)}; connect the "
                        "MASK output of the same Load Training Images node")
    return m[:, None].float()


def split_captions(text: str | None, count: int) -> list[str | None] | None:
    """One caption per line (the loader's format); empty lines mean 'no caption'."""
    if text is None:
        return None
    lines = text.split("\n") if text else []
    if len(lines) != count:
        raise GFTIError(f"got {len(lines)} caption line(s) for {count} image(s); connect the captions output of the "
                        "same Load Training Images node (one line per image)")
    return [line.strip() or None for line in lines]


def pil_to_image(img) -> torch.Tensor:
    """PIL image → ComfyUI IMAGE [1, H, W, 3] float32."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]
