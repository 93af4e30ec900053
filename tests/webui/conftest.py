"""Fixtures for the A1111/Forge face: the real ldm package (with import stubs), tiny ldm models with diffusers
twins, and fakes of the small `gradio` / `modules.*` surface the tab touches."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def ldm_env():
    import ldm_stubs

    added = ldm_stubs.install()
    yield
    for name in added:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def clip_dir(ldm_env, tmp_path_factory):
    import tiny_ldm

    return tiny_ldm.save_text_model(tmp_path_factory.mktemp("ldm-clip"))


@pytest.fixture(scope="session")
def ldm_pair(clip_dir):
    """parameterization -> (ldm LatentDiffusion, diffusers pipeline with the same weights); built once each.
    eps uses SD1-style attention (conv proj_in, 8 heads), v uses SD2-style (linear proj, 8-channel heads)."""
    import tiny_ldm

    cache = {}

    def get(parameterization: str):
        if parameterization not in cache:
            cfg = tiny_ldm.ldm_config(clip_dir, parameterization, linear=parameterization == "v")
            model = tiny_ldm.build_ldm(cfg)
            cache[parameterization] = (model, tiny_ldm.diffusers_twin(model, cfg))
        return cache[parameterization]
    return get


class FakeState:
    """The part of A1111's `shared.state` GFTI uses."""

    def __init__(self):
        self.job_count = self.job_no = 0
        self.textinfo, self.interrupted, self.images = "", False, []

    def assign_current_image(self, image):
        self.images.append(image)

    def interrupt(self):
        self.interrupted = True


class FakeComponent:
    def __init__(self, kind, *args, **kwargs):
        self.kind, self.args, self.kwargs, self.clicks = kind, args, kwargs, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def click(self, fn=None, inputs=None, outputs=None, **kwargs):
        self.clicks.append({"fn": fn, "inputs": inputs, "outputs": outputs, "js": kwargs.get("_js")})


def fake_gradio() -> types.ModuleType:
    gr = types.ModuleType("gradio")
    for kind in ("Blocks", "Row", "Column", "Accordion", "Textbox", "Number", "Slider", "Dropdown", "Checkbox",
                 "Button", "HTML", "Image", "Gallery"):
        setattr(gr, kind, (lambda k: (lambda *a, **kw: FakeComponent(k, *a, **kw)))(kind))
    return gr


@pytest.fixture()
def fake_webui(monkeypatch, tmp_path):
    """gradio + modules.{script_callbacks, shared, call_queue} fakes; records callbacks and wrapped calls."""
    state = FakeState()
    (tmp_path / "embeddings").mkdir()
    calls = {"ui_tabs": [], "ui_settings": [], "wrapped": [], "options": {}}
    opts = types.SimpleNamespace(data={}, add_option=lambda key, info: calls["options"].__setitem__(key, info))
    shared = types.SimpleNamespace(state=state, opts=opts, OptionInfo=lambda *a, **kw: (a, kw),
                                   cmd_opts=types.SimpleNamespace(embeddings_dir=str(tmp_path / "embeddings")))

    def wrap_gradio_gpu_call(func, extra_outputs=None):
        """The contract of A1111's `modules/call_queue.py` (`wrap_gradio_call_no_job`): an exception becomes
        `extra_outputs + [error_html]`, and the timing HTML is appended to the last output."""
        calls["wrapped"].append(extra_outputs)

        def wrapped(*args):
            try:
                res = list(func(*args))
            except Exception as e:  # noqa: BLE001 - mirrors the webui, which turns any error into HTML
                res = list(extra_outputs or [None, ""]) + [f"<div class='error'>{type(e).__name__}: {e}</div>"]
            res[-1] += "<div class='performance'>Time taken: 0.1 sec.</div>"
            return tuple(res)
        return wrapped

    modules = types.ModuleType("modules")
    modules.__path__ = []
    parts = {"script_callbacks": types.SimpleNamespace(on_ui_tabs=calls["ui_tabs"].append,
                                                       on_ui_settings=calls["ui_settings"].append),
             "shared": shared, "call_queue": types.SimpleNamespace(wrap_gradio_gpu_call=wrap_gradio_gpu_call)}
    monkeypatch.setitem(sys.modules, "modules", modules)
    for name, mod in parts.items():
        setattr(modules, name, mod)
        monkeypatch.setitem(sys.modules, f"modules.{name}", mod)
    monkeypatch.setitem(sys.modules, "gradio", fake_gradio())
    return types.SimpleNamespace(state=state, shared=shared, calls=calls)
