"""GFTI ES Optimize Step: advance a run by N generations, with a live loss chart; chainable and resumable.

Re-queueing re-runs this node (IS_CHANGED is NaN) and, while its input is the same upstream result, it
continues from where its previous run ended — its own last output, kept on the node instance (ComfyUI keeps
one instance per node id between prompts; the class holds no state). Cancelling keeps the last complete
generation, so the next queue continues from there. Under --cache-none ComfyUI keeps no instance between
queues, and the node's text says that the step started again.
"""
from __future__ import annotations

import dataclasses
import logging

from ..gfti_core.chart import render_loss_chart
from ..gfti_core.config import TEMPLATE_SETS
from ..gfti_core.context import with_context
from ..gfti_core.engine import GenerationReport, build_training_set, run_generations, with_settings
from ..gfti_core.holdout import describe_early_stop
from .config_inputs import STEP_FIELDS, comfy_input, config_values, field_spec, inputs_for
from .host import Interrupts
from .inversion import INVERSION_TYPE, Inversion, pil_to_image
from .live_chart import LiveChart

log = logging.getLogger(__name__)
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
        resumed = bool(continue_on_requeue and self._last and self._last[0] is inversion)
        start = self._last[1] if resumed else inversion
        start = _apply_settings(start, templates, config_values(settings, STEP_FIELDS))
        state = _run(start, generations, unique_id)
        result = start.advanced(state)
        self._last = (inversion, result)
        s = state
        lines = [f"generation {s.generation}, best loss {s.best_loss:.6g}, {s.forward_rows} denoiser rows"]
        stopped = describe_early_stop(s.config, s.history)
        lines[0] += f"; {stopped}" if stopped else ""
        if continue_on_requeue and not resumed and _host_keeps_no_nodes():
            lines.append(CACHE_NONE_NOTE.format(start=start.state.generation))
            log.warning("GFTI ES Optimize Step: %s", lines[-1])
        return {"ui": {"text": lines}, "result": (result, pil_to_image(render_loss_chart(s.history)))}


CACHE_NONE_NOTE = ("ComfyUI runs with --cache-none, which keeps no node between queues: this step started from its "
                   "input (generation {start}), and queueing again starts again rather than continuing. To "
                   "continue a run by re-queueing, start ComfyUI without --cache-none, or chain ES steps")


def _host_keeps_no_nodes() -> bool:
    """--cache-none drops every node instance (and output) once its consumers ran, so a re-queue re-runs
    Initialize and meets a fresh step node: the continuation this node keeps is gone."""
    from comfy.cli_args import args

    return bool(getattr(args, "cache_none", False))


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
    """run_generations with ComfyUI's progress bar, cancel, and the live chart (gfti.loss messages)."""
    from comfy.utils import ProgressBar

    state, first = inv.state, inv.state.generation
    chart = LiveChart(node_id, inv.run_id, state.history)
    chart.start()
    bar, interrupts = ProgressBar(max(1, generations)), Interrupts()

    def on_generation(r: GenerationReport) -> None:
        chart.add(r)
        interrupts.guarded(bar.update_absolute, r.generation - first, generations)

    state = run_generations(state, inv.backend, generations, on_generation, interrupts.should_stop)
    interrupts.restore()
    return state
