"""The GFTI tab inside the real A1111 1.10.1 and Forge, driven through the running server's own Gradio
dependency (the fn_index and inputs the page sends), the webui's progress endpoint and its REST API."""
from __future__ import annotations

import json
import threading
import time

import pytest
from safetensors import safe_open

import gradio_page as gp

pytestmark = pytest.mark.timeout(1500)

TINY_RUN = {"gfti_resolution": 64, "gfti_init_mode": "word", "gfti_init_text": "disc", "gfti_generations": 2,
            "gfti_popsize": 4, "gfti_samples_per_candidate": 2, "gfti_subspace_dim": 4, "gfti_holdout_samples": 2,
            "gfti_preview_images": 1, "gfti_auto_context": False}


def start_tab(webui, values: dict, *, poll: bool = True, on_progress=None):
    """Press Start as the page does: the task id javascript/gfti.js makes, then the webui's own progress bar
    polling /internal/progress with that id while the request runs. → (outputs, progress replies)."""
    dep = gp.dependency(gp.page_config(webui.url), "gfti_start")
    assert dep.js == "gfti_submit" and dep.input_ids[0] == "gfti_id_task"
    assert dep.output_types[-1] == "html", "wrap_gradio_call appends its timing HTML to the last output"
    id_task, result = gp.task_id(), {}

    def call():
        try:
            result["out"] = gp.predict(webui.url, dep, {"gfti_id_task": id_task, **values})
        except Exception as err:  # noqa: BLE001 - reported by the assertion below with the server log
            result["err"] = err

    worker = threading.Thread(target=call)
    worker.start()
    seen = []
    while worker.is_alive():
        if poll:
            seen += gp.poll_progress(webui.url, id_task, lambda: bool(seen) and seen[-1].get("completed"),
                                     timeout=1)
            if on_progress and seen:
                on_progress(seen[-1])
        time.sleep(0.5)
    worker.join()
    assert "out" in result, f"{result.get('err')}\n{webui.log_tail()}"
    return result["out"], seen


def one_line(message: str) -> str:
    return message.split("<div class='performance'>")[0]


def test_start_trains_saves_and_the_webui_uses_the_token(webui, image_folder):
    token = f"gfti-live-{webui.name}"
    (previews, chart, message), progress = start_tab(
        webui, {**TINY_RUN, "gfti_image_folder": str(image_folder), "gfti_token": token})
    assert "Saved" in message and "class='error'" not in message and "gfti-error" not in message, message
    assert "Time taken" in message  # the webui's own timing HTML landed on the message, not the gallery
    assert gp.open_image(webui.url, chart).size[0] > 100
    assert len(previews) == 1 and gp.open_image(webui.url, previews[0]).size[0] >= 64
    path = webui.embeddings / f"{token}.safetensors"
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["gfti.steps"] == "2" and list(f.keys())
    texts = [p.get("textinfo") or "" for p in progress]
    assert any("GFTI generation" in t for t in texts), texts[-5:]
    assert any(p.get("active") for p in progress), "the task id the page sent reached the webui's queue"
    assert any(p.get("live_preview") for p in progress), "the loss chart is the webui's live preview"

    webui.post("/sdapi/v1/refresh-embeddings")
    listed = webui.get("/sdapi/v1/embeddings")["loaded"]
    assert token in listed, sorted(listed)
    made = webui.post("/sdapi/v1/txt2img", {"prompt": f"a photo of {token}", "steps": 2, "width": 64,
                                            "height": 64, "seed": 1, "cfg_scale": 3.5})
    info = json.loads(made["info"])
    assert made["images"] and token in " ".join(info.get("infotexts", [])), info.get("infotexts")


def test_bad_input_is_one_clear_line_in_the_tab(webui, image_folder):
    (previews, chart, message), _ = start_tab(webui, {**TINY_RUN, "gfti_image_folder": ""}, poll=False)
    assert (previews, chart) == ([], None) and "no image folder given" in message, message
    assert "class='error'" not in message and "Traceback" not in message

    (webui.embeddings / "taken.safetensors").write_bytes(b"not ours")
    (_, _, message), _ = start_tab(webui, {**TINY_RUN, "gfti_image_folder": str(image_folder),
                                          "gfti_token": "taken"}, poll=False)
    line = one_line(message)
    assert "already exists" in line and "overwrite" in line and line.count("<br>") == 0, message
    assert (webui.embeddings / "taken.safetensors").read_bytes() == b"not ours"


def test_interrupt_stops_a_long_run_and_keeps_the_last_generation(webui, image_folder):
    token = f"gfti-stop-{webui.name}"
    pressed = {}

    def interrupt_after_two(p):
        if not pressed and "GFTI generation 2/" in (p.get("textinfo") or ""):
            pressed["at"] = time.monotonic()
            webui.post("/sdapi/v1/interrupt")

    (_, _, message), _ = start_tab(webui, {**TINY_RUN, "gfti_image_folder": str(image_folder),
                                           "gfti_token": token, "gfti_generations": 500},
                                   on_progress=interrupt_after_two)
    assert pressed, "the run never reported generation 2"
    assert time.monotonic() - pressed["at"] < 120 and message.startswith("Interrupted"), message
    with safe_open(str(webui.embeddings / f"{token}.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["gfti.interrupted"] == "true" and 2 <= int(meta["gfti.steps"]) < 500
    assert webui.get("/sdapi/v1/progress")["state"]["interrupted"] is False  # the webui serves on
