"""GFTI Initialize Inversion: encode the training images once, choose the starting vector, build the search
space → generation 0 of a run (GFTI_INVERSION)."""
from __future__ import annotations

import json
import uuid

from ..gfti_core.config import InversionConfig
from ..gfti_core.engine import start_run
from ..gfti_core.init_vectors import describe_start
from ..gfti_core.objective import Cancelled
from ..gfti_core.start_progress import StartProgress
from .comfy_backend import ComfyBackend
from .config_inputs import ADVANCED_INIT_FIELDS, ESSENTIAL_INIT_FIELDS, config_values, inputs_for
from .host import Interrupts
from .inversion import INVERSION_TYPE, Inversion, images_bchw, masks_b1hw, split_captions
from .settings import SETTINGS_TYPE


class GFTIInitializeInversion:
    DESCRIPTION = ("Starts a gradient-free textual inversion run on the connected model: encodes the images, "
                   "picks the starting vector and the search space. Connect it to GFTI ES Optimize Step.")
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    RETURN_TYPES = (INVERSION_TYPE, "STRING")
    RETURN_NAMES = ("inversion", "init_info")
    OUTPUT_TOOLTIPS = ("the run at generation 0", "how the run starts, in words (the words mixed into the start "
                       "vector; with auto_context, the phrase chosen for each image), then the details as JSON")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "the SD1.x / SD2.x / SDXL model to learn the word for"}),
                "clip": ("CLIP", {"tooltip": "the model's text encoder (CLIP skip and CLIP LoRAs apply)"}),
                "vae": ("VAE", {"tooltip": "the model's VAE (encodes the training images once)"}),
                "images": ("IMAGE", {"tooltip": "3–20 images of the concept, e.g. from GFTI Load Training Images"}),
                **inputs_for(ESSENTIAL_INIT_FIELDS),
            },
            "optional": {
                "masks": ("MASK", {"tooltip": "1 = subject (full weight), 0 = background (weight 0.1). ComfyUI's "
                                   "Load Image gives 1 − alpha: invert that one first"}),
                "settings": (SETTINGS_TYPE, {"tooltip": "the advanced settings, from a GFTI Settings node; "
                             "without it the defaults apply"}),
                "captions": ("STRING", {"forceInput": True, "tooltip": "one caption per image and line (the "
                                        "loader's captions output); used by templates=captions"}),
            },
        }

    def execute(self, model, clip, vae, images, masks=None, captions=None, settings=None, **widgets):
        advanced = {k: v for k, v in (settings or {}).items() if k in ADVANCED_INIT_FIELDS}
        cfg = InversionConfig(**advanced, **config_values(widgets, ESSENTIAL_INIT_FIELDS))
        backend = ComfyBackend(model, clip, vae, rows_per_call=cfg.batch_rows)
        pixels = images_bchw(images)
        mask = masks_b1hw(masks, pixels)
        lines = split_captions(captions, pixels.shape[0])
        state = _start(backend, cfg, pixels, lines, mask)
        inversion = Inversion(state, backend, pixels, mask, lines or [None] * pixels.shape[0], uuid.uuid4().hex)
        summary = describe_start(state.init_info) + [json.dumps(state.init_info, sort_keys=True)]
        return inversion, "\n".join(summary)


def _start(backend, cfg, pixels, lines, mask):
    """start_run with ComfyUI's progress bar (rows the start scored out of rows planned) and its cancel: the
    progress hook of a server raises on /interrupt, and the engine polls the flag between chunks."""
    from comfy.utils import ProgressBar

    bar, interrupts = ProgressBar(1), Interrupts()

    def on_progress(p: StartProgress) -> None:
        interrupts.guarded(bar.update_absolute, p.done_rows, max(1, p.total_rows))

    try:
        return start_run(backend, cfg, pixels, lines, mask, should_stop=interrupts.should_stop,
                         on_progress=on_progress)
    except Cancelled:
        interrupts.restore()
        interrupts.mm.throw_exception_if_processing_interrupted()  # ComfyUI ends the prompt as interrupted
        raise
