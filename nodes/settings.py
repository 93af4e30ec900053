"""GFTI Settings: the run's advanced settings as one object for GFTI Initialize Inversion's optional `settings`
input (ComfyUI's convention of option nodes), so the Initialize node shows only what every run sets. Without
it, the config's defaults apply. Inputs and tooltips come from `InversionConfig` like every other node's."""
from __future__ import annotations

from types import MappingProxyType

from .config_inputs import ADVANCED_INIT_FIELDS, config_values, inputs_for

SETTINGS_TYPE = "GFTI_SETTINGS"


class GFTISettings:
    DESCRIPTION = ("The advanced settings of a GFTI run (start, search space, optimizer, final choice, memory). "
                   "Connect it to GFTI Initialize Inversion's settings input; without it the defaults apply.")
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    RETURN_TYPES = (SETTINGS_TYPE,)
    RETURN_NAMES = ("settings",)
    OUTPUT_TOOLTIPS = ("the settings, for GFTI Initialize Inversion",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": inputs_for(ADVANCED_INIT_FIELDS)}

    def execute(self, **inputs):
        # read-only: ComfyUI caches this output and hands the same object to every consumer
        return (MappingProxyType(config_values(inputs, ADVANCED_INIT_FIELDS)),)
