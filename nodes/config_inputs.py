"""Node inputs and tooltips built from `InversionConfig`'s field metadata — never a hand-copied list."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from ..gfti_core.config import field_specs

# Settings a chained ES step may change; the Initialize node takes everything else.
STEP_FIELDS = ("popsize", "sigma", "samples_per_candidate", "timestep_min", "timestep_max")
# Not shown: `generations` is the ES step's own count, `checkpoint_every` is a CLI setting, previews need a
# sampler the ComfyUI backend does not have (the graph's own KSampler shows the token after a step).
HIDDEN_FIELDS = ("generations", "checkpoint_every", "preview_every", "preview_prompt")
INIT_FIELDS = tuple(f.name for f in field_specs() if f.name not in STEP_FIELDS + HIDDEN_FIELDS)
# The Initialize node shows the fields every run sets; the GFTI Settings node carries the rest.
ESSENTIAL_INIT_FIELDS = tuple(f.name for f in field_specs() if f.name in INIT_FIELDS
                              and not f.metadata.get("advanced", False))
ADVANCED_INIT_FIELDS = tuple(n for n in INIT_FIELDS if n not in ESSENTIAL_INIT_FIELDS)
# ComfyUI's frontend turns an INT input named "seed" into a widget that randomises itself before every queue,
# which would restart the run each time; the input is therefore called "run_seed".
ALIASES = {"seed": "run_seed"}
_INT_LIMIT = 2**31 - 1


def comfy_input(f: dataclasses.Field, **override: Any) -> tuple:
    """One V1 input spec ("INT", {default, min, max, step, tooltip}) for a config field."""
    meta, default = f.metadata, override.pop("default", f.default)
    opts: dict[str, Any] = {"default": default, "tooltip": meta["help"], **override}
    if meta.get("choices"):
        return list(meta["choices"]), opts
    if isinstance(default, bool):
        return "BOOLEAN", opts
    lo = meta["lo"] if meta.get("lo") is not None else -_INT_LIMIT
    hi = meta["hi"] if meta.get("hi") is not None else _INT_LIMIT
    if isinstance(default, int):
        return "INT", {**opts, "min": int(lo), "max": int(hi), "step": 1}
    if isinstance(default, float):
        return "FLOAT", {**opts, "min": float(lo), "max": float(hi), "step": 0.001 if abs(default) < 0.1 else 0.01}
    return "STRING", {**opts, "multiline": False}


def inputs_for(names: Iterable[str]) -> dict[str, tuple]:
    """{input name: spec} for the named config fields, in the config's declaration order."""
    wanted = set(names)
    return {ALIASES.get(f.name, f.name): comfy_input(f) for f in field_specs() if f.name in wanted}


def field_spec(name: str) -> dataclasses.Field:
    return next(f for f in field_specs() if f.name == name)


def config_values(inputs: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Node input values → config field values (only fields present in `inputs`)."""
    out = {}
    for name in names:
        key = ALIASES.get(name, name)
        if key in inputs:
            out[name] = inputs[key]
    return out
