"""One real webui per host for the whole session (A1111 1.10.1 and Forge from ../shared/hosts, laid out by
tests/hosts/webui_layout.py), booted headless on CPU on 127.0.0.1 with this checkout as its extension.

GFTI_WEBUI_HOSTS="a1111 forge" picks the hosts (.ci/run sets it after laying them out); without it, or with a
host not laid out, the tests skip and say why."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "hosts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import webui_layout  # noqa: E402
import webui_server  # noqa: E402

HOSTS = ("a1111", "forge")
# Previews and txt2img through the webui's own sampler: few steps keep a CPU run short.
LIVE_OPTIONS = {"gfti_preview_steps": 2, "gfti_preview_cfg": 3.5, "live_previews_enable": True,
                "show_progress_every_n_steps": 1}


def wanted_hosts() -> list[str]:
    return os.environ.get("GFTI_WEBUI_HOSTS", "").replace(",", " ").split()


@pytest.fixture(scope="session", params=HOSTS)
def webui(request, tmp_path_factory):
    name = request.param
    if name not in wanted_hosts():
        pytest.skip(f"{name}: live webui tests need GFTI_WEBUI_HOSTS to name it (after "
                    f"python tests/hosts/webui_layout.py {name}; .ci/run does both)")
    why = webui_server.ready(webui_layout.HOSTS[name])
    if why:
        pytest.skip(why)
    with webui_server.running(name, tmp_path_factory.mktemp(f"live-{name}")) as server:
        server.post("/sdapi/v1/options", LIVE_OPTIONS)
        yield server


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Three 64 px pictures of one red disc on grey."""
    folder = tmp_path_factory.mktemp("live-images")
    for i in range(3):
        img = Image.new("RGB", (64, 64), (190, 190, 190))
        ImageDraw.Draw(img).ellipse([10 + 3 * i, 12, 50, 52 + i], fill=(200, 40, 40))
        img.save(folder / f"{i}.png")
    return folder
