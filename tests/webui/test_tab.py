"""The tab and the job with `gradio` and `modules.*` faked at the boundary (see docs/a1111.md for what this
cannot exercise)."""
from __future__ import annotations

import dataclasses
import importlib
import runpy
import sys
from pathlib import Path


from PIL import Image

from gfti_core.config import field_specs
from gfti_core.formats import read_embedding
from gfti_core.tiny import tiny_images
from gfti_webui import ui
from gfti_webui.job import Host, JobOptions, run_job

ROOT = Path(__file__).resolve().parents[2]


def test_package_imports_without_a_webui():
    for name in ("gfti_webui.ldm_backend", "gfti_webui.job", "gfti_webui.ui", "gfti_webui.host_a1111",
                 "gfti_webui.host_forge"):
        importlib.import_module(name)
    assert "modules" not in sys.modules and "gradio" not in sys.modules


def test_script_registers_tab_and_settings(fake_webui):
    runpy.run_path(str(ROOT / "scripts" / "gfti_tab.py"))
    assert fake_webui.calls["ui_tabs"] == [ui.on_ui_tabs]
    fake_webui.calls["ui_settings"][0]()
    options = fake_webui.calls["options"]
    assert set(options) == {"gfti_preview_steps", "gfti_preview_cfg"}
    for key, (args, kw) in options.items():
        default, component = args[0], args[2] if len(args) > 2 else kw.get("component")
        assert kw["section"] == ("gfti", "GFTI")
        # modules/ui_settings.py raises "bad options item type" for any other type without a component
        assert component is not None or type(default) in (str, int, bool), key


def test_tab_widgets_come_from_the_config(fake_webui):
    ((tab, title, elem_id),) = ui.on_ui_tabs()
    assert (title, elem_id) == ("GFTI", "gfti_tab")
    _, components = ui.build_tab(lambda: None)
    expected = {f.name for f in field_specs()} - set(ui.CLI_ONLY) | {f.name for f in dataclasses.fields(JobOptions)}
    assert set(components) == expected
    assert components["init_mode"].kind == "Dropdown" and components["flip"].kind == "Checkbox"
    assert components["num_vectors"].kwargs["maximum"] == 16
    for f in field_specs():
        if f.name in components:
            assert components[f.name].kwargs["value"] == ui.TAB_DEFAULTS.get(f.name, f.default)
            assert components[f.name].kwargs["info"] == f.metadata["help"]
    assert components["preview_every"].kwargs["value"] == 10  # previews on in the tab, off in the CLI
    assert fake_webui.calls["wrapped"] == [ui.EXTRA_OUTPUTS] * 2  # one per build; Start runs under the queue lock


def _click(components, start_button_fn, **overrides):
    click = start_button_fn
    id_task, *fields = click["inputs"]
    assert id_task.kwargs["elem_id"] == "gfti_id_task" and click["js"] == "gfti_submit"
    names = [c.kwargs["elem_id"][len("gfti_"):] for c in fields]
    values = {n: components[n].kwargs["value"] for n in names} | overrides
    assert [o.kind for o in click["outputs"]] == ["Gallery", "Image", "HTML"]  # the webui appends HTML last
    return click["fn"]("task(test)", *[values[n] for n in names])


def _start_click(fake_webui, host_factory):
    import gradio as gr  # the fake

    buttons = []
    original = gr.Button
    gr.Button = lambda *a, **kw: buttons.append(original(*a, **kw)) or buttons[-1]
    _, components = ui.build_tab(host_factory)
    gr.Button = original
    return components, buttons[0].clicks[0]


def _image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(tiny_images(2)):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


def _host(fake_webui, backend, published):
    return Host(backend=lambda res, rows: backend, state=fake_webui.state,
                embeddings_dir=lambda: fake_webui.shared.cmd_opts.embeddings_dir,
                publish=lambda path, emb: published.append((path, emb)),
                preview=lambda prompt, emb, n, seed, res: published.append(("preview", prompt, emb))
                or [Image.new("RGB", (res, res))] * n)


