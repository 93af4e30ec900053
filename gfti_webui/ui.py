"""The GFTI tab (A1111 and Forge): widgets built from `InversionConfig`'s field metadata, never a positional list.

Each widget is stored under its field name; the Start handler zips the names back onto the values Gradio
passes, so adding a config field adds a widget with no change here. Webui modules are imported inside the
functions, so this module imports without a webui (tests put fakes for `gradio`/`modules.*` in sys.modules).
"""
from __future__ import annotations

import dataclasses
import html
import logging
from typing import Any, Callable

from gfti_core.config import ConfigError, field_specs
from gfti_core.errors import GFTIError
from gfti_core.formats import FORMATS

from .job import JobOptions, run_job

log = logging.getLogger(__name__)

CLI_ONLY = ("checkpoint_every",)  # the tab saves no run state
# The tab's own defaults where they differ from the CLI's: a person watching the tab wants sample images.
TAB_DEFAULTS = {"preview_every": 10}
JOB_HELP = {
    "image_folder": "folder of training images (optional <name>.txt captions beside them)",
    "resolution": "training resolution (square crop); use the model's native size",
    "preview_images": "images per preview prompt",
    "file_format": "embedding file format written into the webui's embeddings folder",
    "overwrite": "replace an existing embedding file with the same token",
}


def label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def widget(gr, name: str, default: Any, meta: dict):
    """One Gradio component for a field: choices → Dropdown, bool → Checkbox, small int range → Slider,
    other numbers → Number, text → Textbox. Bounds are checked by `InversionConfig` itself."""
    common = {"label": label(name), "info": meta.get("help", ""), "elem_id": f"gfti_{name}"}
    if meta.get("choices"):
        return gr.Dropdown(choices=list(meta["choices"]), value=default, **common)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, **common)
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(default, int) and lo is not None and hi is not None and hi - lo <= 5000:
        return gr.Slider(minimum=lo, maximum=hi, step=1, value=default, **common)
    if isinstance(default, (int, float)):
        return gr.Number(value=default, precision=0 if isinstance(default, int) else None, **common)
    return gr.Textbox(value=default, **common)


def job_widgets(gr) -> dict[str, Any]:
    fields = {f.name: f.default for f in dataclasses.fields(JobOptions)}
    meta = {k: {"help": h} for k, h in JOB_HELP.items()}
    meta["file_format"]["choices"] = FORMATS
    meta["resolution"].update(lo=64, hi=2048)
    meta["preview_images"].update(lo=1, hi=8)
    return {name: widget(gr, name, fields[name], meta[name]) for name in fields}


def config_widgets(gr) -> dict[str, Any]:
    """The fields every run sets first (metadata `advanced=False`); the rest in one collapsed "Advanced"
    accordion, grouped by their metadata group."""
    specs = [f for f in field_specs() if f.name not in CLI_ONLY]
    default = lambda f: TAB_DEFAULTS.get(f.name, f.default)  # noqa: E731
    out = {f.name: widget(gr, f.name, default(f), dict(f.metadata)) for f in specs if not f.metadata.get("advanced")}
    groups: dict[str, list] = {}
    for f in specs:
        if f.name not in out:
            groups.setdefault(f.metadata.get("group", "other"), []).append(f)
    with gr.Accordion("Advanced", open=False, elem_id="gfti_advanced"):
        for group, fs in groups.items():
            gr.HTML(f"<b>{html.escape(group.capitalize())}</b>")
            out.update({f.name: widget(gr, f.name, default(f), dict(f.metadata)) for f in fs})
    return out


# The webui's `wrap_gradio_call` appends its timing HTML to the LAST output and, on an exception, returns
# `extra_outputs + [error_html]`: so the message (HTML) is the last output and EXTRA_OUTPUTS fills the others.
EXTRA_OUTPUTS = [[], None]


def start_handler(names: list[str], host_factory: Callable[[], Any]) -> Callable[..., tuple]:
    """Gradio handler: (id_task, *values) → {field: value} → `run_job` → (previews, chart, message).

    `id_task` is the "task(…)" id the page's JavaScript made; `wrap_gradio_gpu_call` reads it to feed the
    webui's progress bar. User errors become the message, never an exception."""
    def start(id_task, *values):
        try:
            result = run_job(dict(zip(names, values)), host_factory())
        except (GFTIError, ConfigError, ValueError) as err:
            return [], None, f"<p class='gfti-error' style='color:var(--error-text-color,#c00)'>GFTI: {html.escape(str(err))}</p>"
        return result.previews, result.chart, result.message
    return start


def current_host():
    """The host of the running webui: Forge if its text engines exist, else A1111."""
    from . import host_a1111, host_forge

    return host_forge.host() if host_forge.is_forge() else host_a1111.host()


def build_tab(host_factory: Callable[[], Any] = current_host):
    """→ (gr.Blocks, {name: component}). The Start click runs under the webui's queue lock."""
    import gradio as gr
    from modules import call_queue, shared

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column():
                components = job_widgets(gr)
                components.update(config_widgets(gr))
            with gr.Column(elem_id="gfti_output"):
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="gfti_start")
                    stop = gr.Button("Interrupt", elem_id="gfti_interrupt")
                id_task = gr.Textbox(visible=False, elem_id="gfti_id_task")
                chart = gr.Image(label="Loss", type="pil", interactive=False, elem_id="gfti_chart")
                gallery = gr.Gallery(label="Previews", elem_id="gfti_previews")
                message = gr.HTML(elem_id="gfti_message")
        names = list(components)
        handler = call_queue.wrap_gradio_gpu_call(start_handler(names, host_factory), extra_outputs=EXTRA_OUTPUTS)
        # gfti_submit (javascript/gfti.js) makes the task id and starts the webui's own progress bar on it.
        start.click(fn=handler, _js="gfti_submit", inputs=[id_task] + [components[n] for n in names],
                    outputs=[gallery, chart, message])
        stop.click(fn=lambda: shared.state.interrupt(), inputs=[], outputs=[])
    return tab, components


def on_ui_tabs():
    tab, _ = build_tab()
    return [(tab, "GFTI", "gfti_tab")]


def on_ui_settings():
    from modules import shared

    section = ("gfti", "GFTI")
    # A1111 builds a settings widget from the default's type only for str/int/bool; a float needs a component.
    import gradio as gr

    shared.opts.add_option("gfti_preview_steps", shared.OptionInfo(
        20, "GFTI preview: sampling steps", gr.Slider, {"minimum": 1, "maximum": 150, "step": 1}, section=section))
    shared.opts.add_option("gfti_preview_cfg", shared.OptionInfo(
        7.0, "GFTI preview: CFG scale", gr.Slider, {"minimum": 1.0, "maximum": 30.0, "step": 0.5}, section=section))
