"""GFTI ES Optimize Step: advance a run by N generations, with a live loss chart; chainable and resumable.

Re-queueing re-runs this node (IS_CHANGED is NaN) and, while its input is the same upstream result, it
continues from where its previous run ended — its own last output, kept on the node instance (ComfyUI keeps
one instance per node id between prompts; the class holds no state). Cancelling keeps the last complete
generation, so the next queue continues from there.
"""
from __future__ import annotations

import dataclasses
import math

from ..gfti_core.chart import render_loss_chart
from ..gfti_core.config import TEMPLATE_SETS
from ..gfti_core.context import with_context
from ..gfti_core.engine import GenerationReport, build_training_set, run_generations, with_settings
from ..gfti_core.holdout import describe_early_stop
from .config_inputs import STEP_FIELDS, comfy_input, config_values, field_spec, inputs_for
from .host import Interrupts, send_event
from .inversion import INVERSION_TYPE, Inversion, pil_to_image

KEEP = "as initialized"


class GFTIESOptimizeStep:
    DESCRIPTION = "Runs N generations of the evolution strategy; chain several steps or re-queue to continue."
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    RETURN_TYPES = (INVERSION_TYPE, "IMAGE")
    RETURN_NAMES = ("inversion", "loss_chart")
    OUTPUT_TOOLTIPS = ("the run after this step", "loss per generation: mean, best and the trend (10-generation average of the mean)")

    def __init__(self):
        self._last: tuple[Inversion, Inversion] | None = None  # (input, output) of this node's previous run

    @classmethod
    def INPUT_TYPES(cls):
        templates = comfy_input(field_spec("templates"), default=KEEP)
        templates = ([KEEP, *TEMPLATE_SETS], {**templates[1], "tooltip": templates[1]["tooltip"] +
                                              f" ('{KEEP}' keeps the run's templates)"})
        return {
            "required": {
                "inversion": (INVERSION_TYPE, {"tooltip": "a run from GFTI Initialize Inversion or an earlier step"}),
                "generations": comfy_input(field_spec("generations"), default=20),
                **inputs_for(STEP_FIELDS),
                "templates": templates,
                "continue_on_requeue": ("BOOLEAN", {"default": True, "tooltip": "when queued again with the same "
                                        "input, continue where this node stopped (off: start again from the input)"}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # NaN never equals itself: every queue runs (and continues) the step

    def execute(self, inversion, generations, templates, continue_on_requeue, unique_id=None, **settings):
        start = self._last[1] if continue_on_requeue and self._last and self._last[0] is inversion else inversion
        start = _apply_settings(start, templates, config_values(settings, STEP_FIELDS))
        state = _run(start, generations, unique_id)
        result = start.advanced(state)
        self._last = (inversion, result)
        s = state
        summary = f"generation {s.generation}, best loss {s.best_loss:.6g}, {s.forward_rows} denoiser rows"
        stopped = describe_early_stop(s.config, s.history)
        summary += f"; {stopped}" if stopped else ""
        return {"ui": {"text": [summary]}, "result": (result, pil_to_image(render_loss_chart(s.history)))}


def _apply_settings(inv: Inversion, templates: str, changes: dict) -> Inversion:
    """The step's settings on the run (a changed popsize/sigma re-centres the search on its current mean)."""
    changes = {k: v for k, v in changes.items() if getattr(inv.state.config, k) != v}
    if templates != KEEP and templates != inv.state.config.templates:
        changes["templates"] = templates
    state = with_settings(inv.state, **changes) if changes else inv.state
    if "templates" in changes:  # prompts are part of the cached training set: rebuild it (latents included)
        data = build_training_set(inv.backend, inv.images, inv.captions, state.config, inv.masks)
        if state.init_info.get("context"):  # keep the phrases auto context chose at Initialize
            data = with_context(data, state.init_info["context"], state.config.flip)
        state = dataclasses.replace(state, data=data)
    return inv.advanced(state)


def _run(inv: Inversion, generations: int, node_id):
    """run_generations with ComfyUI's progress bar, cancel, and gfti.loss events (the live chart)."""
    from comfy.utils import ProgressBar

    state, first = inv.state, inv.state.generation
    history = {k: list(state.history[k]) for k in ("best", "mean")}
    send_event("gfti.loss", {"node": node_id, "run": inv.run_id, "history": _finite(history)})
    bar, interrupts = ProgressBar(max(1, generations)), Interrupts()

    def on_generation(r: GenerationReport) -> None:
        send_event("gfti.loss", {"node": node_id, "run": inv.run_id, **_finite(dataclasses.asdict(r))})
        # No JPEG preview here: web/gfti.js draws the live curve on the node, and ComfyUI would draw a preview
        # image in the same place (measured in the browser test: the two charts overlapped).
        interrupts.guarded(bar.update_absolute, r.generation - first, generations)

    state = run_generations(state, inv.backend, generations, on_generation, interrupts.should_stop)
    interrupts.restore()
    return state


def _finite(data):
    """NaN/inf → None: the browser's JSON.parse rejects the NaN that Python's json writes."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return None if isinstance(data, float) and not math.isfinite(data) else data