def test_start_click_trains_and_saves(fake_webui, tiny_sd1, tmp_path):
    from gfti_core.backends.diffusers_backend import DiffusersBackend

    published = []
    components, click = _start_click(fake_webui, lambda: _host(fake_webui, DiffusersBackend(tiny_sd1), published))
    previews, chart, message = _click(
        components, click, image_folder=str(_image_folder(tmp_path)), resolution=16.0, token="my-thing",
        init_mode="word", generations=2.0, popsize=4, subspace_dim=4, samples_per_candidate=2, holdout_samples=2)
    assert "Saved" in message and "Time taken" in message and chart is not None, message
    path = Path(fake_webui.shared.cmd_opts.embeddings_dir) / "my-thing.safetensors"
    emb = read_embedding(path)
    assert emb.vectors["clip_l"].shape == (1, 32) and emb.metadata["gfti.steps"] == "2"
    assert [p[0] for p in published] == [path, "preview", "preview"] and len(previews) == 1  # the final grid
    assert published[1][1] == "a photo of gfti-preview-my-thing"  # the placeholder names the temporary embedding
    assert published[2][1] == "a photo of gfti-preview-my-thing on a green background"  # preview_prompt
    state = fake_webui.state
    assert (state.job_count, state.job_no) == (2, 2) and len(state.images) == 2 and "generation 2/2" in state.textinfo


def test_interrupt_stops_and_errors_are_messages(fake_webui, tiny_sd1, tmp_path):
    from gfti_core.backends.diffusers_backend import DiffusersBackend

    published = []
    host = _host(fake_webui, DiffusersBackend(tiny_sd1), published)
    fake_webui.state.interrupt()  # pressed before the first generation
    values = {"image_folder": str(_image_folder(tmp_path)), "resolution": 16, "token": "early", "init_mode": "word",
              "generations": 50, "popsize": 4, "subspace_dim": 4, "samples_per_candidate": 2, "holdout_samples": 2}
    result = run_job(values, host)  # the start honours it: no generation is complete, so nothing is saved
    assert result.message.startswith("Interrupted while choosing the start vector") and result.path is None
    assert not (Path(fake_webui.shared.cmd_opts.embeddings_dir) / "early.safetensors").exists()
    fake_webui.state.interrupted = False
    (Path(fake_webui.shared.cmd_opts.embeddings_dir) / "early.safetensors").write_bytes(b"someone else's")
    start = ui.start_handler(list(values), lambda: host)
    again = start("task(1)", *values.values())  # same token, overwrite off
    assert again[:2] == ([], None) and "already exists" in again[2]
    bad = start("task(2)", *{**values, "token": "../escape"}.values())
    assert "GFTI:" in bad[2]
    empty = start("task(3)", *{**values, "token": "fresh", "image_folder": " "}.values())
    assert "no image folder given" in empty[2]
    assert not (Path(fake_webui.shared.cmd_opts.embeddings_dir) / "fresh.safetensors").exists()


def test_an_unexpected_error_lands_in_the_message_slot(fake_webui):
    """The webui's error path returns extra_outputs + [error_html]: the HTML must meet the message output."""
    def broken_host():
        raise RuntimeError("model not loaded")

    components, click = _start_click(fake_webui, broken_host)
    previews, chart, message = _click(components, click, image_folder="/nowhere")
    assert (previews, chart) == ([], None) and "model not loaded" in message


def test_only_the_essential_fields_are_outside_the_advanced_accordion(fake_webui):
    import gradio as gr  # the fake

    opened, original = [], gr.Accordion
    gr.Accordion = lambda *a, **kw: opened.append((a, kw)) or original(*a, **kw)
    try:
        widgets = ui.config_widgets(gr)
    finally:
        gr.Accordion = original
    essentials = [f.name for f in field_specs() if not f.metadata["advanced"]]
    assert list(widgets)[:len(essentials)] == essentials and "token" in essentials
    assert opened == [(("Advanced",), {"open": False, "elem_id": "gfti_advanced"})]
