"""GFTI Load Training Images: a folder of 3–20 images → IMAGE, MASK (from alpha) and one caption line per image."""
from __future__ import annotations

import hashlib

import torch

from ..gfti_core.images import IMAGE_SUFFIXES, load_image_folder
from .host import input_folder


class GFTILoadTrainingImages:
    DESCRIPTION = "Loads every image of a folder, square-cropped to one resolution, for an inversion run."
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("images", "masks", "captions")
    OUTPUT_TOOLTIPS = ("the images, [B, H, W, 3]", "1 = opaque (train on it), from alpha; all ones without alpha",
                       "one line per image: the text of <image>.txt beside it, or an empty line")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "gfti_training", "tooltip": "folder inside ComfyUI's input folder, or "
                                  "an absolute path; 3–20 .png/.jpg/.webp images (+ optional <name>.txt captions)"}),
            "resolution": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip":
                                   "square size the images are cropped to: 512 for SD1, 768 for SD2, 1024 for SDXL"}),
        }}

    @classmethod
    def IS_CHANGED(cls, folder, resolution):
        """Re-run when a file in the folder is added, removed or rewritten."""
        try:
            path = input_folder(folder)
            entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES | {".txt"})
        except OSError:
            return ""
        return hashlib.sha256(repr((entries, resolution)).encode()).hexdigest()

    def execute(self, folder, resolution):
        found = load_image_folder(input_folder(folder), resolution)
        images = found.images.movedim(1, -1).contiguous()
        masks = found.masks[:, 0] if found.masks is not None else torch.ones(images.shape[:3])
        captions = "\n".join(" ".join((c or "").split()) for c in found.captions)
        return {"ui": {"text": found.warnings}, "result": (images, masks, captions)}
